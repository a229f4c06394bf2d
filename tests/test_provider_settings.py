"""The `providers` setting: its validation, its masking, and z.ai's settings of before
moving into it (a config file written by an older release migrates on its own)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from agproxy.config import ConfigError, ConfigStore, Settings, masked_view
from agproxy.provider_settings import unmask_providers

VALID_KEY = "sk-0123456789abcdef"
ZAI_KEY = "zai-old-config-key-0123456789"
OLD_CONFIG = {
    "api_key": VALID_KEY,
    "port": 8123,
    "zai_base_url": "https://zai.example.test/api/anthropic",
    "zai_api_key": ZAI_KEY,
    "zai_dispatch_mode": "fallback",
    "zai_models": {"opus": "glm-5", "sonnet": "glm-4.7", "haiku": "glm-4.5-air"},
    "zai_model_mapping": {"claude-x": "glm-x"},
}


def file_of(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "config.json").read_text())
    return data


def write(directory: Path, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data))
    (directory / "config.json").chmod(0o600)


def test_an_old_zai_config_becomes_the_zai_provider(tmp_path: Path) -> None:
    write(tmp_path, OLD_CONFIG)
    settings = ConfigStore(tmp_path, environ={}).load()
    saved = file_of(tmp_path)
    assert not [k for k in saved if k.startswith("zai_")], saved
    assert saved["port"] == 8123 and saved["api_key"] == VALID_KEY  # the rest is kept
    assert saved["providers"] == [
        {
            "name": "zai",
            "kind": "anthropic_api_key",
            "base_url": "https://zai.example.test/api/anthropic",
            "dispatch": "fallback",
            "claude_models": {"opus": "glm-5", "sonnet": "glm-4.7", "haiku": "glm-4.5-air"},
            "model_mapping": {"claude-x": "glm-x"},
            "keys": [{"key": ZAI_KEY, "name": "z.ai"}],
        }
    ]
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    # It serves as before, under the names of before too.
    assert settings.zai_api_key == ZAI_KEY and settings.zai_dispatch_mode == "fallback"
    assert settings.zai_models["opus"] == "glm-5"
    assert settings.dispatcher is not None and settings.dispatcher.name == "zai"
    assert settings.dispatcher.url == "https://zai.example.test/api/anthropic"
    # A second start finds nothing to move.
    before = (tmp_path / "config.json").read_bytes()
    again = ConfigStore(tmp_path, environ={}).load()
    assert (tmp_path / "config.json").read_bytes() == before
    assert again.provider_entries == settings.provider_entries


def test_an_old_config_that_is_wrong_is_reported_and_left_as_it_is(tmp_path: Path) -> None:
    write(tmp_path, {**OLD_CONFIG, "zai_dispatch_mode": "sometimes"})
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="dispatch"):
        ConfigStore(tmp_path, environ={}).load()
    assert (tmp_path / "config.json").read_bytes() == before


def test_zai_settings_saved_by_name_land_in_the_provider_entry(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path, environ={})
    store.load()
    store.update({"zai_api_key": ZAI_KEY, "zai_dispatch_mode": "pooled"})
    entry = file_of(tmp_path)["providers"][0]
    assert entry["keys"] == [{"key": ZAI_KEY, "name": "z.ai"}] and entry["dispatch"] == "pooled"
    assert store.settings.zai_can_serve
    store.update({"zai_dispatch_mode": None})  # back to its default
    assert "dispatch" not in file_of(tmp_path)["providers"][0]
    assert store.settings.zai_dispatch_mode == "off" and not store.settings.zai_can_serve
    with pytest.raises(ConfigError) as info:
        store.update({"zai_dispatch_mode": "sometimes"})
    assert info.value.key == "zai_dispatch_mode"


def test_the_environment_wins_over_the_zai_entry(tmp_path: Path) -> None:
    write(tmp_path, OLD_CONFIG)
    settings = ConfigStore(tmp_path, environ={"AGPROXY_ZAI_API_KEY": "zai-env-key-00000000"}).load()
    assert settings.zai_entry is not None
    assert [k.key for k in settings.zai_entry.keys] == ["zai-env-key-00000000"]
    assert settings.zai_entry.dispatch == "fallback"  # the rest still from the file


def entry(**given: Any) -> dict[str, Any]:
    return {"name": "router", "kind": "openai_compatible", "keys": ["sk-or-123456789"], **given}


@pytest.mark.parametrize(
    ("providers", "says"),
    [
        ([entry(), entry()], "'router' is used twice"),
        ([entry(name="google")], "not google"),
        ([entry(name="Has Space")], "provider name"),
        ([entry(kind="cohere")], "kind"),
        ([entry(base_url="ftp://x.example")], "not an http(s) URL"),
        ([entry(keys=["two words"])], "one word"),
        ([entry(models=[{"id": "a", "aliases": ["b"]}, "b"])], "'b' is listed twice"),
        ([entry(dispatch="fallback")], "dispatch is for the anthropic_api_key kind"),
        (
            [
                entry(name="a", kind="anthropic_api_key", dispatch="pooled"),
                entry(name="b", kind="anthropic_api_key", dispatch="fallback"),
            ],
            "only one provider",
        ),
        ([entry(proxy="ftp://p.example:1")], "proxies"),
        ([entry(surprise=1)], "surprise"),
    ],
)
def test_a_wrong_entry_is_refused_and_nothing_is_saved(
    tmp_path: Path, providers: list[dict[str, Any]], says: str
) -> None:
    store = ConfigStore(tmp_path, environ={})
    store.load()
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(ConfigError) as info:
        store.update({"providers": providers})
    assert says in info.value.message and info.value.key == "providers"
    assert (tmp_path / "config.json").read_bytes() == before


def test_keys_are_masked_where_settings_are_shown_and_unmasked_when_sent_back() -> None:
    secret = "sk-or-v1-secret-0123456789abcdef"
    settings = Settings(
        api_key=VALID_KEY,
        providers=[
            entry(keys=[secret, {"key": "short-key-1", "name": "spare"}], proxy="http://u:pw@p:1")
        ],
    )
    shown = masked_view(settings.model_dump(mode="json"))
    text = json.dumps(shown)
    assert secret not in text and "short-key-1" not in text and ":pw@" not in text
    assert shown["providers"][0]["keys"][0]["key"] == "••••cdef"
    back = unmask_providers(shown["providers"], settings.providers)
    again = Settings(api_key=VALID_KEY, providers=back)
    assert [k.key for k in again.providers[0].keys] == [secret, "short-key-1"]
    assert again.providers[0].proxy == "http://u:pw@p:1"
    assert again.providers[0].key_name(1) == "spare"
    assert again.providers[0].key_name(0) == "router key 1"
