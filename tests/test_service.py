"""The proxy service switch inside a running `agproxy serve`: start, stop, status, binding."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ZAI_ENV, Gateway, add_account, agproxy_env, free_port, spawn

NO_ACCOUNTS = "no available accounts, please add an account first"


def bind_error(host: str, port: int) -> str:
    return (
        f"failed to start server: failed to bind address {host}:{port}: "
        "Address already in use (os error 98)"
    )


def occupy(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, port))
    sock.listen()
    return sock


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def zai_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway serving through z.ai for the tests that only switch the service off and
    on (each leaves it running) or look at its files."""
    gw = spawn(tmp_path_factory.mktemp("service") / "gw", **ZAI_ENV)
    yield gw
    gw.stop()


@pytest.fixture
def running_zai_gateway(zai_gateway: Gateway) -> Iterator[Gateway]:
    yield zai_gateway
    started = zai_gateway.admin("POST", "/api/proxy/start")  # running again for the next test
    assert started.status_code == 200 and started.json()["running"] is True


def test_empty_pool_cannot_start(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory()
    status = gw.admin("GET", "/api/proxy/status").json()
    assert status == {
        "running": False,
        "port": gw.port,
        "base_url": f"http://127.0.0.1:{gw.port}",
        "active_accounts": 0,
        "host": "127.0.0.1",
        "allow_lan_access": False,
    }

    response = gw.admin("POST", "/api/proxy/start")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == NO_ACCOUNTS
    assert gw.admin("GET", "/api/proxy/status").json()["running"] is False

    cli = gw.cli("start")
    assert cli.returncode != 0
    assert NO_ACCOUNTS in cli.stderr


def test_serve_prints_why_the_service_did_not_start(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agproxy", "serve"],
        text=True,
        env=agproxy_env(tmp_path, AGPROXY_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: _answers(port))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"listening on 127.0.0.1:{port}" in out
    assert f"proxy service: stopped: {NO_ACCOUNTS}" in out


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        return True
    except httpx.TransportError:
        return False


def test_account_in_pool_starts_and_counts(gateway_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    add_account(tmp_path / "gw", "alice@example.com")
    add_account(tmp_path / "gw", "bob@example.com")
    add_account(tmp_path / "gw", "off@example.com", enabled=False)
    add_account(tmp_path / "gw", "gone@example.com", status="needs_relogin")
    gw = gateway_factory()
    status = gw.admin("GET", "/api/proxy/status").json()
    assert status["running"] is True
    assert status["active_accounts"] == 2
    assert gw.get("/healthz").json() == {"status": "ok"}


def test_zai_alone_can_start(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(**ZAI_ENV)
    assert gw.admin("GET", "/api/proxy/status").json()["running"] is True
    # z.ai enabled but dispatch off cannot serve: the contract's error again.
    other = gateway_factory("other", AGPROXY_ZAI_API_KEY="zai-key-123456789")
    assert other.admin("POST", "/api/proxy/start").json()["error"]["message"] == NO_ACCOUNTS


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/healthz", "openai"),
        ("/v1/models", "openai"),
        ("/v1beta/models", "google"),
        ("/v1/messages", "anthropic"),
    ],
)
def test_stopped_service_answers_503_in_the_paths_protocol(
    running_zai_gateway: Gateway, path: str, protocol: str
) -> None:
    gw = running_zai_gateway
    assert gw.admin("POST", "/api/proxy/stop").json()["running"] is False
    method = "POST" if path == "/v1/messages" else "GET"
    response = httpx.request(method, gw.base_url + path, json={}, timeout=10)
    assert response.status_code == 503
    body = response.json()
    message = {
        "openai": lambda b: b["error"]["message"],
        "google": lambda b: b["error"]["message"],
        "anthropic": lambda b: b["error"]["message"],
    }[protocol](body)
    assert "proxy service is not running" in message
    if protocol == "google":
        assert body["error"]["status"] == "UNAVAILABLE" and body["error"]["code"] == 503
    if protocol == "anthropic":
        assert body["type"] == "error"
    # The console and admin API stay up while stopped.
    assert gw.admin("GET", "/api/proxy/status").status_code == 200
    assert gw.get("/").status_code == 200
    # Start again: served again.
    assert gw.admin("POST", "/api/proxy/start").json()["running"] is True
    assert gw.get("/healthz").status_code == 200


def test_serve_bind_failure_exits_1_with_the_exact_message(tmp_path: Path) -> None:
    port = free_port()
    blocker = occupy("127.0.0.1", port)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "agproxy", "serve"],
            text=True,
            env=agproxy_env(tmp_path, AGPROXY_PORT=str(port)),
            capture_output=True,
            timeout=30,
        )
    finally:
        blocker.close()
    assert result.returncode == 1
    assert bind_error("127.0.0.1", port) in result.stdout.splitlines()
    assert "Traceback" not in result.stdout + result.stderr


def test_start_request_bind_failure_keeps_previous_state(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(**ZAI_ENV)
    gw.admin("POST", "/api/proxy/stop")
    taken = free_port()
    blocker = occupy("127.0.0.1", taken)
    try:
        assert gw.admin("PUT", "/api/config", json={"port": taken}).status_code == 200
        response = gw.admin("POST", "/api/proxy/start")
        assert response.status_code == 500
        assert response.json()["error"]["message"] == bind_error("127.0.0.1", taken)
        status = gw.admin("GET", "/api/proxy/status").json()
        assert (status["running"], status["port"]) == (False, gw.port)
        assert gw.get("/healthz").status_code == 503
    finally:
        blocker.close()


def test_port_change_applies_at_next_start_without_restart(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(**ZAI_ENV)
    new_port = free_port()
    assert gw.admin("PUT", "/api/config", json={"port": new_port}).json()[
        "apply_at_next_start"
    ] == ["port"]
    assert gw.admin("GET", "/api/proxy/status").json()["port"] == gw.port  # not yet
    gw.admin("POST", "/api/proxy/stop")
    status = gw.admin("POST", "/api/proxy/start").json()
    assert (status["running"], status["port"]) == (True, new_port)
    assert httpx.get(f"http://127.0.0.1:{new_port}/healthz").json() == {"status": "ok"}
    # The old listener closes once the start answer is out.
    wait_for(lambda: not _answers(gw.port))
    runtime = json.loads((gw.data_dir / "server.json").read_text())
    assert runtime["port"] == new_port
    assert gw.proc.poll() is None  # same process
    gw.port = new_port
    assert gw.cli("status", "--json").returncode == 0  # the CLI follows the move


def _bound_address(port: int) -> str:
    """The local address of the LISTEN socket on `port`, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        addr, state = fields[1], fields[3]
        ip_hex, port_hex = addr.split(":")
        if int(port_hex, 16) == port and state == "0A":
            octets = [str(int(ip_hex[i : i + 2], 16)) for i in (6, 4, 2, 0)]
            return ".".join(octets)
    raise AssertionError(f"nothing listens on {port}")


@pytest.mark.parametrize(("lan", "host"), [("false", "127.0.0.1"), ("true", "0.0.0.0")])
def test_lan_access_decides_the_bound_address(gateway_factory, lan: str, host: str) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(AGPROXY_ALLOW_LAN_ACCESS=lan, **ZAI_ENV)
    assert _bound_address(gw.port) == host
    # 127.0.0.2 is a loopback address that only a 0.0.0.0 listener accepts.
    try:
        reached = httpx.get(f"http://127.0.0.2:{gw.port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        reached = False
    assert reached is (lan == "true")


def test_lan_change_applies_at_next_start(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(**ZAI_ENV)
    assert _bound_address(gw.port) == "127.0.0.1"
    gw.admin("PUT", "/api/config", json={"allow_lan_access": True})
    gw.admin("POST", "/api/proxy/stop")
    assert gw.admin("POST", "/api/proxy/start").json()["host"] == "0.0.0.0"
    wait_for(lambda: _bound_address(gw.port) == "0.0.0.0")


def test_sigterm_finishes_cleanly(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(**ZAI_ENV)
    before = (gw.data_dir / "config.json").read_bytes()
    assert (gw.data_dir / "server.json").exists()
    assert gw.stop(signal.SIGTERM) == 0
    out = "".join(gw.output)
    assert "shutting down" in out and out.rstrip().endswith("stopped")
    assert not (gw.data_dir / "server.json").exists()
    assert (gw.data_dir / "config.json").read_bytes() == before


def test_stop_and_start_are_remembered_as_auto_start(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(**ZAI_ENV)
    gw.admin("POST", "/api/proxy/stop")
    assert gw.config_file()["auto_start"] is False
    gw.stop()
    again = gateway_factory("gw", port=gw.port, **ZAI_ENV)
    assert again.admin("GET", "/api/proxy/status").json()["running"] is False
    again.admin("POST", "/api/proxy/start")
    assert again.config_file()["auto_start"] is True


def test_secrets_files_are_private(zai_gateway: Gateway) -> None:
    gw = zai_gateway
    on_sqlite = "store_url" not in gw.config_file()  # AGPROXY_TEST_STORE=postgres: no file
    for name in ("config.json", "agproxy.db") if on_sqlite else ("config.json",):
        assert (gw.data_dir / name).stat().st_mode & 0o077 == 0, name


def test_sigterm_lets_an_in_flight_request_finish(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """A request whose body is still arriving when SIGTERM comes is served, then the
    process exits: nothing in flight is lost."""
    gw = gateway_factory(**ZAI_ENV)
    body = b'{"auth_mode": "strict"}'
    head = (
        f"PUT /api/config HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {gw.admin_secret}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gw.port)) as conn:
        conn.sendall(head + body[:5])
        time.sleep(0.3)  # the request is now being read by the gateway
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert gw.proc.poll() is None  # still finishing our request
        conn.sendall(body[5:])
        conn.settimeout(10)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert gw.proc.wait(timeout=30) == 0
    assert json.loads((gw.data_dir / "config.json").read_text())["auth_mode"] == "strict"
