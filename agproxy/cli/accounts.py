"""`agproxy accounts …`: add, sign in, import, list and manage the Google accounts.

These commands work on the data directory's database directly; a running gateway
notices the change within a second, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import click
import orjson

from agproxy.accounts import AccountService, build_account_service
from agproxy.accounts.login import LoginError, LoginFlow, LoopbackCallback, extract_code
from agproxy.accounts.service import (
    AddError,
    ImportEntry,
    ImportResult,
    parse_import,
    summarize,
)
from agproxy.accounts.store import Account, AccountStore
from agproxy.accounts.windows import GEMINI, QuotaWindow
from agproxy.cli.client import AdminClient, data_dir_engine, load_settings, open_data_dir_store
from agproxy.datadir import atomic_write

T = TypeVar("T")


def _run(work: Callable[[AccountService], Awaitable[T]]) -> T:
    """Run `work` with an account service on this data directory, then close it."""
    store = load_settings(create=True)
    engine = open_data_dir_store(store)
    service = build_account_service(lambda: store.settings, engine)

    async def main() -> T:
        try:
            return await work(service)
        finally:
            await service.client.close()

    try:
        return asyncio.run(main())
    finally:
        engine.dispose()


@contextlib.contextmanager
def _account_store() -> Iterator[AccountStore]:
    with data_dir_engine() as engine:
        yield AccountStore(engine)


def _find(store: AccountStore, id_or_email: str) -> Account:
    account = store.get(id_or_email)
    if account is None:
        raise click.ClickException(
            f"no single account matches {id_or_email!r} "
            "(use the email or the id from `agproxy accounts list`)"
        )
    return account


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _until(ts: float | None) -> str:
    if not ts:
        return "-"
    seconds = int(ts - time.time())
    if seconds <= 0:
        return "now"
    hours, rest = divmod(seconds, 3600)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24:02d}h"
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m"


def _ordered(windows: list[QuotaWindow]) -> list[QuotaWindow]:
    """Gemini's windows first, then Claude and GPT's (3p); the 5-hour window first."""
    return sorted(windows, key=lambda w: (w.group != GEMINI, w.group, w.window != "5h"))


def _percent(fraction: float | None) -> str:
    return "empty" if not fraction or fraction <= 0 else f"{int(fraction * 100)}%"


def _windows_text(account: Account) -> str:
    """`gemini 5h 70% weekly 90%; 3p 5h 100% weekly empty (resets in 2d03h)`."""
    groups: dict[str, list[str]] = {}
    for w in _ordered(account.windows):
        text = f"{w.window} {_percent(w.remaining_fraction)}"
        if w.empty:
            text += f" (resets in {_until(w.reset_at)})"
        groups.setdefault(w.group, []).append(text)
    return "; ".join(f"{group} {' '.join(texts)}" for group, texts in groups.items()) or "-"


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _with_progress(
    entries: list[ImportEntry],
    work: Callable[[AccountService, Callable[[ImportResult], None]], Awaitable[list[ImportResult]]],
) -> list[ImportResult]:
    """A progress bar on a terminal; otherwise one line per result as it is saved (so a
    log shows what was added even if the import is interrupted)."""
    total = len(entries)
    if sys.stderr.isatty():
        with click.progressbar(
            length=total, label="checking tokens", file=sys.stderr, show_pos=True
        ) as bar:
            return _run(lambda s: work(s, lambda _r: bar.update(1)))
    done = 0

    def line(result: ImportResult) -> None:
        nonlocal done
        done += 1
        reason = f" ({result.reason})" if result.reason else ""
        click.echo(
            f"[{done}/{total}] line {result.entry.line}: {result.outcome} "
            f"{result.email or '-'}{reason}",
            err=True,
        )

    return _run(lambda s: work(s, line))


@click.group()
def accounts() -> None:
    """Manage the pool of Google accounts.

    \b
    agproxy accounts login                  sign in with Google in a browser
    agproxy accounts add --refresh-token T  add an account by its refresh token
    agproxy accounts import FILE            add many (JSON array or one token per line)
    agproxy accounts list                   show them with state and quota

    A running gateway picks up changes within a second.
    """


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (no tokens).")
def list_(as_json: bool) -> None:
    """List accounts with their state, tier, quota and last use."""
    with _account_store() as store:
        found = store.all()
    if as_json:
        click.echo(orjson.dumps([a.public() for a in found], option=orjson.OPT_INDENT_2).decode())
        return
    if not found:
        click.echo(
            "no accounts yet: add one with `agproxy accounts login` or "
            "`agproxy accounts add --refresh-token T`"
        )
        return
    rows = []
    for a in found:
        lowest = min(
            (q for q in a.quotas),
            default=None,
            key=lambda q: q.remaining_fraction if q.remaining_fraction is not None else 0,
        )
        quota = (
            "-"
            if lowest is None
            else (
                f"{len(a.quotas)} models, lowest {lowest.model} "
                f"{int((lowest.remaining_fraction or 0) * 100)}% (resets {_until(lowest.reset_at)})"
            )
        )
        state = a.state + (f": {a.status_reason[:60]}" if a.status_reason else "")
        rows.append(
            [
                a.id[:8],
                a.email,
                state,
                a.tier or "-",
                quota,
                _windows_text(a),
                _ago(a.last_used_at),
            ]
        )
    _table(rows, ["ID", "EMAIL", "STATE", "TIER", "QUOTA", "WINDOWS", "LAST USED"])
    for a in found:  # the links the owner must open, whole (a table would cut them)
        if a.status_url:
            click.echo(f"{a.email}: {a.state}: open {a.status_url}")


@accounts.command()
@click.option(
    "--refresh-token",
    "refresh_token",
    required=True,
    help="A Google OAuth refresh token (1//…) of the Antigravity client.",
)
@click.option("--email", help="The account's email, used only if Google does not say it.")
def add(refresh_token: str, email: str | None) -> None:
    """Add an account by its refresh token.

    The token is checked by refreshing it first; a token Google refuses is reported
    with Google's reason and nothing is stored.
    """
    try:
        account, outcome = _run(lambda s: s.add_refresh_token(refresh_token.strip(), email))
    except AddError as exc:
        raise click.ClickException(exc.message) from exc
    verb = {"added": "added", "updated": "updated", "duplicate": "already present:"}[outcome]
    click.echo(
        f"{verb} {account.email} (project {account.project_id or '-'}, "
        f"tier {account.tier or '-'}, {len(account.quotas)} models with quota)"
    )


@accounts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def import_(file: str, as_json: bool) -> None:
    """Add the accounts listed in FILE (or - for stdin).

    FILE is a JSON array of {"refresh_token": …, "email": …} objects (or of token
    strings), or one refresh token per line. Each token is checked on its own; a bad
    line never stops the others, and importing the same file twice adds nothing twice.
    """
    text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    try:
        entries, invalid = parse_import(text)
    except AddError as exc:
        raise click.ClickException(exc.message) from exc

    results = _with_progress(entries, lambda s, progress: s.import_entries(entries, progress))
    results = sorted(invalid + results, key=lambda r: r.entry.line)
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "summary": summarize(results),
                    "results": [
                        {
                            "line": r.entry.line,
                            "outcome": r.outcome,
                            "email": r.email,
                            "reason": r.reason,
                        }
                        for r in results
                    ],
                }
            ).decode()
        )
        return
    _table(
        [[str(r.entry.line), r.outcome, r.email or "-", r.reason or ""] for r in results],
        ["LINE", "RESULT", "EMAIL", "REASON"],
    )
    counts = summarize(results)
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))


@accounts.command()
@click.argument("id_or_email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(id_or_email: str, yes: bool) -> None:
    """Remove an account (its refresh token is forgotten)."""
    with _account_store() as store:
        account = _find(store, id_or_email)
        if not yes and not click.confirm(f"remove {account.email}?"):
            raise click.Abort()
        store.remove(account.id)
    click.echo(f"removed {account.email}")


def _set_enabled(id_or_email: str, enabled: bool) -> None:
    with _account_store() as store:
        account = _find(store, id_or_email)
        store.set_enabled(account.id, enabled)
    click.echo(f"{'enabled' if enabled else 'disabled'} {account.email}")


@accounts.command()
@click.argument("id_or_email")
def enable(id_or_email: str) -> None:
    """Put an account back into rotation."""
    _set_enabled(id_or_email, True)


@accounts.command()
@click.argument("id_or_email")
def disable(id_or_email: str) -> None:
    """Take an account out of rotation (it is kept; `enable` brings it back)."""
    _set_enabled(id_or_email, False)


@accounts.command("set-proxy")
@click.argument("id_or_email")
@click.argument("url")
def set_proxy(id_or_email: str, url: str) -> None:
    """Send this account's upstream traffic through a proxy: http://, https://, socks5://
    (names resolved here) or socks5h:// (resolved by the proxy), with an optional
    user:password@. URL `none` clears it; without one the global `upstream_proxy` applies."""
    from agproxy.addresses import mask_url, normalize_proxy

    try:
        value = None if url.lower() in ("none", "off", "") else normalize_proxy(url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    with _account_store() as store:
        account = _find(store, id_or_email)
        store.set_proxy(account.id, value)
    click.echo(f"{account.email}: proxy {mask_url(value) or 'none'}")


@accounts.command()
@click.argument("id_or_email", required=False)
def quota(id_or_email: str | None) -> None:
    """Refresh the per-model quota of all accounts, or of one."""

    async def work(service: AccountService) -> tuple[list[Account], dict[str, str | None]]:
        chosen = [_find(service.store, id_or_email)] if id_or_email else service.store.all()
        with click.progressbar(
            length=len(chosen), label="fetching quota", file=sys.stderr, show_pos=True
        ) as bar:
            errors = await service.refresh_quotas(chosen, lambda _a, _e: bar.update(1))
        return chosen, errors

    chosen, errors = _run(work)
    rows = []
    for account in chosen:
        if errors.get(account.id):
            rows.append([account.email, "-", "error: " + str(errors[account.id])[:80], ""])
            continue
        for q in account.quotas:
            pct = "exhausted" if q.remaining_fraction is None else f"{q.remaining_fraction:.0%}"
            rows.append([account.email, q.model, pct, _until(q.reset_at)])
    _table(rows, ["EMAIL", "MODEL", "REMAINING", "RESETS IN"])
    windows = [
        [account.email, w.group, w.window, _percent(w.remaining_fraction), _until(w.reset_at)]
        for account in chosen
        if not errors.get(account.id)
        for w in _ordered(account.windows)
    ]
    if windows:
        click.echo()
        _table(windows, ["EMAIL", "GROUP", "WINDOW", "REMAINING", "RESETS IN"])
    if any(errors.values()):
        sys.exit(1)


@accounts.command()
@click.argument("file", type=click.Path(dir_okay=False))
def export(file: str) -> None:
    """Write every account's email and refresh token to FILE (mode 0600), in the
    format `accounts import` reads."""
    with _account_store() as store:
        found = store.all()
    data = [{"email": a.email, "refresh_token": a.refresh_token} for a in found]
    path = Path(file).expanduser().resolve()
    atomic_write(path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", 0o600)
    click.echo(f"exported {len(data)} accounts to {path} (mode 0600: it holds secrets)")


@accounts.command()
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.option(
    "--manual",
    is_flag=True,
    help="Headless: paste the redirect URL (or the code) here instead of waiting "
    "for the local callback.",
)
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for sign-in.")
def login(no_browser: bool, manual: bool, timeout: int) -> None:
    """Sign in with Google and add the account.

    Prints the authorization URL (open it in any browser, on any machine). After
    consent Google redirects to a local callback on this machine; on a headless
    machine, copy the address the browser ends on (http://127.0.0.1:…/oauth-callback?…)
    and paste it here (--manual, or just paste it while waiting).
    """

    async def work(service: AccountService) -> tuple[Account, str]:
        callback = LoopbackCallback()
        flow = LoginFlow(await callback.start())
        url = flow.url(service.oauth)
        click.echo("Open this URL to sign in with Google:\n")
        click.echo(url + "\n", nl=True)
        sys.stdout.flush()
        if not no_browser and not manual and os.environ.get("DISPLAY"):
            webbrowser.open(url)
        waiters: list[asyncio.Task[str]] = []
        if not manual:

            async def from_callback() -> str:
                return flow.code_from_query(await callback.next_query())

            waiters.append(asyncio.create_task(from_callback()))
        if manual or sys.stdin.isatty():
            prompt = "Paste the redirect URL or the code: " if manual else ""
            if manual:
                click.echo(prompt, nl=False)

            async def from_stdin() -> str:
                line = await asyncio.to_thread(sys.stdin.readline)
                return extract_code(line, flow.state)

            waiters.append(asyncio.create_task(from_stdin()))
        try:
            done, pending = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if not done:
                raise click.ClickException(
                    f"no sign-in within {timeout}s; run the command "
                    "again (or use --manual on a headless machine)"
                )
            code = done.pop().result()
        finally:
            await callback.close()
        account, outcome = await service.complete_login(code, flow.redirect_uri, flow.pkce)
        return account, outcome.value

    try:
        account, outcome = _run(work)
    except (LoginError, AddError) as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"{outcome} {account.email} (project {account.project_id or '-'}, "
        f"tier {account.tier or '-'}, {len(account.quotas)} models with quota)"
    )


@accounts.command()
@click.argument("id_or_email")
@click.option("--model", help="Clear the cooldown for this model only.")
def reset(id_or_email: str, model: str | None) -> None:
    """Clear an account's cooldowns (all models, or --model) and, for all models, a
    forbidden state, so that it is asked again at once. Through the running gateway when
    there is one (its cooldowns live in memory), else in the data directory."""
    with _account_store() as store:
        account = _find(store, id_or_email)
    client = AdminClient.from_data_dir()
    try:
        done = client.call_ok("POST", f"/api/accounts/{account.id}/reset", {"model": model})
    except click.ClickException as exc:
        if "no gateway answers" not in exc.message:
            raise
        done = _reset_offline(account, model)
    what = f"for {model}" if model else "for every model"
    status = f"; state {done['status']}" if done.get("status") else ""
    click.echo(f"{account.email}: {done['cooldowns_cleared']} cooldowns cleared {what}{status}")


def _reset_offline(account: Account, model: str | None) -> dict[str, object]:
    """No gateway runs: the saved cooldowns are cleared in the database."""
    from agproxy.accounts.store import Status

    with _account_store() as store:
        now = time.time()
        kept = [
            row
            for row in store.load_cooldowns(now)
            if row[0] != account.id or (model is not None and row[1] != model)
        ]
        cleared = len(store.load_cooldowns(now)) - len(kept)
        store.save_cooldowns(kept)
        status = account.status
        if model is None and status is Status.FORBIDDEN:
            store.set_status(account.id, Status.OK)
            status = Status.OK
    url = load_settings(create=False).settings.redis_url
    if url:
        cleared = max(cleared, _reset_in_redis(url, account, model))
    return {"cooldowns_cleared": cleared, "status": status.value}


def _reset_in_redis(url: str, account: Account, model: str | None) -> int:
    from redis.exceptions import RedisError

    from agproxy.addresses import mask_url
    from agproxy.shared.pool import clear_stored_cooldowns

    try:
        return clear_stored_cooldowns(url, account.id, model)
    except (RedisError, OSError) as exc:
        raise click.ClickException(
            f"the cooldowns saved in the database are cleared, but Redis at {mask_url(url)} "
            f"is not reachable ({type(exc).__name__}); its copy comes back when a gateway "
            "starts: run this again once Redis is up"
        ) from exc
