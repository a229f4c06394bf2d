"""`agproxy serve`: bind, start the proxy service if asked, run until a signal, stop cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from agproxy import __version__
from agproxy.accounts import Account, Status, build_account_service
from agproxy.config import ConfigError, ConfigStore
from agproxy.datadir import AlreadyServing, describe_serve_lock, hold_serve_lock
from agproxy.db import open_store
from agproxy.keys import KeyStore
from agproxy.keys.gate import Keys
from agproxy.keys.limits import DAY
from agproxy.monitor import stats
from agproxy.monitor.alerts import Alerts
from agproxy.monitor.writer import MonitorWriter
from agproxy.net.listener import BindError
from agproxy.pool import Pool
from agproxy.pool.policy import Policy
from agproxy.pool.scheduler import Scheduler
from agproxy.providers.client import ProviderClient
from agproxy.providers.registry import Providers
from agproxy.responses import ResponseStore
from agproxy.server.app import build_app
from agproxy.service import Gateway, StartError
from agproxy.shared.pool import sleeper
from agproxy.shared.state import share
from agproxy.shared.workers import WorkerRole

log = logging.getLogger("agproxy.server")
CONFIG_POLL_SECONDS = 1.0
ACCOUNTS_POLL_SECONDS = 1.0
LAST_USED_FLUSH_SECONDS = 10.0
COOLDOWN_SAVE_SECONDS = 1.0
REPROBE_TICK_SECONDS = 1.0
REPROBED = frozenset({Status.NEEDS_VERIFICATION, Status.REFUSED})
GC_GEN0_THRESHOLD = 20_000


async def _watch_config(store: ConfigStore, pause: Callable[[float], Awaitable[Any]]) -> None:
    """Apply edits made by `agproxy config set` (another process) while serving."""
    broken = False
    while True:
        await pause(CONFIG_POLL_SECONDS)
        try:
            if store.reload_if_changed():
                log.info("config file changed; new settings applied")
            broken = False
        except ConfigError as exc:
            if not broken:  # say it once, keep serving with the last good settings
                log.error("%s (keeping the previous settings)", exc.message)
            broken = True


async def _watch_accounts(gateway: Gateway) -> None:
    """Pick up accounts added or changed by another process (the CLI) without a restart."""
    pause = sleeper(gateway.shared.pool if gateway.shared else None, "accounts")
    while True:
        await pause(ACCOUNTS_POLL_SECONDS)
        try:
            if await asyncio.to_thread(gateway.pool.reload_if_changed):
                log.info("accounts changed; %d active", len(gateway.pool))
        except Exception:  # a locked or busy database: try again next tick
            log.exception("could not reload accounts")


async def _watch_keys(gateway: Gateway) -> None:
    """Pick up client keys made or changed by another process (the CLI, another worker)."""
    pause = sleeper(gateway.shared.pool if gateway.shared else None, "keys")
    while True:
        await pause(ACCOUNTS_POLL_SECONDS)
        try:
            if await asyncio.to_thread(gateway.keys.reload_if_changed):
                log.info("client keys changed; %d keys", len(gateway.keys.by_digest))
        except Exception:  # a locked or busy database: try again next tick
            log.exception("could not reload client keys")


async def _flush_last_used(gateway: Gateway) -> None:
    """Last-used times are kept in memory on the request path and saved in batches."""
    while True:
        await asyncio.sleep(LAST_USED_FLUSH_SECONDS)
        gateway.scheduler.cooldowns.prune()
        used = gateway.scheduler.take_last_used()
        if used:
            try:
                await asyncio.to_thread(gateway.accounts.store.touch_used, used)
            except Exception:
                log.exception("could not save last-used times")


async def _save_cooldowns(gateway: Gateway) -> None:
    """Cooldowns live in memory on the request path and are saved when they change, so
    that a restart does not send requests straight back to a rate-limited account."""
    saved = -1
    while True:
        await asyncio.sleep(COOLDOWN_SAVE_SECONDS)
        saved = await _save_cooldowns_once(gateway, saved)


async def _save_cooldowns_once(gateway: Gateway, saved: int) -> int:
    cooldowns = gateway.scheduler.cooldowns
    revision = cooldowns.revision
    if revision == saved:
        return saved
    try:
        rows = cooldowns.export(time.time())
        await asyncio.to_thread(gateway.accounts.store.save_cooldowns, rows)
    except Exception:  # a locked database: next tick
        log.exception("could not save cooldowns")
        return saved
    return revision


async def _reprobe(gateway: Gateway) -> None:
    """Accounts Google asked to verify, or refused, are asked again with one tiny call
    every `reprobe_minutes`, and go back into rotation when it passes."""
    seen: dict[str, float] = {}  # account id → when it was last probed (or first seen)
    while True:
        await asyncio.sleep(REPROBE_TICK_SECONDS)
        minutes = gateway.settings.reprobe_minutes
        if minutes <= 0 or not gateway.running:
            continue
        try:
            await _reprobe_due(gateway, seen, minutes * 60)
        except Exception:  # a locked database: next tick
            log.exception("could not re-probe accounts")


async def _reprobe_due(gateway: Gateway, seen: dict[str, float], every: float) -> None:
    now = time.monotonic()
    resting = gateway.pool.out_of_rotation  # as of the pool's last load: no database read
    for gone in seen.keys() - {a.id for a in resting}:  # back in rotation meanwhile
        del seen[gone]
    for account in resting:
        if account.status not in REPROBED or not account.enabled:
            seen.pop(account.id, None)
            continue
        if now - seen.setdefault(account.id, now) < every:
            continue
        seen[account.id] = now
        model = _cheapest_model(account)
        if await gateway.policy.probe(account, model):
            log.info("%s passed a probe on %s: back in rotation", account.email, model)
            await gateway.back_in_rotation(account, f"a probe on {model} passed")
            seen.pop(account.id, None)


def _cheapest_model(account: Account) -> str:
    names = [q.model for q in account.quotas]
    return next((m for m in names if "flash" in m), names[0] if names else "gemini-3-flash")


async def _refresh_quotas_periodically(gateway: Gateway) -> None:
    while True:
        minutes = gateway.settings.quota_refresh_minutes
        await asyncio.sleep(max(minutes, 1) * 60)
        if minutes <= 0 or not gateway.running:
            continue
        if gateway.shared is not None and not await gateway.shared.pool.take_chore(
            "quota", max(minutes, 1) * 60 - 5
        ):
            continue  # another process of the gateway refreshed them this round
        errors = await gateway.accounts.refresh_quotas(list(gateway.pool.accounts))
        failed = {k: v for k, v in errors.items() if v}
        log.info("quota refreshed for %d accounts (%d failed)", len(errors), len(failed))


def _announce(gateway: Gateway, echo: Callable[[str], None], lock_fd: int | None) -> None:
    """Where the gateway listens, on the terminal and in the serve lock's description."""
    host, port = gateway.settings.host, gateway.settings.port
    role = gateway.role
    if role is not None and role.index:
        return  # worker 0 speaks for all
    if lock_fd is not None:
        describe_serve_lock(lock_fd, f"pid {os.getpid()}, listening on {host}:{port}")
    shown_host = "127.0.0.1" if host == "0.0.0.0" else host
    echo(f"agproxy {__version__} listening on {host}:{port}")
    echo(f"  console:  http://{shown_host}:{port}/")
    echo(
        f"  OpenAI:   http://{shown_host}:{port}/v1   "
        f"Anthropic / Gemini: http://{shown_host}:{port}"
    )
    echo(f"  data dir: {gateway.store.directory}")
    if role is not None:
        echo(f"  workers:  {role.count} (this is worker 0, pid {os.getpid()})")
    if gateway.shared is not None:
        echo(f"  shared state: Redis at {gateway.shared.link.shown_url}")


def _tune_gc() -> None:
    """Move start-up objects out of the collector's sight and collect young objects less
    often: each request allocates many short-lived objects, and frequent full passes
    over long-lived ones showed up as latency spikes under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 40)


def _background(gateway: Gateway) -> list[asyncio.Task[Any]]:
    """What runs beside the requests while the gateway serves."""
    shared_pool = gateway.shared.pool if gateway.shared else None
    work = [
        _watch_config(gateway.store, sleeper(shared_pool, "config")),
        _watch_accounts(gateway),
        _watch_keys(gateway),
        _refresh_quotas_periodically(gateway),
        _flush_last_used(gateway),
        _save_cooldowns(gateway),
    ]
    if gateway.first_worker:  # once per host: a probe is a call to Google
        work.append(_reprobe(gateway))
    if gateway.shared is not None:
        work.append(gateway.shared.workers.run())
    if gateway.monitor is not None:
        work.append(gateway.monitor.run())
    return [asyncio.create_task(w) for w in work]


async def _serve(gateway: Gateway, echo: Callable[[str], None], lock_fd: int | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0
    role = gateway.role

    def say(line: str) -> None:
        echo(line if role is None else f"[worker {role.index}] {line}")

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1 and gateway.listener is not None:
            gateway.listener.server.force_exit = True  # second Ctrl+C: don't wait
        stop.set()

    # Before listening: a signal that arrives as soon as the port answers is handled too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    settings = gateway.settings
    if gateway.shared is not None:
        await gateway.shared.start()  # before listening: a request finds the shared state
    try:
        gateway.listen(settings.host, settings.port)
    except BindError as exc:
        echo(exc.message)
        return 1
    _announce(gateway, echo, lock_fd)
    midnight = time.time() // DAY * DAY  # the daily token limits count UTC days
    gateway.keys.seed_today(stats.tokens_by_key(gateway.engine, midnight))
    restored = gateway.accounts.store.load_cooldowns(time.time())
    gateway.scheduler.cooldowns.restore(restored, time.time())
    if settings.auto_start:
        try:
            status = await gateway.start(persist=False)
            say(f"proxy service: running ({status['active_accounts']} active accounts)")
        except StartError as exc:
            say(f"proxy service: stopped: {exc.message}")
    else:
        say("proxy service: stopped (auto_start is false); start it with `agproxy start`")

    _tune_gc()
    background = _background(gateway)
    await stop.wait()
    say("shutting down: finishing in-flight requests…")
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    used = gateway.scheduler.take_last_used()
    if used:
        gateway.accounts.store.touch_used(used)
    await _save_cooldowns_once(gateway, -1)
    await gateway.shutdown()
    say("stopped")
    return 0


def serve(store: ConfigStore, echo: Callable[[str], None]) -> int:
    """Run the gateway in the foreground; returns the process exit status."""
    try:
        store.load()
    except ConfigError as exc:
        echo(f"error: {exc.message}")
        return 2
    role = WorkerRole.from_env()
    lock_fd = None
    if role is None:  # workers run under a parent that holds the lock for them
        lock_fd = claim_data_dir(store, echo, f"pid {os.getpid()}, starting")
        if lock_fd is None:
            return 1
    gateway = assemble(store, role)
    build_app(gateway)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(gateway, echo, lock_fd))


def claim_data_dir(store: ConfigStore, echo: Callable[[str], None], holder: str) -> int | None:
    """Hold the data directory's serve lock, described as `holder`; None (and why, said)
    when another `agproxy serve` holds it."""
    try:
        lock_fd = hold_serve_lock(store.directory)
    except AlreadyServing as exc:
        echo(
            f"error: another agproxy is already serving the data directory {store.directory} "
            f"({exc.holder}); stop it first (`agproxy stop` stops only its proxy service; "
            "end its process), or give this one its own AGPROXY_DATA_DIR"
        )
        return None
    describe_serve_lock(lock_fd, holder)
    return lock_fd


def assemble(store: ConfigStore, role: WorkerRole | None = None) -> Gateway:
    """The gateway's parts wired together on the data directory's database (and its
    monitor), not yet listening; with `redis_url`, hooked to the state its other
    processes share."""
    engine = open_store(store.settings, store.directory)
    accounts = build_account_service(lambda: store.settings, engine)
    pool = Pool(accounts.store)
    accounts.tokens.on_relogin = lambda account: pool.drop(account.id)
    scheduler = Scheduler(pool, lambda: store.settings)
    providers = Providers(
        lambda: store.settings,
        ProviderClient(accounts.client.sessions, lambda: store.settings.upstream_proxy),
        lambda: store.settings.default_cooldown_seconds,
        lambda: store.settings.backoff_steps,
    )
    monitor = MonitorWriter(engine, lambda: store.settings)
    alerts = Alerts(lambda: store.settings, lambda: gateway.monitor)
    gateway = Gateway(
        store,
        engine,
        pool,
        accounts,
        scheduler,
        Policy(scheduler, accounts, alerts=alerts),
        providers,
        Keys(KeyStore(engine)),
        ResponseStore(engine, lambda: store.settings.responses_retention_days),
        monitor,
    )
    gateway.keys.load()
    gateway.role = role
    url = store.settings.redis_url
    if url:
        gateway.shared = share(
            url,
            gateway.policy,
            accounts.tokens,
            gateway.keys,
            role,
            lambda: _describe(gateway),
            lambda running: gateway.start(persist=False) if running else gateway.stop(False),
        )
    return gateway


def _describe(gateway: Gateway) -> dict[str, Any]:
    """This process's line in the process list (shared/workers.py)."""
    host, port = gateway.listener.address if gateway.listener else ("", 0)
    served = sum(gateway.monitor.metrics.requests.values()) if gateway.monitor else 0
    return {"running": gateway.running, "listen": f"{host}:{port}", "requests": served}
