"""Settings: defaults, the JSON config file, and `AGPROXY_<KEY>` environment overrides.

The file holds only what the user (or first run) set; defaults stay in code so a
newer release can change them. The environment wins over the file and is never
written back to it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agproxy.addresses import mask, mask_url, normalize_proxy, normalize_store_url
from agproxy.datadir import CONFIG_FILE, atomic_write, ensure_data_dir, file_lock
from agproxy.provider_settings import (
    DEFAULT_ZAI_BASE_URL,
    DEFAULT_ZAI_MODELS,
    ZAI_KEYS,
    ProviderEntry,
    ProviderKey,
    ZaiDispatchMode,
    fold_zai,
    masked_provider,
)

AuthMode = Literal["off", "strict", "all_except_health", "auto"]
SchedulingMode = Literal["balance", "round_robin", "fixed"]

CLIENT_VERSION = "4.3.0"
API_KEY_RULE = 'api_key must start with "sk-" and be at least 10 characters long'
ADMIN_PASSWORD_MIN = 12
# alert_webhook_url: a chat webhook's URL is its secret (Slack, Discord put the token in the path).
SECRET_KEYS = frozenset({"api_key", "admin_password", "zai_api_key", "alert_webhook_url"})
PASSWORD_KEYS = frozenset({"admin_password"})
URL_KEYS = frozenset({"upstream_proxy", "store_url", "redis_url"})
# Numeric settings and their allowed range (inclusive); a bool is never a number here.
RANGES: dict[str, tuple[float, float]] = {
    "shutdown_timeout": (0, 3600),
    "max_body_bytes": (1000, 2**40),
    "max_inflight_body_bytes": (1024 * 1024, 2**42),
    "image_fetch_max_bytes": (1, 2**40),
    "image_fetch_max_urls": (1, 1000),
    "image_fetch_max_total_bytes": (1, 2**40),
    "image_fetch_concurrency": (1, 64),
    "quota_refresh_minutes": (0, 7 * 24 * 60),
    "sticky_max_wait_seconds": (0, 600),
    "default_cooldown_seconds": (1, 86_400),
    "stream_ping_seconds": (0.1, 600),
    "header_timeout_seconds": (0.5, 3600),
    "idle_timeout_seconds": (0.5, 86_400),
    "max_header_bytes": (1024, 16 * 1024 * 1024),
    "max_header_count": (10, 10_000),
    # Below a megabyte a burst sheds bodies at once; above 4 GiB it is no bound at all.
    "monitor_queue_max_bytes": (1024 * 1024, 4 * 1024**3),
    # 0: never; otherwise at least a second apart.
    "reprobe_minutes": (0, 7 * 24 * 60),
}
DICT_KEYS = frozenset({"model_mapping", "zai_models", "zai_model_mapping"})
# Settings written as JSON in the environment and on the command line.
JSON_KEYS = DICT_KEYS | {
    "prompt_rewrites",
    "backoff_steps",
    "error_rules",
    "answer_error_patterns",
    "providers",
}
ErrorAction = Literal["retry_other_account", "cooldown", "return_to_client", "disable_account"]
# Sentences the backend sends as a model's answer (200 OK) when it means an error.
OUTDATED_CLIENT = "This version of Antigravity is no longer supported"
RETIRED_MODEL = "is no longer available. Please switch to"
DEFAULT_UPSTREAM_BASE_URLS = (
    "https://daily-cloudcode-pa.sandbox.googleapis.com/v1internal",
    "https://daily-cloudcode-pa.googleapis.com/v1internal",
    "https://cloudcode-pa.googleapis.com/v1internal",
)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _default_user_agent() -> str:
    platform = {
        "darwin": "Macintosh; Intel Mac OS X 10_15_7",
        "win32": "Windows NT 10.0; Win64; x64",
    }.get(sys.platform, "X11; Linux x86_64")
    return f"Antigravity/{CLIENT_VERSION} ({platform}) Chrome/132.0.6834.160 Electron/39.2.3"


def generate_api_key() -> str:
    return "sk-" + secrets.token_hex(16)


class PromptRewrite(BaseModel):
    """Find → replace on system and instruction text, before the upstream sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    find: str = Field(min_length=1, max_length=4000)
    replace: str = Field(default="", max_length=4000)


class ErrorRule(BaseModel):
    """An upstream error (its status, and a substring of its body) and what it means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(ge=100, le=599)
    contains: str = Field(default="", max_length=1000)
    action: ErrorAction


class Settings(BaseModel):
    """Every setting with its default. Field names are the config keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = 8045
    allow_lan_access: bool = False
    auth_mode: AuthMode = "auto"
    api_key: str = ""
    admin_password: str | None = None
    auto_start: bool = True
    allowed_ips: tuple[str, ...] = ()
    shutdown_timeout: float = 30.0
    max_body_bytes: int = 50 * 1024 * 1024
    max_inflight_body_bytes: int = 128 * 1024 * 1024
    monitor_enabled: bool = True
    monitor_max_rows: int = 100_000
    monitor_retention_days: float = 30.0
    responses_retention_days: float = 30.0
    monitor_capture_bodies: bool = False
    monitor_body_max_bytes: int = 64 * 1024
    image_fetch_max_bytes: int = 20 * 1024 * 1024
    image_fetch_max_urls: int = 8
    image_fetch_max_total_bytes: int = 40 * 1024 * 1024
    image_fetch_concurrency: int = 4
    allow_private_image_urls: bool = False
    monitor_queue_max_bytes: int = 32 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    header_timeout_seconds: float = 30.0
    idle_timeout_seconds: float = 30.0
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 100
    quota_refresh_minutes: int = 15

    scheduling_mode: SchedulingMode = "balance"
    preferred_account: str | None = None
    sticky_max_wait_seconds: float = 2.0
    retry_max_attempts: int = 4
    quota_protection_percent: float = 0.0
    default_cooldown_seconds: float = 60.0
    model_mapping: dict[str, str] = {}
    background_model: str | None = None
    intercept_warmup: bool = True
    stream_ping_seconds: float = 10.0
    pinned_models: tuple[str, ...] = ()
    hidden_models: tuple[str, ...] = ()
    prompt_rewrites: tuple[PromptRewrite, ...] = ()
    backoff_steps: tuple[float, ...] = (1, 5, 30, 120)
    error_rules: tuple[ErrorRule, ...] = ()
    answer_error_patterns: tuple[str, ...] = (OUTDATED_CLIENT, RETIRED_MODEL)
    reprobe_minutes: float = 30.0
    alert_webhook_url: str | None = None
    # Opened once, by `agproxy serve` and each CLI command: a change applies at the next
    # start of the process.
    store_url: str | None = None
    # Redis the processes of one gateway share hot state through (several workers or
    # hosts); unset: one process keeps it all in memory. Read at `agproxy serve`.
    redis_url: str | None = None
    # Key-based upstreams beside the Google pool (z.ai among them): see ProviderEntry.
    providers: tuple[ProviderEntry, ...] = ()

    upstream_base_urls: tuple[str, ...] = DEFAULT_UPSTREAM_BASE_URLS
    oauth_token_url: str = "https://oauth2.googleapis.com/token"
    oauth_userinfo_url: str = "https://www.googleapis.com/oauth2/v2/userinfo"
    oauth_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    upstream_user_agent: str = _default_user_agent()
    upstream_client_version: str = CLIENT_VERSION
    upstream_proxy: str | None = None

    # z.ai's settings of before: kept as names (the environment, scripts, the console's
    # z.ai page); in the config file they live in the `providers` entry named zai.
    zai_base_url: str = DEFAULT_ZAI_BASE_URL
    zai_api_key: str | None = None
    zai_dispatch_mode: ZaiDispatchMode = "off"
    zai_models: dict[str, str] = DEFAULT_ZAI_MODELS
    zai_model_mapping: dict[str, str] = {}

    @field_validator("port")
    @classmethod
    def _port_range(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise ValueError("port must be between 1 and 65535")
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        # pydantic would read true as 1: `port: true` must be refused, not become port 1.
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key)
                if (
                    isinstance(value, bool)
                    and field is not None
                    and field.annotation in (int, float)
                ):
                    raise ValueError(f"{key} must be a number, not {str(value).lower()}")
        return data

    @field_validator(*RANGES)
    @classmethod
    def _in_range(cls, v: float, info: ValidationInfo) -> float:
        name = str(info.field_name)
        low, high = RANGES[name]
        if not low <= v <= high:
            raise ValueError(f"{name} must be between {_number(low)} and {_number(high)}")
        return v

    @field_validator("admin_password")
    @classmethod
    def _password_length(cls, v: str | None) -> str | None:
        if v is not None and v.strip() == "":
            return None
        if v is not None and len(v) < ADMIN_PASSWORD_MIN:
            raise ValueError(
                f"admin_password must be at least {ADMIN_PASSWORD_MIN} characters "
                "long (it guards the accounts' tokens)"
            )
        return v

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for origin in v:
            # Desktop apps send their own schemes (vscode-webview://…) or `null` (file://).
            if origin not in ("*", "null") and not re.fullmatch(
                r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]+", origin
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port] "
                    "(e.g. http://localhost:3000), null, or * for any"
                )
        return tuple(o.rstrip("/").lower() for o in v)

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for host in v:
            if host != "*" and not re.fullmatch(r"\.?[A-Za-z0-9_.:\[\]-]{1,253}", host):
                raise ValueError(
                    f"{host!r} is not a host name: write e.g. gateway.lan, "
                    ".example.com for a domain and its subdomains, or *"
                )
        return tuple(h.lower() for h in v)

    @field_validator("api_key")
    @classmethod
    def _api_key_shape(cls, v: str) -> str:
        if not (v.startswith("sk-") and len(v) >= 10):
            raise ValueError(API_KEY_RULE)
        return v

    @field_validator(
        "pinned_models",
        "hidden_models",
        "allowed_ips",
        "upstream_base_urls",
        "cors_origins",
        "allowed_hosts",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, v: Any) -> Any:
        """List keys may come as one comma-separated string (environment, CLI)."""
        if isinstance(v, str):
            v = [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("prompt_rewrites", "error_rules")
    @classmethod
    def _at_most_100(cls, v: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
        if len(v) > 100:
            raise ValueError(f"{info.field_name} holds at most 100 rules")
        return v

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("alert_webhook_url must be an http:// or https:// URL")
        return v.strip()

    @field_validator("backoff_steps")
    @classmethod
    def _steps(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not 1 <= len(v) <= 20 or any(not 0 < step <= 10_000 for step in v):
            raise ValueError(
                "backoff_steps must be 1 to 20 multiples of default_cooldown_seconds, "
                "each above 0 and at most 10000 (e.g. [1, 5, 30, 120])"
            )
        return v

    @field_validator("answer_error_patterns")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > 100 or any(not 4 <= len(p) <= 500 for p in v):
            raise ValueError(
                "answer_error_patterns holds at most 100 phrases of 4 to 500 characters"
            )
        return v

    @field_validator("retry_max_attempts")
    @classmethod
    def _attempts(cls, v: int) -> int:
        if not 1 <= v <= 10:
            raise ValueError("retry_max_attempts must be between 1 and 10")
        return v

    @field_validator("monitor_max_rows")
    @classmethod
    def _rows(cls, v: int) -> int:
        if v < 1:
            raise ValueError("monitor_max_rows must be at least 1")
        return v

    @field_validator("monitor_body_max_bytes")
    @classmethod
    def _body_cap(cls, v: int) -> int:
        if v < 1000:
            raise ValueError("monitor_body_max_bytes must be at least 1000")
        return v

    @field_validator("quota_protection_percent")
    @classmethod
    def _percent(cls, v: float) -> float:
        if not 0 <= v < 100:
            raise ValueError("quota_protection_percent must be from 0 (off) to below 100")
        return v

    @field_validator("monitor_retention_days", "responses_retention_days")
    @classmethod
    def _retention(cls, v: float, info: ValidationInfo) -> float:
        if not v > 0:
            raise ValueError(f"{info.field_name} must be more than 0")
        return v

    @field_validator("allowed_ips")
    @classmethod
    def _check_ips(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR range "
                    "(e.g. 192.168.1.20 or 192.168.1.0/24)"
                ) from None
        return v

    @field_validator("upstream_base_urls")
    @classmethod
    def _check_bases(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("upstream_base_urls needs at least one URL")
        for url in v:
            if not url.startswith(("http://", "https://")) or not url.endswith("/v1internal"):
                raise ValueError(f"{url!r} must be an http(s) URL ending in /v1internal")
        return tuple(u.rstrip("/") for u in v)

    @field_validator("oauth_token_url", "oauth_userinfo_url", "oauth_authorize_url", "zai_base_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @field_validator("store_url")
    @classmethod
    def _check_store(cls, v: str | None) -> str | None:
        return normalize_store_url(v) if v else None

    @field_validator("upstream_proxy")
    @classmethod
    def _check_proxy(cls, v: str | None) -> str | None:
        return normalize_proxy(v) if v else None

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, v: str | None) -> str | None:
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"{mask_url(v)!r} is not a Redis URL; write it as redis://host:6379/0 "
                "(rediss:// for TLS, unix:///path/to/redis.sock)"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"{mask_url(v)!r}: a Redis URL names its host")
        return v

    # Derived values used on every request are computed once per config load.
    @property
    def host(self) -> str:
        return "0.0.0.0" if self.allow_lan_access else "127.0.0.1"

    @property
    def admin_secret(self) -> str:
        return self.admin_password or self.api_key

    @field_validator("providers")
    @classmethod
    def _providers_agree(cls, v: tuple[ProviderEntry, ...]) -> tuple[ProviderEntry, ...]:
        names = [p.name for p in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"the name {twice[0]!r} is used twice")
        dispatching = [p.name for p in v if p.dispatch != "off"]
        if len(dispatching) > 1:
            raise ValueError(
                f"only one provider may take Claude requests (dispatch); "
                f"{', '.join(dispatching)} do"
            )
        return v

    @model_validator(mode="after")
    def _zai_names(self) -> Settings:
        # The zai entry's values show under the names of before, unless the environment
        # sets those (it wins, as everywhere).
        zai = next((p for p in self.providers if p.name == "zai"), None)
        if zai is not None:
            shown = {
                "zai_base_url": zai.url,
                "zai_api_key": zai.keys[0].key if zai.keys else None,
                "zai_dispatch_mode": zai.dispatch,
                "zai_models": zai.claude_models or DEFAULT_ZAI_MODELS,
                "zai_model_mapping": zai.model_mapping,
            }
            for key, value in shown.items():
                if key not in self.model_fields_set:
                    self.__dict__[key] = value
        return self

    @functools.cached_property
    def provider_entries(self) -> tuple[ProviderEntry, ...]:
        """Every provider as the gateway runs it: the `providers` list, with z.ai's entry
        built from the zai_* values (when it has a key or an entry)."""
        entries = [p for p in self.providers if p.name != "zai"]
        given = next((p for p in self.providers if p.name == "zai"), None)
        if given is None and not self.zai_api_key:
            return tuple(entries)
        base = given or ProviderEntry(name="zai", kind="anthropic_api_key")
        keys = base.keys
        if "zai_api_key" in self.model_fields_set or given is None:
            keys = (ProviderKey(key=self.zai_api_key, name="z.ai"),) if self.zai_api_key else ()
        zai = base.model_copy(
            update={
                "base_url": self.zai_base_url,
                "keys": keys,
                "dispatch": self.zai_dispatch_mode,
                "claude_models": self.zai_models,
                "model_mapping": self.zai_model_mapping,
            }
        )
        return (*entries, zai)

    @functools.cached_property
    def secrets(self) -> tuple[str | None, ...]:
        """Every secret the settings hold, for scrubbing what the monitor keeps: the keys,
        the admin password, each provider's keys."""
        keys = [k.key for entry in self.provider_entries for k in entry.keys]
        return (self.api_key, self.admin_password, self.zai_api_key, *keys)

    @property
    def zai_entry(self) -> ProviderEntry | None:
        return next((p for p in self.provider_entries if p.name == "zai"), None)

    @property
    def dispatcher(self) -> ProviderEntry | None:
        """The provider that takes a share of Claude requests (z.ai's modes), if one can."""
        for entry in self.provider_entries:
            if entry.dispatch != "off" and entry.enabled and entry.keys:
                return entry
        return None

    @property
    def zai_can_serve(self) -> bool:
        return self.dispatcher is not None


KEYS: tuple[str, ...] = tuple(Settings.model_fields)


class ConfigError(Exception):
    """A setting that cannot be accepted; `key` names it when one is to blame."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


class OverriddenByEnv(ConfigError):
    """The key is set in the environment, which wins over the file: saving would change nothing."""


def _stamp_of(st: os.stat_result) -> tuple[int, int, int]:
    # The inode changes with every atomic save, even within one clock tick.
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def env_var(key: str) -> str:
    return f"AGPROXY_{key.upper()}"


def _env_values(environ: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for key in KEYS:
        raw = environ.get(env_var(key), "")
        if raw.strip():
            values[key] = raw.strip()
    return values


def _coerce_env(key: str, raw: str) -> Any:
    """Environment values are strings; turn them into the setting's JSON type."""
    annotation = Settings.model_fields[key].annotation
    if annotation is bool:
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{env_var(key)}={raw!r} is not a boolean (use true or false)", key)
    if key in JSON_KEYS:
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{env_var(key)} must be JSON: {exc}", key) from exc
    return raw  # pydantic converts numeric strings and the URL list itself


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else None
    message = err["msg"].removeprefix("Value error, ")
    inside = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"][1:]
    )
    if inside:  # where in a list of rules: error_rules[0].action: …
        message = f"{key}{inside}: {message}"
    return key, message


def masked_view(values: dict[str, Any]) -> dict[str, Any]:
    """Settings as the admin API and `config get` show them: secrets masked."""
    shown = dict(values)
    for key in SECRET_KEYS:
        shown[key] = mask(shown.get(key), password=key in PASSWORD_KEYS)
    for key in URL_KEYS:
        shown[key] = mask_url(shown.get(key))
    if isinstance(shown.get("providers"), list | tuple):
        shown["providers"] = [masked_provider(p) for p in shown["providers"]]
    return shown


@dataclass
class ConfigStore:
    """The config file of one data directory plus the process environment."""

    directory: Path
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    settings: Settings = field(init=False)
    file_values: dict[str, Any] = field(init=False, default_factory=dict)
    _stamp: tuple[int, int, int] | None = field(init=False, default=None)

    @property
    def path(self) -> Path:
        return self.directory / CONFIG_FILE

    @property
    def env_keys(self) -> list[str]:
        return sorted(_env_values(self.environ))

    # -- reading ---------------------------------------------------------
    def _read_file(self) -> tuple[dict[str, Any], tuple[int, int, int] | None]:
        try:
            st = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {self.path}: {exc}") from exc
        stamp = _stamp_of(st)
        if not text.strip():
            return {}, stamp
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"config file {self.path} is not valid JSON: line {exc.lineno}, "
                f"column {exc.colno}: {exc.msg}. Fix the file or move it away; "
                "agproxy has not changed it."
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {self.path}, line 1: expected a JSON object")
        return data, stamp

    def _line_of(self, key: str) -> int | None:
        try:
            for number, line in enumerate(self.path.read_text("utf-8").splitlines(), 1):
                if f'"{key}"' in line:
                    return number
        except OSError:
            pass
        return None

    def _build(
        self, file_values: dict[str, Any], changed: frozenset[str] = frozenset()
    ) -> Settings:
        """Settings from file values plus the environment. An error in a key being
        `changed` is reported as just the rule; one already in the file names the line."""
        known = {k: v for k, v in file_values.items() if k in Settings.model_fields}
        try:
            Settings.model_validate(known)
        except ValidationError as exc:
            key, message = _first_error(exc)
            if key in changed:
                text = message if message.startswith(str(key)) else f"{key}: {message}"
                raise ConfigError(text, key) from exc
            line = self._line_of(key) if key else None
            where = f"{self.path}, line {line}" if line else str(self.path)
            raise ConfigError(f"config file {where}: {key}: {message}", key) from exc
        merged = dict(known)
        for key, raw in _env_values(self.environ).items():
            merged[key] = _coerce_env(key, raw)
        try:
            return Settings.model_validate(merged)
        except ValidationError as exc:
            key, message = _first_error(exc)
            raise ConfigError(f"environment variable {env_var(key or '')}: {message}", key) from exc

    def load(self, create: bool = True) -> Settings:
        """Read the file and apply the environment.

        With `create`, the first run makes the data directory and an api key; without
        it (CLI commands that only read), nothing is written.
        """
        if not create:
            values, stamp = self._read_file()
            values = fold_zai(values)
            self.settings = self._build({"api_key": "sk-not-set-yet", **values})
            self.file_values, self._stamp = values, stamp
            return self.settings
        ensure_data_dir(self.directory)
        with file_lock(self.directory):
            values, stamp = self._read_file()
            # A file of before holds z.ai as zai_* keys: moved into `providers` once it
            # is known to be valid that way (a broken one is reported, not rewritten).
            migrated = fold_zai(values)
            if migrated is not values:
                self._build(migrated)
            if not values.get("api_key") or migrated is not values:
                values = {**migrated, "api_key": values.get("api_key") or generate_api_key()}
                self._write(values)
                stamp = self._stamp
            self.settings = self._build(values)
            self.file_values = values
            self._stamp = stamp
        return self.settings

    def reload_if_changed(self) -> bool:
        """Pick up edits made by another process (the CLI). A broken file is reported, not used."""
        try:
            stamp: tuple[int, int, int] | None = _stamp_of(self.path.stat())
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        values, stamp = self._read_file()
        values = fold_zai(values)
        self.settings = self._build(values)
        self.file_values, self._stamp = values, stamp
        return True

    # -- writing ---------------------------------------------------------
    def _write(self, values: dict[str, Any]) -> None:
        data = json.dumps(values, indent=2, ensure_ascii=False).encode() + b"\n"
        atomic_write(self.path, data, 0o600)
        self._stamp = _stamp_of(self.path.stat())

    def update(self, changes: Mapping[str, Any]) -> Settings:
        """Validate `changes` against the current file and save them atomically.

        A key set to None returns to its default; api_key has none (a new key is made
        on purpose, by the admin API's generate call). A value may be a function of the
        key's value in the file, read under the file's lock (a list another process may
        change at the same moment). Nothing is written unless the whole result is valid.
        """
        env_keys = _env_values(self.environ)
        for key in changes:
            if key not in Settings.model_fields:
                raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(KEYS)}", key)
            if key in env_keys:
                raise OverriddenByEnv(
                    f"{key} is set by the environment variable {env_var(key)}, which wins over "
                    "the config file; change or unset it there",
                    key,
                )
        with file_lock(self.directory):
            values, _ = self._read_file()  # fresh: keep what other processes saved
            for key, value in changes.items():
                if callable(value):
                    value = value(values.get(key))
                if value is None and key == "api_key":
                    raise ConfigError(
                        "api_key cannot be reset to nothing: set a new key "
                        "(sk-…), or generate one in the console",
                        key,
                    )
                if value is None and key not in ZAI_KEYS:  # a zai_* None resets its part
                    values.pop(key, None)
                else:
                    values[key] = value
            if any(key in ZAI_KEYS for key in changes):  # refused under their own names
                self._build({k: v for k, v in values.items() if v is not None}, frozenset(changes))
            values = fold_zai(values)
            settings = self._build(values, frozenset(changes))
            self._write(values)
            self.settings, self.file_values = settings, values
        return settings

    def public_view(self) -> dict[str, Any]:
        """The effective settings with secrets masked, as the admin API shows them."""
        return masked_view(self.settings.model_dump(mode="json"))


def parse_cli_value(key: str, raw: str) -> Any:
    """`agproxy config set KEY VALUE`: VALUE is JSON when it parses as JSON, else a string."""
    if key not in Settings.model_fields:
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(KEYS)}", key)
    if raw.lower() in {"null", "none", "default"}:
        return None
    annotation = Settings.model_fields[key].annotation
    if annotation is bool:
        return _coerce_env(key, raw)
    if annotation in (int, float) or key in JSON_KEYS:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # let validation say what is wrong with it
    return raw  # strings, and URL lists given comma-separated
