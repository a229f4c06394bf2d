"""`agproxy config get|set`: read and change settings in the data directory's config file."""

from __future__ import annotations

import click
import orjson

from agproxy.addresses import mask, mask_url
from agproxy.cli.client import load_settings
from agproxy.config import (
    KEYS,
    PASSWORD_KEYS,
    SECRET_KEYS,
    URL_KEYS,
    ConfigError,
    ConfigStore,
    env_var,
    masked_view,
    parse_cli_value,
)


@click.group()
def config() -> None:
    """Read or change settings (the config file in the data directory).

    \b
    Keys:"""  # the list is appended below


config.help = (
    (config.help or "")
    + ", ".join(KEYS)
    + (
        "\n\nAn environment variable AGPROXY_<KEY> overrides the file. A running gateway picks "
        "up changes within a second; port and allow_lan_access apply at the next start, "
        "store_url when `agproxy serve` next starts."
    )
)


def _source(store: ConfigStore, key: str) -> str:
    if key in store.env_keys:
        return f"env {env_var(key)}"
    return "file" if key in store.file_values else "default"


@config.command("get")
@click.argument("key", required=False)
@click.option("--reveal", is_flag=True, help="Show secrets (api keys, passwords) in full.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def get(key: str | None, reveal: bool, as_json: bool) -> None:
    """Print one setting, or all of them with where each value comes from."""
    store = load_settings(create=True)
    values = store.settings.model_dump(mode="json")
    if not reveal:
        values = masked_view(values)
    if key is not None:
        if key not in values:
            raise click.ClickException(f"unknown config key {key!r}; known keys: {', '.join(KEYS)}")
        value = values[key]
        click.echo(orjson.dumps(value).decode() if as_json or not isinstance(value, str) else value)
        return
    if as_json:
        click.echo(orjson.dumps(values, option=orjson.OPT_INDENT_2).decode())
        return
    width = max(map(len, KEYS))
    for name in KEYS:
        value = values[name]
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        click.echo(f"{name:<{width}}  {shown}  ({_source(store, name)})")


@config.command("set")
@click.argument("key")
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Set KEY to VALUE and save atomically; `default` resets it.

    The whole config is validated first; an invalid value changes nothing.
    """
    store = load_settings(create=True)
    try:
        store.update({key: parse_cli_value(key, value)})
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    shown = value
    if key in SECRET_KEYS:
        shown = mask(value, password=key in PASSWORD_KEYS) or value
    elif key in URL_KEYS:
        shown = mask_url(value) or value
    elif key == "providers":
        shown = orjson.dumps(masked_view(store.settings.model_dump(mode="json"))[key]).decode()
    click.echo(f"{key} = {shown}  (saved to {store.path})")
    if key == "store_url":  # a gateway opens its store once, when it starts
        click.echo(
            "CLI commands use this store from now on; a running gateway keeps the one it "
            "opened until `agproxy serve` starts again."
        )
