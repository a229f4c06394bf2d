"""The gateway process: its config, database, pool, listener and the proxy service switch.

The HTTP listener serves the console and admin API for as long as `agproxy serve`
runs; the proxy service (the AI routes) is started and stopped inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from agproxy.accounts import AccountService, Status
from agproxy.accounts.store import Account
from agproxy.config import ConfigError, ConfigStore, Settings
from agproxy.datadir import RUNTIME_FILE, atomic_write
from agproxy.keys.gate import CURRENT_KEY, Keys
from agproxy.monitor.writer import MonitorWriter
from agproxy.net.listener import BindError, Listener, bind_socket, close_listener, serve_socket
from agproxy.pool import Pool
from agproxy.pool.policy import Policy
from agproxy.pool.scheduler import Scheduler
from agproxy.providers.registry import Providers, Target
from agproxy.responses import ResponseStore
from agproxy.router.mapping import route
from agproxy.shared.workers import WorkerRole

if TYPE_CHECKING:
    from agproxy.shared.state import Shared

log = logging.getLogger("agproxy.service")

NO_ACCOUNTS = "no available accounts, please add an account first"
# States a reset by hand clears (the backend's refusals); needs_relogin needs a sign-in.
RESETTABLE = frozenset({Status.FORBIDDEN, Status.NEEDS_VERIFICATION, Status.REFUSED})
Provider = Literal["google", "dispatcher"]
GOOGLE: Provider = "google"
# The provider that takes a share of Claude requests (z.ai's modes: settings.dispatcher).
DISPATCHER: Provider = "dispatcher"
# How long a moved-away listener keeps serving so the start response still gets out.
MOVE_GRACE_SECONDS = 0.5


class StartError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Gateway:
    store: ConfigStore
    engine: Engine
    pool: Pool
    accounts: AccountService
    scheduler: Scheduler
    policy: Policy
    providers: Providers
    keys: Keys
    responses: ResponseStore
    monitor: MonitorWriter | None = None
    # Set with `redis_url`: state shared with the gateway's other processes (shared/).
    shared: Shared | None = None
    role: WorkerRole | None = None  # one worker of `agproxy serve --workers N`
    app: ASGIApp | None = None
    running: bool = False
    listener: Listener | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _retired: set[asyncio.Task[None]] = field(default_factory=set)
    _catalog: tuple[str, ...] = ()
    _dispatch_turn: int = 0
    _catalog_key: object = None

    @property
    def settings(self) -> Settings:
        return self.store.settings

    def catalog(self) -> tuple[str, ...]:
        """The models this gateway serves: the pool's, plus pinned, minus hidden."""
        settings = self.settings
        added = self.providers.catalog()
        key = (self.pool.models, settings.pinned_models, settings.hidden_models, added)
        if key != self._catalog_key:  # recomputed only when the pool or settings change
            models = set(self.pool.models) | set(settings.pinned_models) | set(added)
            self._catalog = tuple(sorted(models - set(settings.hidden_models)))
            self._catalog_key = key
        return self._catalog

    def google_serves(self, model: str) -> bool:
        return model in self.pool.models or model in self.settings.pinned_models

    def provider_for(self, model: str) -> Target | None:
        """The provider that answers `model` (a routed model) in the first place: the one
        it names (prefix, alias), or one listing it when the Google pool does not serve it.
        None: the Google pool answers (providers listing it are its fallback)."""
        if not self.providers.active():
            return None
        target = self.providers.target(model)
        if target is None and not self.google_serves(model):
            serving = self.providers.serving(model)
            target = serving[0] if serving else None
        return target

    def route_model(self, requested: str) -> str | None:
        """The model that serves `requested`: mapping rules, then the pool's catalog. A
        request with a client key is checked against its models and quota share here,
        where every protocol names its model (KeyRefusal: 403 or 429)."""
        model = route(requested, self.settings.model_mapping, self.catalog())
        if model is None and self.providers.target(requested) is not None:
            model = requested  # a provider's prefix, for an id it does not list
        key = CURRENT_KEY.get()
        if key is not None:
            self.keys.check_model(key, requested, model)
        return model

    def plan(self, requested: str, rotate: bool = True) -> tuple[Provider, ...]:
        """The providers that may answer an Anthropic request for `requested`, in the
        order they are asked: each after the one before has no account or key left (all
        cooling down, refused, or failed for this request). `rotate`: this request takes
        its turn in `pooled` mode (a token count does not)."""
        dispatcher = self.settings.dispatcher
        if dispatcher is None:
            return (GOOGLE,)
        model = self.route_model(requested)
        if dispatcher.dispatch == "exclusive" or model is None:
            return (DISPATCHER,)
        if dispatcher.dispatch == "fallback":
            return (GOOGLE, DISPATCHER) if self.scheduler.has_free(model) else (DISPATCHER, GOOGLE)
        # pooled: the provider is one more slot in the rotation
        self._dispatch_turn += rotate
        if self._dispatch_turn % (len(self.pool) + 1) == 0:
            return (DISPATCHER, GOOGLE)
        return (GOOGLE, DISPATCHER)

    async def reset_account(self, account: Account, model: str | None = None) -> dict[str, Any]:
        """Forget what the pool learned about an account: its cooldowns (for `model`, or
        all), its backoff, and (for all models) a refusal state it may be in; an account
        that needs a new sign-in keeps needing it."""
        cleared = self.scheduler.cooldowns.clear(account.id, model)
        for key in [k for k in self.policy.strikes if k[0] == account.id]:
            if model is None or key[1] == model:
                del self.policy.strikes[key]
        restored = model is None and account.status in RESETTABLE
        if restored:
            await self.back_in_rotation(account, "reset by hand")
        log.info(
            "account %s reset by hand (%s): %d cooldowns cleared%s",
            account.email,
            model or "every model",
            cleared,
            f", {account.status.value} → ok" if restored else "",
        )
        return {"cooldowns_cleared": cleared, "status": "ok" if restored else account.status.value}

    async def back_in_rotation(self, account: Account, why: str) -> None:
        """An account out of rotation for a refusal serves again (and that is news)."""
        await asyncio.to_thread(self.accounts.store.set_status, account.id, Status.OK)
        await asyncio.to_thread(self.pool.load)
        self.announce("accounts")
        if self.policy.alerts is not None:
            self.policy.alerts.account_state(account.id, account.email, "ok", why, None)

    def announce(self, what: str) -> None:
        """Accounts, keys or config changed in this process: the others reload now."""
        if self.shared is not None:
            self.shared.pool.announce(what)

    @property
    def lan_exposed(self) -> bool:
        """LAN access as configured, or as actually bound until the next start moves it."""
        bound_wide = self.listener is not None and self.listener.host == "0.0.0.0"
        return self.settings.allow_lan_access or bound_wide

    def effective_auth_mode(self) -> str:
        mode = self.settings.auth_mode
        if mode == "auto":
            return "all_except_health" if self.lan_exposed else "off"
        return mode

    # -- status ----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        host, port = self.listener.address if self.listener else (self.settings.host, 0)
        return {
            "running": self.running,
            "port": port,
            "base_url": f"http://127.0.0.1:{port}",
            "active_accounts": len(self.pool),
            "host": host,
            "allow_lan_access": host == "0.0.0.0",
        }

    # -- listener --------------------------------------------------------
    def listen(self, host: str, port: int) -> None:
        """Bind the first listener (raises BindError)."""
        assert self.app is not None
        sock = bind_socket(host, port, self.reuse_port)
        self.listener = serve_socket(self.app, sock, lambda: self.settings)
        self._write_runtime_file()

    @property
    def reuse_port(self) -> bool:
        """Workers of one serve each bind the port (SO_REUSEPORT); the kernel spreads the
        connections among them."""
        return self.role is not None and self.role.count > 1

    async def _move_listener(self, host: str, port: int) -> None:
        assert self.app is not None
        old = self.listener
        same_port = old is not None and old.port == port
        if old is not None and same_port:
            # Linux refuses 0.0.0.0:P while 127.0.0.1:P listens (and the reverse): stop
            # listening first. Open connections, like the one asking to start, carry on.
            for server in old.server.servers:
                server.close()
        try:
            sock = bind_socket(host, port, self.reuse_port)
        except BindError:
            if old is not None and same_port:
                # Put the old address back so the state is as before the attempt.
                self.listener = serve_socket(
                    self.app, bind_socket(*old.address, self.reuse_port), lambda: self.settings
                )
                self._retire_later(old)
            raise
        self.listener = serve_socket(self.app, sock, lambda: self.settings)
        self._write_runtime_file()
        if old is not None:
            self._retire_later(old)

    def _retire_later(self, listener: Listener) -> None:
        task = asyncio.create_task(self._retire(listener))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    @staticmethod
    async def _retire(listener: Listener) -> None:
        await asyncio.sleep(MOVE_GRACE_SECONDS)
        await close_listener(listener)

    @property
    def first_worker(self) -> bool:
        """This process alone, or worker 0 of several: it keeps the runtime file and runs
        the once-per-host chores (quota refresh, re-probes)."""
        return self.role is None or self.role.index == 0

    def _write_runtime_file(self) -> None:
        assert self.listener is not None
        if not self.first_worker:
            return
        host, port = self.listener.address
        info = {"pid": os.getpid(), "host": host, "port": port}
        atomic_write(self.store.directory / RUNTIME_FILE, orjson.dumps(info), 0o600)

    # -- the proxy service -----------------------------------------------
    async def start(self, persist: bool = True) -> dict[str, Any]:
        async with self._lock:
            try:
                self.store.reload_if_changed()
            except ConfigError as exc:
                raise StartError(exc.message, 500) from exc
            settings = self.settings
            await run_in_threadpool(self.pool.load)
            if not len(self.pool) and not self.providers.can_serve():
                raise StartError(NO_ACCOUNTS, 409)
            wanted = (settings.host, settings.port)
            if self.listener is None or self.listener.address != wanted:
                try:
                    await self._move_listener(*wanted)
                except BindError as exc:
                    raise StartError(exc.message, 500) from exc
            self.running = True
            if persist:
                await self._remember_auto_start(True)
                if self.shared is not None:
                    self.shared.workers.switched(True)
            log.info("proxy service started (%d active accounts)", len(self.pool))
            return self.status()

    async def stop(self, persist: bool = True) -> dict[str, Any]:
        async with self._lock:
            self.running = False
            if persist:
                await self._remember_auto_start(False)
                if self.shared is not None:
                    self.shared.workers.switched(False)
            log.info("proxy service stopped")
            return self.status()

    async def _remember_auto_start(self, value: bool) -> None:
        """Like the desktop app: the service comes back as the user last left it."""
        if self.store.file_values.get("auto_start", True) == value:
            return
        try:
            await run_in_threadpool(self.store.update, {"auto_start": value})
        except (ConfigError, OSError) as exc:
            log.warning("could not save auto_start: %s", exc)

    async def shutdown(self) -> None:
        self.running = False
        if self.monitor is not None:
            self.monitor.close_watchers()
        for task in list(self._retired):
            task.cancel()
        if self.listener is not None:
            await close_listener(self.listener)
        if self.first_worker:
            with contextlib.suppress(FileNotFoundError):
                (self.store.directory / RUNTIME_FILE).unlink()
        await self.accounts.client.close()
        if self.policy.alerts is not None:
            await self.policy.alerts.close()  # webhooks under way are given a moment
        await self.responses.drain()
        if self.monitor is not None:
            await self.monitor.flush()  # nothing recorded is lost on a clean stop
            self.monitor.close()
        if self.shared is not None:
            await self.shared.close()
        self.engine.dispose()
