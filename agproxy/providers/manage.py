"""Adding, changing and removing `providers` entries: one set of rules for the admin API
and `agproxy providers`. Each change is saved as a whole list, validated first, under the
config file's lock; a key sent back masked keeps the key it stands for."""

from __future__ import annotations

from typing import Any

from agproxy.config import ConfigStore, Settings
from agproxy.provider_settings import ProviderEntry, masked_provider, unmask_providers


class ProviderRefused(Exception):
    """An entry that cannot be added, changed or removed: 404 unknown, 409 taken or set
    by the environment."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def view(entry: ProviderEntry, settings: Settings, env_keys: list[str]) -> dict[str, Any]:
    """An entry as the console and the CLI show it: keys masked, and where it comes from."""
    shown = masked_provider(entry.model_dump(mode="json"))
    from_env = "providers" in env_keys or (
        entry.name == "zai" and any(k.startswith("zai_") for k in env_keys)
    )
    shown["url"] = entry.url
    shown["key_names"] = [entry.key_name(i) for i in range(len(entry.keys))]
    shown["source"] = "environment" if from_env else "config"
    shown["serving"] = entry.enabled and bool(entry.keys)
    shown["configured"] = any(p.name == entry.name for p in settings.providers)
    return shown


def views(store: ConfigStore) -> list[dict[str, Any]]:
    settings = store.settings
    return [view(e, settings, store.env_keys) for e in settings.provider_entries]


def find(settings: Settings, name: str) -> ProviderEntry:
    for entry in settings.provider_entries:
        if entry.name == name:
            return entry
    raise ProviderRefused(f"no provider named {name!r}", 404)


def add(store: ConfigStore, given: dict[str, Any]) -> ProviderEntry:
    name = given.get("name")

    def added(current: Any) -> list[Any]:
        entries = list(current or [])
        if any(isinstance(e, dict) and e.get("name") == name for e in entries) or (
            name == "zai" and store.settings.zai_entry is not None
        ):
            raise ProviderRefused(f"a provider named {name!r} exists already", 409)
        return [*entries, given]

    settings = store.update({"providers": added})
    return find(settings, str(name))


def edit(store: ConfigStore, name: str, changes: dict[str, Any]) -> ProviderEntry:
    """Any of the entry's fields but its name; the others stay as they are."""
    if "name" in changes and changes["name"] != name:
        raise ProviderRefused("a provider's name cannot change: add it anew", 409)
    kept = store.settings.providers

    def edited(current: Any) -> list[Any]:
        entries = list(current or [])
        at = _index(entries, name)
        entries[at] = {**entries[at], **changes}
        return list(unmask_providers(entries, kept))

    settings = store.update({"providers": edited})
    return find(settings, name)


def remove(store: ConfigStore, name: str) -> None:
    def removed(current: Any) -> list[Any] | None:
        entries = list(current or [])
        del entries[_index(entries, name)]
        return entries or None

    store.update({"providers": removed})


def _index(entries: list[Any], name: str) -> int:
    for at, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("name") == name:
            return at
    raise ProviderRefused(f"no provider named {name!r} in the config file", 404)
