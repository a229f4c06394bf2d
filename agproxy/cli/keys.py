"""`agproxy keys …`: client keys, each with its own models, limits and usage.

These commands work on the data directory's database directly; a running gateway picks
the change up through the keys revision, without a restart. A key's secret is printed
once, by `create` and `rotate`: only a digest of it is kept.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import click
import orjson
from sqlalchemy import Engine

from agproxy.cli.client import data_dir_engine
from agproxy.keys.settings import BadSetting, checked, format_time, state
from agproxy.keys.store import ClientKey, KeyRefused, KeyStore
from agproxy.monitor import stats

SHOWN_ONCE = (
    "This secret is shown only now: agproxy keeps only a digest of it. Copy it now; "
    "if it is lost, `agproxy keys rotate {name}` makes a new one."
)


@contextlib.contextmanager
def _key_store() -> Iterator[KeyStore]:
    with data_dir_engine() as engine:
        yield KeyStore(engine)


def _find(store: KeyStore, id_or_name: str) -> ClientKey:
    try:
        return store.find(id_or_name)
    except KeyRefused as exc:
        raise click.ClickException(exc.message) from exc


def _hint(param: str) -> str:
    if param == "name":
        return "'NAME'"
    return "'--expires'" if param == "expires_at" else f"'--{param.replace('_', '-')}'"


def _checked(values: dict[str, Any]) -> dict[str, Any]:
    """The options given, checked; a refused one is a usage error (exit 2) naming it."""
    given = {k: v for k, v in values.items() if v is not None and v != ()}
    for name, value in given.items():
        if isinstance(value, str) and not value.strip():  # `--rpm ""`: a slip, not "no limit"
            raise click.BadParameter("must not be empty", param_hint=_hint(name))
    try:
        return checked(given)
    except BadSetting as exc:
        raise click.BadParameter(exc.problem, param_hint=_hint(exc.param)) from None


def _tz_offset() -> int:
    offset = datetime.now().astimezone().utcoffset()
    return int(offset.total_seconds()) if offset else 0


def limits_text(key: ClientKey) -> str:
    """`60 rpm, 100,000 tpm, 4 at once, 1,000,000 tokens/day, 25% of quota`, or `none`."""
    parts = []
    for name, unit in (
        ("rpm", "{:,} rpm"),
        ("tpm", "{:,} tpm"),
        ("concurrency", "{:,} at once"),
        ("daily_tokens", "{:,} tokens/day"),
        ("quota_share", "{:g}% of quota"),
    ):
        value = getattr(key, name)
        if value is not None:
            parts.append(unit.format(value))
    return ", ".join(parts) or "none"


def _view(
    key: ClientKey, now: float, usage: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The key as `list --json` and `show --json` print it: never its secret or digest."""
    view = {**key.public(), "state": state(key, now)}
    if usage is not None:
        view["usage"] = usage
    return view


def _usage(engine: Engine, names: list[str], now: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Each key's requests and tokens today and this week (local time), from the monitor."""
    day, week = stats.day_and_week_start(now, _tz_offset())
    today, this_week = stats.usage_by_key(engine, day), stats.usage_by_key(engine, week)
    empty = {"requests": 0, "input_tokens": 0, "output_tokens": 0}
    return {n: {"today": today.get(n, empty), "week": this_week.get(n, empty)} for n in names}


def _print_secret(key: ClientKey, secret: str, verb: str, as_json: bool) -> None:
    if as_json:
        view = _view(key, time.time())
        click.echo(
            orjson.dumps({"key": view, "secret": secret}, option=orjson.OPT_INDENT_2).decode()
        )
        return
    click.echo(f"{verb} client key {key.name!r} (id {key.id})")
    click.echo(secret)
    click.echo(SHOWN_ONCE.format(name=key.name))


@click.group()
def keys() -> None:
    """Client keys: give each user or tool its own key, with its own models and limits.

    \b
    agproxy keys create NAME [--models P…] [--rpm N] …   a new key (its secret shown once)
    agproxy keys list                                   keys, limits, state
    agproxy keys show NAME                              one key, with its usage
    agproxy keys disable|enable|rotate|delete NAME

    The owner's api_key stays the unlimited key. A running gateway picks up changes
    without a restart.
    """


@keys.command()
@click.argument("name")
@click.option(
    "--models",
    multiple=True,
    metavar="PATTERN",
    help="Model ids or * patterns the key may use (repeat, or separate with commas); "
    "default: every model.",
)
@click.option(
    "--expires",
    metavar="DATE",
    help="When the key stops working: 2027-01-31 (00:00 UTC) or 2027-01-31T18:00 "
    "(UTC unless a zone is given, e.g. +02:00). Must be in the future.",
)
@click.option("--rpm", metavar="N", help="Requests per minute.")
@click.option("--tpm", metavar="N", help="Tokens per minute (as the upstream reports them).")
@click.option("--concurrency", metavar="N", help="Requests at once.")
@click.option("--daily-tokens", metavar="N", help="Tokens per day.")
@click.option(
    "--quota-share",
    metavar="PERCENT",
    help="At most this share (0 < p ≤ 100) of the pool's use of a model group in its window.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its secret as JSON.")
def create(
    name: str, models: tuple[str, ...], expires: str | None, as_json: bool, **limits: Any
) -> None:
    """Create a client key named NAME and print its secret (only this once).

    \b
      agproxy keys create ci-bot --models 'gemini-*' --rpm 30 --daily-tokens 2000000
      agproxy keys create alice --expires 2027-06-30 --quota-share 25
    """
    values = _checked({"name": name, "models": models, "expires_at": expires, **limits})
    with _key_store() as store:
        try:
            key, secret = store.create(values.pop("name"), **values)
        except KeyRefused as exc:
            raise click.UsageError(exc.message) from exc
    _print_secret(key, secret, "created", as_json)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (never a secret).")
def list_(as_json: bool) -> None:
    """List the keys: masked prefix, models, limits, expiry and state."""
    now = time.time()
    with _key_store() as store:
        found = store.all()
    if as_json:
        views = [_view(k, now) for k in found]
        click.echo(orjson.dumps(views, option=orjson.OPT_INDENT_2).decode())
        return
    if not found:
        click.echo("no client keys yet: make one with `agproxy keys create NAME`")
        return
    rows = [
        [
            k.name,
            k.prefix + "…",
            ", ".join(k.models) or "every model",
            limits_text(k),
            format_time(k.expires_at),
            state(k, now),
        ]
        for k in found
    ]
    _table(rows, ["NAME", "KEY", "MODELS", "LIMITS", "EXPIRES", "STATE"])


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@keys.command()
@click.argument("id_or_name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (never the secret).")
def show(id_or_name: str, as_json: bool) -> None:
    """Show one key: its settings and its usage today and this week (from the monitor)."""
    now = time.time()
    with _key_store() as store:
        key = _find(store, id_or_name)
        usage = _usage(store.engine, [key.name], now)[key.name]
    view = _view(key, now, usage)
    if as_json:
        click.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return
    lines = [
        ("name", key.name),
        ("id", key.id),
        ("key", view["prefix"]),
        ("state", view["state"]),
        ("models", ", ".join(key.models) or "every model"),
        ("limits", limits_text(key)),
        ("expires", format_time(key.expires_at)),
        ("created", format_time(key.created_at)),
        ("rotated", format_time(key.rotated_at) if key.rotated_at else "never"),
    ]
    for label, period in (("today", "today"), ("this week", "week")):
        u = usage[period]
        text = f"{u['requests']:,} requests, {u['input_tokens']:,} in / {u['output_tokens']:,} out"
        lines.append((label, text))
    for label, value in lines:
        click.echo(f"{label + ':':<11}{value}")


def _set_enabled(id_or_name: str, enabled: bool) -> None:
    with _key_store() as store:
        key = _find(store, id_or_name)
        store.update(key.id, enabled=enabled)
    click.echo(f"{'enabled' if enabled else 'disabled'} client key {key.name!r}")


@keys.command()
@click.argument("id_or_name")
def disable(id_or_name: str) -> None:
    """Refuse the key (401, saying it is disabled) until it is enabled again."""
    _set_enabled(id_or_name, False)


@keys.command()
@click.argument("id_or_name")
def enable(id_or_name: str) -> None:
    """Accept a disabled key again."""
    _set_enabled(id_or_name, True)


@keys.command()
@click.argument("id_or_name")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its new secret as JSON.")
def rotate(id_or_name: str, as_json: bool) -> None:
    """Give the key a new secret (printed only this once); the old one stops working at
    once. Its name, models, limits and usage stay."""
    with _key_store() as store:
        key = _find(store, id_or_name)
        secret = store.rotate(key.id)
        key = store.find(key.id)
    _print_secret(key, secret, "rotated", as_json)


@keys.command()
@click.argument("id_or_name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(id_or_name: str, yes: bool) -> None:
    """Delete the key: its secret stops working at once (its monitor records stay)."""
    with _key_store() as store:
        key = _find(store, id_or_name)
        if not yes:
            click.confirm(f"Delete client key {key.name!r} ({key.prefix}…)?", abort=True)
        store.delete(key.id)
    click.echo(f"deleted client key {key.name!r}")
