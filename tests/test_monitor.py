"""The request monitor: what is recorded, that nothing is lost, and that no secret is."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fake_google import Fault

from agproxy.config import Settings
from agproxy.db import open_database
from agproxy.monitor.record import RequestRecord, mask_email
from agproxy.monitor.writer import MonitorWriter
from conftest import Borrowed, Gateway, borrow, gateway_with, google_env, spawn, store_rows


def logs(gw: Gateway, **params: Any) -> list[dict[str, Any]]:
    return gw.admin("GET", "/api/logs", params=params).json()["logs"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway for the tests that need neither a start-up nor a stop of their own."""
    gw = spawn(tmp_path_factory.mktemp("monitor") / "gw", **google_env(fake_google_server))
    yield gw
    gw.stop()


@pytest.fixture
def shared(gateway: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    """The module's gateway with an empty monitor (the clear writes what is still queued
    first): the records are this test's own."""
    with borrow(gateway, fake_google) as turn:
        assert gateway.admin("POST", "/api/logs/clear").status_code == 200
        yield turn


def test_a_success_is_recorded_with_models_account_tokens_attempts(shared: Borrowed) -> None:
    gw = shared.gw
    [acct] = shared.add_accounts(1)
    response = httpx.post(
        gw.base_url + "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "record me"}]},
    )
    usage = response.json()["usage"]
    [log] = logs(gw)
    assert (log["protocol"], log["method"], log["path"], log["status"]) == (
        "openai",
        "POST",
        "/v1/chat/completions",
        200,
    )
    assert (log["requested_model"], log["routed_model"]) == ("gpt-4o", "gemini-3-flash")
    assert log["account"] == mask_email(acct.email) and acct.email not in str(log)
    assert (log["input_tokens"], log["output_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    [attempt] = log["attempts"]
    assert (attempt["account"], attempt["outcome"]) == (mask_email(acct.email), "ok")
    assert 0 <= attempt["at_ms"] <= log["duration_ms"]
    assert log["duration_ms"] > 0 and log["ttfb_ms"] is not None
    assert log["client_ip"] == "127.0.0.1" and log["provider"] == "google"
    assert log["user_agent"].startswith("python-httpx/")
    assert [r["id"] for r in logs(gw, q="python-httpx")] == [log["id"]]
    detail = gw.admin("GET", f"/api/logs/{log['id']}").json()
    assert detail["id"] == log["id"]
    # Bodies are not captured unless asked for.
    assert detail["request_body"] is None and detail["response_body"] is None


def test_errors_and_rotation_are_recorded(shared: Borrowed, fake_google: Any) -> None:
    gw = shared.gw
    shared.configure(scheduling_mode="round_robin")
    accounts = shared.add_accounts(2)
    fake_google.inject(Fault.invalid_argument("the prompt is malformed"), times=1)
    bad = httpx.post(
        gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "x"}]}]},
    )
    assert bad.status_code == 400
    fake_google.inject(Fault.rate_limited(retry_delay="30s"), email=accounts[0].email)
    fake_google.inject(Fault.rate_limited(retry_delay="30s"), email=accounts[1].email)
    rotated = httpx.post(
        gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "y"}]}]},
    )
    newest, oldest = logs(gw)
    assert oldest["status"] == 400 and "the prompt is malformed" in oldest["error"]
    assert rotated.status_code == 429 and newest["status"] == 429
    assert [a["outcome"] for a in newest["attempts"]] == ["429 rate_limited"] * 2
    assert {a["account"] for a in newest["attempts"]} == {mask_email(a.email) for a in accounts}
    assert [r["id"] for r in logs(gw, errors_only=1)] == [newest["id"], oldest["id"]]
    assert logs(gw, status=400)[0]["id"] == oldest["id"]
    assert [r["id"] for r in logs(gw, status="4xx")] == [newest["id"], oldest["id"]]
    assert logs(gw, status="2xx") == []
    for acct in accounts:
        masked = mask_email(acct.email)
        assert [r["id"] for r in logs(gw, account=masked)] == [
            r["id"] for r in (newest, oldest) if r["account"] == masked
        ]
    assert logs(gw, model="3-fla")[0]["id"] == newest["id"]
    assert logs(gw, q="malformed")[0]["id"] == oldest["id"]


def test_captured_bodies_are_capped_and_carry_no_secret(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, [acct] = gateway_with(
        gateway_factory,
        fake_google,
        AGPROXY_AUTH_MODE="strict",
        AGPROXY_MONITOR_CAPTURE_BODIES="true",
        AGPROXY_MONITOR_BODY_MAX_BYTES="4000",
        AGPROXY_ADMIN_PASSWORD="admin-pass-" + uuid.uuid4().hex,
    )
    planted = "sk-planted-secret-" + uuid.uuid4().hex
    token = acct.refresh_token
    response = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={
            "model": "gemini-3-flash",
            "api_key": "field-secret-value-123",
            "messages": [
                {
                    "role": "user",
                    "content": f"my key is {planted}, token {token}, password {gw.admin_secret}",
                }
            ],
        },
    )
    assert response.status_code == 200
    long_one = httpx.post(
        gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
        headers={"x-goog-api-key": gw.api_key},
        json={"contents": [{"role": "user", "parts": [{"text": "z " * 20000}]}]},
    )
    assert long_one.status_code == 200
    long_log, chat_log = logs(gw)
    detail = gw.admin("GET", f"/api/logs/{chat_log['id']}").json()
    assert "my key is [redacted]" in detail["request_body"]
    assert '"api_key":"[redacted]"' in detail["request_body"].replace(" ", "")
    assert "echo: my key is [redacted]" in detail["response_body"]  # the fake echoes it back
    cut = gw.admin("GET", f"/api/logs/{long_log['id']}").json()["request_body"]
    assert cut.endswith("…[truncated]") and len(cut) <= 4000 + 20
    # Neither the planted key, the gateway's secrets nor the account's tokens are anywhere
    # in the monitor's table or in the gateway's output.
    rows = store_rows(gw.data_dir, "SELECT * FROM request_logs")
    assert gw.stop() == 0
    stored = str(rows) + "".join(gw.output)
    for secret in (
        planted,
        gw.api_key,
        gw.admin_secret,
        token,
        "field-secret-value-123",
        *acct.access_tokens,
    ):
        assert secret not in stored


def test_concurrent_requests_lose_nothing_and_stats_add_up(shared: Borrowed) -> None:
    gw = shared.gw
    shared.add_accounts(2)

    async def flood() -> list[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=60, limits=limits) as c:

            async def one(i: int) -> int:
                r = await c.post(
                    "/v1beta/models/gemini-3-flash:generateContent",
                    json={"contents": [{"role": "user", "parts": [{"text": f"request {i}"}]}]},
                )
                return r.status_code

            return await asyncio.gather(*(one(i) for i in range(500)))

    statuses = asyncio.run(flood())
    assert statuses.count(200) == 500
    summary = gw.admin("GET", "/api/stats/summary").json()
    assert summary["requests"] == 500 and summary["errors"] == 0 and summary["dropped"] == 0
    records = logs(gw, limit=1000)
    assert len(records) == 500
    assert summary["input_tokens"] == sum(r["input_tokens"] for r in records)
    assert summary["output_tokens"] == sum(r["output_tokens"] for r in records)
    assert summary["by_model"][0]["model"] == "gemini-3-flash"
    assert summary["by_model"][0]["requests"] == 500


def test_records_survive_a_clean_stop(gateway_factory: Any, fake_google: Any) -> None:
    gw, _ = gateway_with(gateway_factory, fake_google)
    for i in range(5):
        httpx.post(
            gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": f"n{i}"}]}]},
        )
    assert gw.stop() == 0  # straight after the requests: the queue is drained on the way out
    assert store_rows(gw.data_dir, "SELECT count(*) FROM request_logs") == [(5,)]


def test_cli_logs_and_clear(shared: Borrowed) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    httpx.post(
        gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "cli"}]}]},
    )
    out = gw.cli("logs").stdout
    assert " 200 " in out and "/v1beta/models/gemini-3-flash:generateContent" in out
    assert gw.admin("POST", "/api/logs/clear").json() == {"deleted": 1}
    assert logs(gw) == []


def test_cli_logs_follow_prints_new_requests(shared: Borrowed) -> None:
    gw = shared.gw
    shared.add_accounts(1)

    def ask(text: str) -> None:
        httpx.post(
            gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": text}]}]},
        )

    ask("the backlog")
    follow = subprocess.Popen(
        [sys.executable, "-m", "agproxy", "logs", "--follow", "--json"],
        env=gw.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        # The backlog is printed once the live stream is open: from here on it follows.
        backlog = orjson.loads(follow.stdout.readline())
        for text in ("first", "second"):
            ask(text)
        seen = [orjson.loads(follow.stdout.readline()) for _ in range(2)]
    finally:
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0  # Ctrl+C ends it quietly
    assert [r["id"] for r in [backlog, *seen]] == [r["id"] for r in reversed(logs(gw))]
    assert all(r["status"] == 200 for r in seen)


def test_monitor_off_records_nothing(gateway_factory: Any, fake_google: Any) -> None:
    gw, _ = gateway_with(gateway_factory, fake_google, AGPROXY_MONITOR_ENABLED="false")
    httpx.post(
        gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "quiet"}]}]},
    )
    assert logs(gw) == []


@pytest.mark.parametrize(("max_rows", "days", "kept"), [(3, 30, 3), (100, 1, 4)])
def test_retention_by_count_and_age(store: Any, max_rows: int, days: float, kept: int) -> None:
    engine = store
    settings = Settings(
        api_key="sk-test-000000", monitor_max_rows=max_rows, monitor_retention_days=days
    )
    writer = MonitorWriter(engine, lambda: settings)
    now = time.time()
    for age_days in (0, 0.1, 0.2, 0.3, 2, 3):
        record = RequestRecord("openai", "POST", "/v1/x", None, status=200)
        record.started_at = now - age_days * 86400
        writer.submit(record)
    asyncio.run(writer.flush())
    writer._retain()
    with engine.connect() as conn:
        ages = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT started_at FROM request_logs ORDER BY started_at DESC"
            )
        ]
    assert len(ages) == kept
    assert ages == sorted(ages, reverse=True) and ages[0] == pytest.approx(now)


@pytest.mark.parametrize(
    ("text", "secrets", "absent", "present"),
    [
        ('{"password": "hunter2-long", "x": 1}', (), "hunter2-long", '"password": "[redacted]"'),
        ("Authorization: Bearer abc.def-ghi_jkl", (), "abc.def-ghi_jkl", "[redacted]"),
        ("tokens ya29.a0AfH6SM-x and 1//0gAbCdEfGhIjKlMn", (), "ya29.a0", "tokens [redacted] and"),
        (
            "the admin password is correct-horse",
            ("correct-horse",),
            "correct-horse",
            "is [redacted]",
        ),
        ("zai 0123456789abcdef0123456789abcdef.AbCdEfGhIjKlMnOp", (), "AbCdEfGhIjKlMnOp", "zai "),
    ],
)
def test_redaction(text: str, secrets: tuple[str, ...], absent: str, present: str) -> None:
    from agproxy.monitor.redact import redact

    out = redact(text, secrets)
    assert absent not in out and present in out


def test_a_capture_cut_inside_a_secret_keeps_no_part_of_it() -> None:
    from agproxy.monitor.redact import capture_text

    raw = b'{"content": "key sk-abcdefghijklmnopqrstuvwx'  # cut after 24 of the key's chars
    for cut_at in range(len(raw) - 24, len(raw) + 1):
        out = capture_text(raw[:cut_at], 1000, truncated=True)
        assert "abc" not in out and out.endswith("…[truncated]")
    image = b'{"data": "' + b"QUJD" * 10_000 + b'", "text": "after"}'
    out = capture_text(image, 1000, truncated=False)
    assert "[base64, 40000 chars]" in out and '"text": "after"' in out


def test_live_stream_shows_requests_as_they_finish(gateway_factory: Any, fake_google: Any) -> None:
    gw, _ = gateway_with(gateway_factory, fake_google)
    headers = {"Authorization": f"Bearer {gw.admin_secret}"}
    with httpx.stream(
        "GET", gw.base_url + "/api/logs/stream", headers=headers, timeout=10
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": watching"
        started = time.monotonic()
        httpx.post(
            gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "live"}]}]},
        )
        data = next(line for line in lines if line.startswith("data: "))
        assert time.monotonic() - started < 2
    row = orjson.loads(data[6:])
    assert row["status"] == 200 and row["routed_model"] == "gemini-3-flash"
    assert [r["id"] for r in logs(gw)] == [row["id"]]
    # An open live view does not hold up a clean stop.
    with httpx.stream("GET", gw.base_url + "/api/logs/stream", headers=headers, timeout=10):
        began = time.monotonic()
        assert gw.stop() == 0
        assert time.monotonic() - began < 5


def test_a_client_that_hangs_up_is_recorded_as_499(shared: Borrowed, fake_google: Any) -> None:
    gw = shared.gw
    [acct] = shared.add_accounts(1)
    fake_google.inject(Fault.stall(20), email=acct.email)
    stream = "/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse"
    with httpx.stream(
        "POST",
        gw.base_url + stream,
        timeout=30,
        json={"contents": [{"role": "user", "parts": [{"text": "hang up"}]}]},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # the first event arrived; hang up while the upstream stalls
    deadline = time.monotonic() + 5
    while not (records := logs(gw)):
        assert time.monotonic() < deadline, "no record for the abandoned stream"
        time.sleep(0.1)
    [record] = records
    assert record["status"] == 499
    assert record["error"] == "client closed the connection after a 200 began"
    assert record["ttfb_ms"] is not None and record["routed_model"] == "gemini-3-flash"
    assert [a["outcome"] for a in record["attempts"]] == ["ok"]


def test_records_wait_for_a_writer_in_another_process_and_are_kept(tmp_path: Any) -> None:
    engine = open_database(tmp_path / "m.db")
    settings = Settings(api_key="sk-test-000000")
    writer = MonitorWriter(engine, lambda: settings)
    other = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. `agproxy accounts import` mid-transaction

    async def scenario() -> float:
        for i in range(250):
            writer.submit(RequestRecord("gemini", "POST", f"/x/{i}", None, status=200))
        flushing = asyncio.create_task(writer.flush())
        began = time.monotonic()
        await asyncio.sleep(0.3)  # the loop is not blocked while the lock is held
        lag = time.monotonic() - began - 0.3
        assert not flushing.done()
        other.execute("COMMIT")
        await flushing
        return lag

    assert asyncio.run(scenario()) < 0.1
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM request_logs").scalar() == 250
    assert writer.written == 250 and not writer.queue
    # The writer never checkpoints on the loop; its periodic checkpoint empties the WAL.
    busy, frames, done = writer._checkpoint()
    assert busy == 0 and frames == done > 0
    writer.close()


def test_refused_requests_are_recorded_without_the_key(shared: Borrowed) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    shared.configure(auth_mode="strict")
    wrong = "sk-wrong-" + uuid.uuid4().hex
    httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {wrong}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": "x"}]},
    )
    gw.admin("POST", "/api/proxy/stop")
    httpx.post(
        gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
        headers={"x-goog-api-key": gw.api_key},
        json={"contents": []},
    )
    stopped, refused = logs(gw)
    assert stopped["requested_model"] == "gemini-3-flash"  # from the path
    assert refused["status"] == 401 and refused["error"].startswith(
        "invalid_request_error: invalid API key"
    )
    assert stopped["status"] == 503 and "not running" in stopped["error"]
    rows = store_rows(gw.data_dir, "SELECT * FROM request_logs")
    assert wrong not in str(rows) and gw.api_key not in str(rows)
