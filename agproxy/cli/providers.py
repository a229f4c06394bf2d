"""`agproxy providers add|list|test|remove`: the key-based upstreams beside the Google
pool, kept in the config file's `providers` list (a running gateway picks a change up
within a second). Keys are shown masked; `test` asks each key for the provider's models.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

import click
import orjson

from agproxy.cli.client import load_settings
from agproxy.config import ConfigError
from agproxy.provider_settings import PROVIDER_KINDS, ProviderEntry
from agproxy.providers import manage
from agproxy.providers.client import ProviderClient
from agproxy.upstream.sessions import Sessions

NAMED_KEY = re.compile(r"([\w.-]{1,40}):(\S+)")


@click.group()
def providers() -> None:
    """Key-based providers beside the Google pool: Gemini API keys, OpenAI-compatible
    endpoints (OpenRouter, DeepSeek, vLLM, Ollama) and Anthropic API keys.

    \b
      agproxy providers add openrouter --kind openai_compatible \\
          --base-url https://openrouter.ai/api/v1 --key-stdin \\
          --model deepseek/deepseek-chat=ds < keyfile
      agproxy providers list
      agproxy providers test openrouter
      agproxy providers remove openrouter

    Clients ask for a provider's model as NAME/MODEL (openrouter/deepseek/deepseek-chat),
    by one of its aliases (ds), or by its bare id when no Google account serves that id.
    """


def _pairs(values: tuple[str, ...], sep: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        left, found, right = value.partition(sep)
        out.append((left.strip(), right.strip()) if found else (value.strip(), ""))
    return out


def _keys(given: tuple[str, ...], from_stdin: bool) -> list[dict[str, str]]:
    """`KEY` or `NAME:KEY` from the options, then one a line from stdin."""
    lines = list(given)
    if from_stdin:
        lines += [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    keys = []
    for line in lines:
        named = NAMED_KEY.fullmatch(line.strip())
        keys.append({"name": named[1], "key": named[2]} if named else {"key": line.strip()})
    return keys


@providers.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(PROVIDER_KINDS), required=True)
@click.option("--base-url", help="The API's base URL (default: the kind's public API).")
@click.option("--key", "keys", multiple=True, help="A key, or NAME:KEY to name it (repeatable).")
@click.option(
    "--key-stdin", is_flag=True, help="Read keys (KEY or NAME:KEY), one a line, from stdin."
)
@click.option(
    "--model", "models", multiple=True, help="A model id, or ID=ALIAS1,ALIAS2 (repeatable)."
)
@click.option("--proxy", help="An outbound proxy for this provider (http:// or socks5://).")
@click.option("--disabled", is_flag=True, help="Add it switched off.")
def add(
    name: str,
    kind: str,
    base_url: str | None,
    keys: tuple[str, ...],
    key_stdin: bool,
    models: tuple[str, ...],
    proxy: str | None,
    disabled: bool,
) -> None:
    """Add provider NAME."""
    entry: dict[str, Any] = {"name": name, "kind": kind, "keys": _keys(keys, key_stdin)}
    entry["models"] = [
        {"id": ident, "aliases": [a.strip() for a in aliases.split(",") if a.strip()]}
        for ident, aliases in _pairs(models, "=")
    ]
    if base_url:
        entry["base_url"] = base_url
    if proxy:
        entry["proxy"] = proxy
    if disabled:
        entry["enabled"] = False
    store = load_settings(create=True)
    try:
        added = manage.add(store, entry)
    except (ConfigError, manage.ProviderRefused) as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"provider {added.name} added ({added.kind}, {added.url}, "
        f"{len(added.keys)} key{'s' * (len(added.keys) != 1)}); saved to {store.path}"
    )


@providers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys masked).")
def list_(as_json: bool) -> None:
    """The providers, their keys (masked) and models."""
    store = load_settings(create=True)
    views = manage.views(store)
    if as_json:
        click.echo(orjson.dumps(views, option=orjson.OPT_INDENT_2).decode())
        return
    if not views:
        click.echo("no providers; add one with `agproxy providers add`")
        return
    for view in views:
        state = "enabled" if view["enabled"] else "disabled"
        if view["source"] == "environment":
            state += ", set by the environment"
        click.echo(f"{view['name']}  {view['kind']}  {view['url']}  ({state})")
        pairs = zip(view["key_names"], view["keys"], strict=True)
        keys = ", ".join(f"{n} {k['key']}" for n, k in pairs)
        click.echo(f"  keys: {keys or 'none'}")
        models = [
            m["id"] + (f" ({', '.join(m['aliases'])})" if m["aliases"] else "")
            for m in view["models"]
        ]
        anything = "any, as " + view["name"] + "/MODEL"
        click.echo(f"  models: {', '.join(models) or anything}")
        if view["dispatch"] != "off":
            click.echo(f"  takes Claude requests: {view['dispatch']}")


@providers.command("test")
@click.argument("name")
def test(name: str) -> None:
    """Ask each key of provider NAME for the provider's models; exit 1 when one fails."""
    store = load_settings(create=True)
    try:
        entry = manage.find(store.settings, name)
    except manage.ProviderRefused as exc:
        raise click.ClickException(exc.message) from exc
    result = asyncio.run(_probe(entry, store.settings.upstream_proxy))
    for key in result["keys"]:
        if key["ok"]:
            click.echo(f"{key['key']}: ok, {key['count']} models ({key['ms']} ms)")
        else:
            click.echo(f"{key['key']}: failed, {key['status']}: {key['message']}")
    click.echo(f"{name}: {result['message']}")
    if not result["ok"]:
        sys.exit(1)


async def _probe(entry: ProviderEntry, proxy: str | None) -> dict[str, Any]:
    sessions = Sessions()
    try:  # the console's test, the same answer
        return await ProviderClient(sessions, lambda: proxy).probe(entry)
    finally:
        await sessions.close()


@providers.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove provider NAME from the config file."""
    store = load_settings(create=True)
    try:
        manage.remove(store, name)
    except (ConfigError, manage.ProviderRefused) as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"provider {name} removed")
