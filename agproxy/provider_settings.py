"""The `providers` setting: key-based upstreams beside the Google pool, each entry
validated (its name, kind, URL, keys, models, proxy); z.ai's settings of before folded
into the entry named zai; entries masked for display and unmasked when sent back."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agproxy.addresses import mask, mask_url, normalize_proxy

ZaiDispatchMode = Literal["off", "exclusive", "pooled", "fallback"]
ProviderKind = Literal["gemini_api_key", "openai_compatible", "anthropic_api_key"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = (
    "gemini_api_key",
    "openai_compatible",
    "anthropic_api_key",
)
# Where each kind is when the entry names no base_url: the public APIs.
DEFAULT_PROVIDER_URLS: dict[str, str] = {
    "gemini_api_key": "https://generativelanguage.googleapis.com",
    "openai_compatible": "https://api.openai.com/v1",
    "anthropic_api_key": "https://api.anthropic.com",
}
DEFAULT_ZAI_BASE_URL = "https://api.z.ai/api/anthropic"
DEFAULT_ZAI_MODELS = {"opus": "glm-4.7", "sonnet": "glm-4.7", "haiku": "glm-4.5-air"}
PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
# Names a provider cannot take: the Google pool's, and the route prefixes.
RESERVED_PROVIDER_NAMES = frozenset({"google", "models", "v1", "v1beta", "api"})
ZAI_KEYS = ("zai_base_url", "zai_api_key", "zai_dispatch_mode", "zai_models", "zai_model_mapping")


class ProviderKey(BaseModel):
    """One key of a provider; `name` is how the monitor, statistics and logs call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=4096)
    name: str | None = Field(default=None, min_length=1, max_length=80)

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        return {"key": data} if isinstance(data, str) else data

    @field_validator("key")
    @classmethod
    def _printable(cls, v: str) -> str:
        v = v.strip()
        if not v or not v.isprintable() or " " in v:
            raise ValueError("a key is one word of printable characters")
        return v


class ProviderModel(BaseModel):
    """A model id the provider serves, and other names clients may ask for it by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    aliases: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        return {"id": data} if isinstance(data, str) else data

    @field_validator("aliases")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for alias in v:
            if not alias or len(alias) > 200 or "/" in alias:
                raise ValueError(f"alias {alias!r}: 1 to 200 characters, no '/'")
        return v


class ProviderEntry(BaseModel):
    """A key-based upstream beside the Google pool (the `providers` setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: ProviderKind
    base_url: str | None = None
    keys: tuple[ProviderKey, ...] = ()
    models: tuple[ProviderModel, ...] = ()
    proxy: str | None = None
    enabled: bool = True
    # The Anthropic kind only: how it shares Claude requests with the Google pool (z.ai's
    # modes: exclusive, pooled, fallback), and the models Claude ids go to by family.
    dispatch: ZaiDispatchMode = "off"
    claude_models: dict[str, str] = {}
    model_mapping: dict[str, str] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PROVIDER_NAME.fullmatch(v) or v in RESERVED_PROVIDER_NAMES:
            raise ValueError(
                f"provider name {v!r}: 1 to 40 of a-z, 0-9, '_', '.', '-' (starting with a "
                "letter or digit), and not google"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {mask_url(v)!r} is not an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError(f"base_url {mask_url(v)!r}: no query or fragment")
        return v.strip().rstrip("/")

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        return normalize_proxy(v) if v else None

    @model_validator(mode="after")
    def _consistent(self) -> ProviderEntry:
        if self.dispatch != "off" and self.kind != "anthropic_api_key":
            raise ValueError(f"provider {self.name}: dispatch is for the anthropic_api_key kind")
        seen: set[str] = set()
        for model in self.models:
            for name in (model.id, *model.aliases):
                if name in seen:
                    raise ValueError(f"provider {self.name}: model {name!r} is listed twice")
                seen.add(name)
        return self

    @property
    def url(self) -> str:
        if self.base_url:
            return self.base_url
        if self.name == "zai" and self.kind == "anthropic_api_key":
            return DEFAULT_ZAI_BASE_URL
        return DEFAULT_PROVIDER_URLS[self.kind]

    def key_name(self, index: int) -> str:
        given = self.keys[index].name
        return given or f"{self.name} key {index + 1}"


def fold_zai(values: dict[str, Any]) -> dict[str, Any]:
    """Config values with the z.ai settings of before (zai_base_url, zai_api_key, …) moved
    into the `providers` entry named zai (made when missing): z.ai is one provider of the
    Anthropic kind. A zai_* value of None resets that part to its default."""
    legacy = {k: values[k] for k in ZAI_KEYS if k in values}
    if not legacy:
        return values
    values = {k: v for k, v in values.items() if k not in ZAI_KEYS}
    providers = [dict(p) if isinstance(p, dict) else p for p in values.get("providers") or []]
    entry = next((p for p in providers if isinstance(p, dict) and p.get("name") == "zai"), None)
    if entry is None:
        entry = {"name": "zai", "kind": "anthropic_api_key"}
        providers.append(entry)
    for key, field_name in (
        ("zai_base_url", "base_url"),
        ("zai_dispatch_mode", "dispatch"),
        ("zai_models", "claude_models"),
        ("zai_model_mapping", "model_mapping"),
    ):
        if key in legacy and legacy[key] is None:
            entry.pop(field_name, None)  # back to the default
        elif key in legacy:
            entry[field_name] = legacy[key]
    if "zai_api_key" in legacy:
        key = legacy["zai_api_key"]
        entry["keys"] = [{"key": key, "name": "z.ai"}] if key else []
    values["providers"] = providers
    return values


def masked_provider(entry: dict[str, Any]) -> dict[str, Any]:
    """A `providers` entry (as JSON) as it may be shown: keys masked, the proxy's password too."""
    shown = dict(entry)
    shown["keys"] = [
        {**k, "key": mask(k.get("key"))} if isinstance(k, dict) else mask(k)
        for k in entry.get("keys") or []
    ]
    shown["proxy"] = mask_url(entry.get("proxy"))
    return shown


def unmask_providers(given: Any, stored: tuple[ProviderEntry, ...]) -> Any:
    """`providers` sent back as they were shown: a masked key (or proxy) means the one kept
    for that provider at that position. Anything else is left for validation."""
    if not isinstance(given, list):
        return given
    kept = {p.name: p for p in stored}
    out = []
    for entry in given:
        old = kept.get(str(entry.get("name"))) if isinstance(entry, dict) else None
        if old is None:
            out.append(entry)
            continue
        entry = dict(entry)
        keys = entry.get("keys")
        if isinstance(keys, list):
            entry["keys"] = [_unmasked_key(k, old, i) for i, k in enumerate(keys)]
        if isinstance(entry.get("proxy"), str) and "••••" in entry["proxy"]:
            entry["proxy"] = old.proxy
        out.append(entry)
    return out


def _unmasked_key(given: Any, old: ProviderEntry, index: int) -> Any:
    secret = given.get("key") if isinstance(given, dict) else given
    if not (isinstance(secret, str) and "••••" in secret and index < len(old.keys)):
        return given
    original = old.keys[index].key
    return {**given, "key": original} if isinstance(given, dict) else original
