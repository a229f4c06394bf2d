"""Shared fixtures: run `agproxy serve` as a real subprocess on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

READY_TIMEOUT = 20.0


def _share_one_tls_context() -> None:
    """httpx builds a TLS context for every client it makes (~20 ms: it parses certifi's
    bundle), so for every one-off httpx.get/post and SDK client too. The tests make
    thousands of those, all to http:// addresses, and the time added up to about a tenth
    of the suite. The default context is built once here and shared (an SSLContext is
    meant to be shared by connections); any other `verify` is built as before."""
    from httpx._transports import default

    build = default.create_ssl_context
    shared = build()

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None and trust_env:
            return shared
        return build(verify=verify, cert=cert, trust_env=trust_env)

    default.create_ssl_context = create_ssl_context


_share_one_tls_context()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agproxy_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGPROXY_")}
    env["AGPROXY_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def run_cli(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agproxy", *args],
        env=env or agproxy_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def put_on_test_postgres(data_dir: Path) -> None:
    """With AGPROXY_TEST_STORE=postgres, a data directory gets a database of its own the
    first time a test uses it (kept in its config file, so a restart finds it)."""
    if _gateway_postgres is None:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    if "store_url" not in config:
        path.write_text(json.dumps({**config, "store_url": _gateway_postgres.database()}))


def data_dir_store(data_dir: Path) -> Any:
    """The store of a data directory (its config file's store_url, else its SQLite file),
    opened as a CLI command opens it."""
    from agproxy.config import ConfigStore
    from agproxy.db import open_store

    put_on_test_postgres(data_dir)
    store = ConfigStore(data_dir, environ={})
    store.load(create=False)
    return open_store(store.settings, data_dir)


def store_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows `sql` selects from a data directory's store."""
    import sqlalchemy as sa

    engine = data_dir_store(data_dir)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def add_account(
    data_dir: Path,
    email: str,
    enabled: bool = True,
    status: str = "ok",
    models: tuple[str, ...] = (),
) -> str:
    """Store an account through the real data layer (accounts are added by the accounts CLI
    in a later release; the pool only needs the row)."""
    import sqlalchemy as sa

    from agproxy.db.tables import account_quotas, accounts

    data_dir.mkdir(parents=True, exist_ok=True)
    engine = data_dir_store(data_dir)
    account_id = str(uuid.uuid4())
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(accounts).values(
                id=account_id,
                email=email,
                refresh_token="1//test-refresh-" + account_id,
                enabled=enabled,
                status=status,
                sort_order=0,
                created_at=now,
            )
        )
        for model in models:
            conn.execute(
                sa.insert(account_quotas).values(
                    account_id=account_id, model=model, remaining_fraction=1.0, fetched_at=now
                )
            )
    engine.dispose()
    return account_id


@dataclass
class Gateway:
    """A running `agproxy serve` process."""

    data_dir: Path
    port: int
    proc: subprocess.Popen[str]
    env: dict[str, str]
    output: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_file(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "config.json").read_text())

    @property
    def api_key(self) -> str:
        return self.env.get("AGPROXY_API_KEY") or self.config_file()["api_key"]

    @property
    def admin_secret(self) -> str:
        return (
            self.env.get("AGPROXY_ADMIN_PASSWORD")
            or self.config_file().get("admin_password")
            or self.api_key
        )

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_secret}", **kw.pop("headers", {})}
        return httpx.request(method, self.base_url + path, headers=headers, timeout=30, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=30, **kw)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.data_dir, *args, env=self.env)

    def read_output(self) -> None:
        """Collect the process's output into `output` as it comes: the pipe never fills up
        (a gateway shared by a module logs a lot), and a test can read the log of a
        gateway that keeps running."""
        stream = self.proc.stdout
        assert stream is not None

        def drain() -> None:
            for line in stream:
                self.output.append(line)

        self._reader = threading.Thread(target=drain, daemon=True)
        self._reader.start()

    def log(self) -> str:
        return "".join(self.output)

    def wait_for_log(self, text: str, timeout: float = 5) -> str:
        """The log once `text` appears in it (a line reaches the reader a moment after
        the answer that caused it reaches the client)."""
        deadline = time.monotonic() + timeout
        while text not in self.log() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.log()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        return self.proc.returncode


def launch(
    data_dir: Path,
    port: int | None = None,
    config: dict[str, Any] | None = None,
    serve_args: tuple[str, ...] = (),
    **env_overrides: str,
) -> Gateway:
    """Start `agproxy serve [serve_args]` without waiting for it (see `ready`)."""
    if "AGPROXY_STORE_URL" not in env_overrides and "store_url" not in (config or {}):
        put_on_test_postgres(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = data_dir / "config.json"
    config = {**(json.loads(existing.read_text()) if existing.exists() else {}), **(config or {})}
    if "AGPROXY_PORT" in env_overrides:
        port = int(env_overrides["AGPROXY_PORT"])
    else:
        if port or "port" not in config:
            config["port"] = port or free_port()
        port = config["port"]
    if config:
        (data_dir / "config.json").write_text(json.dumps(config))
    env = agproxy_env(data_dir, **env_overrides)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agproxy", "serve", *serve_args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    gw = Gateway(data_dir, port, proc, env)
    gw.read_output()
    return gw


def ready(gw: Gateway) -> Gateway:
    """Wait until a launched gateway has started: it prints `proxy service: …` once it
    listens and has tried the service's auto-start (its listener answers a moment before
    that, while the service may still be starting), and its listener answers HTTP."""
    deadline = time.monotonic() + READY_TIMEOUT
    while "proxy service:" not in gw.log():
        if gw.proc.poll() is not None:
            gw.stop()  # the rest of its output
            raise RuntimeError(f"agproxy serve exited {gw.proc.returncode}:\n{gw.log()}")
        if time.monotonic() > deadline:
            gw.stop(signal.SIGKILL)
            raise RuntimeError(f"agproxy serve did not start within {READY_TIMEOUT}s:\n{gw.log()}")
        time.sleep(0.02)
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{gw.base_url}/healthz", timeout=1)
            return gw
        except httpx.TransportError:
            time.sleep(0.05)
    gw.stop(signal.SIGKILL)
    raise RuntimeError(f"agproxy serve did not answer on port {gw.port} within {READY_TIMEOUT}s")


def spawn(
    data_dir: Path,
    port: int | None = None,
    config: dict[str, Any] | None = None,
    **env_overrides: str,
) -> Gateway:
    """Start `agproxy serve`; wait until the listener answers HTTP."""
    return ready(launch(data_dir, port, config, **env_overrides))


@contextlib.contextmanager
def serving_google(
    tmp_path_factory: pytest.TempPathFactory, fake: Any, name: str, **env: str
) -> Iterator[Gateway]:
    """A gateway on the fake Google with one fresh account (`<name>0-…@example.com`),
    serving, for a module's tests to share; stopped afterwards."""
    gateway = spawn(tmp_path_factory.mktemp(name), **google_env(fake), **env)
    try:
        add_accounts(gateway, fake, prefix=name)
        yield gateway
    finally:
        gateway.stop()


def spawn_all(specs: dict[str, tuple[Path, dict[str, str]]]) -> dict[str, Gateway]:
    """Several gateways (name: (data_dir, environment)) started side by side, then waited
    for; if one fails, the others are stopped."""
    launched = {name: launch(data_dir, **env) for name, (data_dir, env) in specs.items()}
    try:
        return {name: ready(gw) for name, gw in launched.items()}
    except BaseException:
        for gw in launched.values():
            gw.stop(signal.SIGKILL)
        raise


def stop_all(gateways: list[Gateway]) -> None:
    """SIGTERM to every gateway first, then wait for each: they shut down side by side."""
    for gw in gateways:
        if gw.proc.poll() is None:
            gw.proc.send_signal(signal.SIGTERM)
    for gw in gateways:
        gw.stop()


ZAI_ENV = {
    "AGPROXY_ZAI_API_KEY": "zai-test-key-0123456789",
    "AGPROXY_ZAI_DISPATCH_MODE": "exclusive",
}


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Any]:
    """Start gateways on demand; every one is stopped at the end of the test."""
    started: list[Gateway] = []

    def make(name: str = "gw", **kw: Any) -> Gateway:
        gw = spawn(tmp_path / name, **kw)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop(signal.SIGKILL if gw.proc.poll() is None else signal.SIGTERM, timeout=10)


def google_env(fake: Any) -> dict[str, str]:
    """Environment that points agproxy at the fake Google upstream."""
    return {
        "AGPROXY_UPSTREAM_BASE_URLS": fake.v1internal,
        "AGPROXY_OAUTH_TOKEN_URL": fake.token_url,
        "AGPROXY_OAUTH_USERINFO_URL": fake.userinfo_url,
        "AGPROXY_OAUTH_AUTHORIZE_URL": fake.authorize_url,
    }


def google_config(fake: Any) -> dict[str, Any]:
    """google_env() as config file settings: a test may change them through the admin API."""
    return {
        "upstream_base_urls": [fake.v1internal],
        "oauth_token_url": fake.token_url,
        "oauth_userinfo_url": fake.userinfo_url,
        "oauth_authorize_url": fake.authorize_url,
    }


def add_to(gw: Gateway, *accounts: Any, start: bool = True) -> dict[str, Any]:
    """Add the fake Google's `accounts` to `gw` through the admin API (as the console
    does; `agproxy accounts add` has its own tests, and a process per account would cost
    half a second each), then start the proxy service (start=False: leave it as it is).
    Returns the service status the start answered ({} when not started)."""
    for acct in accounts:
        added = gw.admin("POST", "/api/accounts", json={"refresh_token": acct.refresh_token})
        assert added.status_code == 201, added.text
    if not start:
        return {}
    started = gw.admin("POST", "/api/proxy/start")
    assert started.status_code == 200, started.text
    return dict(started.json())


def add_accounts(
    gw: Gateway, fake: Any, n: int = 1, prefix: str = "acct", start: bool = True, **account: Any
) -> list[Any]:
    """`n` new accounts on the fake Google (<prefix><i>-<random>@example.com; keyword
    arguments go to fake.add_account), added to `gw` and, unless start=False, serving."""
    tag = uuid.uuid4().hex[:6]
    accounts = [
        fake.add_account(email=f"{prefix}{i}-{tag}@example.com", **account) for i in range(n)
    ]
    status = add_to(gw, *accounts, start=start)
    assert not start or status["active_accounts"] == n, status
    return accounts


class Borrowed:
    """One test's turn on a gateway its module shares: the accounts added while it runs (by
    whatever means) are removed after it, the settings it changes here are set back, and a
    proxy service it started from stopped is stopped again (see `borrow`), so no cooldown,
    sticky binding, forbidden mark or setting of one test reaches the next."""

    def __init__(self, gw: Gateway, fake: Any = None) -> None:
        self.gw = gw
        self.fake = fake
        self.accounts_before = self.account_ids()
        self.was_running = self.running()
        self.auto_start_before = gw.config_file().get("auto_start")
        self.original: dict[str, Any] = {}  # the config file's values (None: the default)

    def running(self) -> bool:
        status = self.gw.admin("GET", "/api/proxy/status")
        assert status.status_code == 200, status.text
        return bool(status.json()["running"])

    def account_ids(self) -> set[str]:
        listed = self.gw.admin("GET", "/api/accounts")
        assert listed.status_code == 200, listed.text
        return {a["id"] for a in listed.json()["accounts"]}

    def reset_afterwards(self, *keys: str) -> None:
        """Return these settings to what the config file had before (the test changes them
        another way, such as the CLI; `configure` calls this itself)."""
        before = self.gw.config_file()
        for key in keys:
            self.original.setdefault(key, before.get(key))

    def configure(self, **changes: Any) -> dict[str, Any]:
        """PUT /api/config (asserting 200); the keys are set back afterwards."""
        self.reset_afterwards(*changes)
        put = self.gw.admin("PUT", "/api/config", json=changes)
        assert put.status_code == 200, put.text
        return dict(put.json())

    def add(self, *accounts: Any, start: bool = True) -> dict[str, Any]:
        """add_to() for this test only: the accounts are removed again afterwards."""
        for acct in accounts:
            added = self.gw.admin(
                "POST", "/api/accounts", json={"refresh_token": acct.refresh_token}
            )
            assert added.status_code == 201, added.text
        if not start:
            return {}
        started = self.gw.admin("POST", "/api/proxy/start")
        assert started.status_code == 200, started.text
        return dict(started.json())

    def add_accounts(
        self, n: int = 1, prefix: str = "acct", start: bool = True, **account: Any
    ) -> list[Any]:
        """add_accounts() for this test only; the gateway serves with just these."""
        tag = uuid.uuid4().hex[:6]
        accounts = [
            self.fake.add_account(email=f"{prefix}{i}-{tag}@example.com", **account)
            for i in range(n)
        ]
        status = self.add(*accounts, start=start)
        assert not start or status["active_accounts"] == n, status
        return accounts

    def undo(self) -> None:
        for account_id in self.account_ids() - self.accounts_before:
            removed = self.gw.admin("DELETE", f"/api/accounts/{account_id}")
            assert removed.status_code == 200, removed.text
        if not self.was_running and self.running():
            self.original.setdefault("auto_start", self.auto_start_before)  # a stop is saved
            stopped = self.gw.admin("POST", "/api/proxy/stop")
            assert stopped.status_code == 200, stopped.text
        if self.original:
            reset = self.gw.admin("PUT", "/api/config", json=self.original)
            assert reset.status_code == 200, reset.text


@contextlib.contextmanager
def borrow(gw: Gateway, fake: Any = None) -> Iterator[Borrowed]:
    """A test's turn on a shared gateway; what it added and changed is undone at the end."""
    turn = Borrowed(gw, fake)
    try:
        yield turn
    finally:
        turn.undo()


def gateway_with(
    gateway_factory: Any, fake: Any, n: int = 1, name: str = "gw", **env: str
) -> tuple[Gateway, list]:
    """A gateway on the fake Google with `n` fresh accounts added and the service started."""
    gw = gateway_factory(name, **google_env(fake), **env)
    return gw, add_accounts(gw, fake, n)


@pytest.fixture(scope="session")
def fake_google_server() -> Iterator[Any]:
    from fake_google import FakeGoogle

    fake = FakeGoogle().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_google(fake_google_server: Any) -> Any:
    """The fake Google upstream, with faults, scripts and recorded requests cleared."""
    fake_google_server.reset()
    return fake_google_server


class ImageServer:
    """A local web server with a PNG, a redirect to it, and a page that is no image."""

    def __init__(self, png: bytes) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/fox.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(png)))
                    self.end_headers()
                    self.wfile.write(png)
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/fox.png")
                    self.end_headers()
                else:
                    body = b"<html>not an image</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits for the loop to look (every 0.5 s by default).
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


# -- the console in headless Chromium (Debian's package, driven by Playwright) -----------------
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    from test_console import CHROMIUM

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the session (tests/servers.py); `.database()` makes
    a new empty database on it and returns its URL."""
    from servers import postgres_server

    with postgres_server() as server:
        yield server


# AGPROXY_TEST_STORE=postgres: every gateway the tests start (and add_account, and
# data_dir_store) uses a database of its own on the session's PostgreSQL server, so any
# test module can be run against PostgreSQL.
_gateway_postgres: Any = None


@pytest.fixture(scope="session", autouse=True)
def _gateways_on_postgres(request: pytest.FixtureRequest) -> Iterator[None]:
    global _gateway_postgres
    if os.environ.get("AGPROXY_TEST_STORE", "sqlite") == "postgres":
        _gateway_postgres = request.getfixturevalue("postgres")
    yield
    _gateway_postgres = None


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty store on each backend: a SQLite file, then a database on the session's
    PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres").database())


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """`store_url` opened (migrated) as the gateway opens it; disposed afterwards."""
    from agproxy.db import open_database

    engine = open_database(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def own_redis() -> Iterator[Any]:
    """A redis-server of the test's own (tests/servers.py): `.url`, `.kill()`, `.start()`."""
    from servers import redis_server

    with redis_server() as server:
        yield server
