"""Client keys through the admin API of a running gateway, and usage by key in the
statistics, the CSV export, `agproxy stats --by key` and /metrics."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson

from agproxy.config import Settings
from agproxy.monitor.metrics import Metrics
from agproxy.monitor.record import RequestRecord
from agproxy.monitor.writer import MonitorWriter
from conftest import Gateway, add_accounts, data_dir_store, gateway_with, google_env

SECRET = re.compile(r"sk-[0-9a-f]{48}")


def create(gw: Gateway, **body: Any) -> dict[str, Any]:
    made = gw.admin("POST", "/api/keys", json=body)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"  # it carries the secret
    return dict(made.json())


def listed(gw: Gateway, **params: Any) -> dict[str, dict[str, Any]]:
    answer = gw.admin("GET", "/api/keys", params=params)
    assert answer.status_code == 200, answer.text
    return {k["name"]: k for k in answer.json()["keys"]}


def assert_refused(answer: httpx.Response, status: int, param: str | None) -> None:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]


def chat(gw: Gateway, secret: str, text: str, model: str = "gemini-3-flash") -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("agproxy.db*"))


def test_create_list_edit_rotate_delete(gateway_factory: Any) -> None:
    gw = gateway_factory()
    made = create(gw, name="ci-bot", models=["gemini-*"], rpm=30, expires_at="2099-01-01")
    secret = made["secret"]
    assert SECRET.fullmatch(secret)
    key = made["key"]
    assert key["prefix"] == secret[:8] + "…" and key["state"] == "enabled"
    assert (key["models"], key["rpm"], key["tpm"]) == (["gemini-*"], 30, None)
    assert key["expires_at"] == datetime(2099, 1, 1, tzinfo=UTC).timestamp()
    assert "digest" not in key and "secret" not in key

    keys = listed(gw)
    assert keys["ci-bot"]["usage"]["today"] == {
        "requests": 0,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    assert secret not in gw.admin("GET", "/api/keys").text
    by_id = gw.admin("GET", f"/api/keys/{key['id']}").json()
    by_name = gw.admin("GET", "/api/keys/ci-bot").json()
    assert by_id == by_name and by_id["name"] == "ci-bot" and secret not in str(by_id)

    create(gw, name="other")
    edited = gw.admin(
        "PUT", f"/api/keys/{key['id']}",
        json={"name": "ci", "rpm": None, "tpm": 1000, "quota_share": 12.5, "enabled": False,
              "models": ["gemini-3-flash", "claude-*"], "expires_at": None},
    )  # fmt: skip
    assert edited.status_code == 200, edited.text
    after = edited.json()
    assert (after["name"], after["rpm"], after["tpm"], after["quota_share"]) == (
        "ci",
        None,
        1000,
        12.5,
    )
    assert after["state"] == "disabled" and after["expires_at"] is None
    assert after["models"] == ["gemini-3-flash", "claude-*"]
    assert after["prefix"] == key["prefix"]  # the secret is untouched by an edit
    assert_refused(gw.admin("PUT", f"/api/keys/{key['id']}", json={"name": "other"}), 409, "name")
    assert gw.admin("PUT", "/api/keys/ci", json={"enabled": True}).json()["state"] == "enabled"

    turned = gw.admin("POST", "/api/keys/ci/rotate")
    assert turned.status_code == 200 and turned.headers["cache-control"] == "no-store"
    new_secret = turned.json()["secret"]
    assert SECRET.fullmatch(new_secret) and new_secret != secret
    assert turned.json()["key"]["prefix"] == new_secret[:8] + "…"
    assert turned.json()["key"]["rotated_at"] and turned.json()["key"]["tpm"] == 1000

    assert gw.admin("DELETE", f"/api/keys/{key['id']}").json() == {
        "deleted": key["id"],
        "name": "ci",
    }
    assert_refused(gw.admin("GET", f"/api/keys/{key['id']}"), 404, None)
    assert_refused(gw.admin("DELETE", "/api/keys/ci"), 404, None)
    assert_refused(gw.admin("POST", "/api/keys/ci/rotate"), 404, None)
    assert list(listed(gw)) == ["other"]

    # The secrets are nowhere but in the two answers that carried them: not in the
    # database (its digest is), the lists, /metrics or the gateway's log.
    raw = database_bytes(gw.data_dir)
    for s in (secret, new_secret):
        assert s.encode() not in raw
    metrics = gw.admin("GET", "/metrics").text
    gw.stop()
    log = "".join(gw.output)
    for s in (secret, new_secret):
        assert s not in metrics and s not in log and s[3:] not in log


REFUSED_CREATIONS: list[tuple[dict[str, Any], int, str]] = [
    ({}, 400, "name"),
    ({"name": ""}, 400, "name"),
    ({"name": "x", "rpm": 0}, 400, "rpm"),
    ({"name": "x", "rpm": "12a"}, 400, "rpm"),
    ({"name": "x", "tpm": -1}, 400, "tpm"),
    ({"name": "x", "concurrency": 2.5}, 400, "concurrency"),
    ({"name": "x", "daily_tokens": True}, 400, "daily_tokens"),
    ({"name": "x", "quota_share": 0}, 400, "quota_share"),
    ({"name": "x", "quota_share": 100.01}, 400, "quota_share"),
    ({"name": "x", "expires_at": "2001-01-01"}, 400, "expires_at"),
    ({"name": "x", "expires_at": "someday"}, 400, "expires_at"),
    ({"name": "x", "models": [""]}, 400, "models"),
    ({"name": "x", "models": 3}, 400, "models"),
    ({"name": "x", "enabled": "no"}, 400, "enabled"),
    ({"name": "x", "secret": "sk-" + "0" * 48}, 400, "secret"),  # no secret of one's own
    ({"name": "taken"}, 409, "name"),
]


def test_bad_input_is_refused_and_nothing_is_written(gateway_factory: Any) -> None:
    gw = gateway_factory()
    create(gw, name="taken", rpm=5)
    for body, status, param in REFUSED_CREATIONS:
        answer = gw.admin("POST", "/api/keys", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["param"] == param, (body, answer.text)
    keys = listed(gw)
    assert list(keys) == ["taken"] and keys["taken"]["rpm"] == 5


def test_bad_edits_change_nothing_and_the_api_needs_the_password(gateway_factory: Any) -> None:
    gw = gateway_factory()
    create(gw, name="taken", rpm=5, models=["gemini-*"])
    for body, param in [
        ({"rpm": 0}, "rpm"),
        ({"models": ["gemini-*", ""]}, "models"),
        ({"quota_share": 250}, "quota_share"),
        ({"expires_at": "1999-12-31T23:59"}, "expires_at"),
        ({"name": "  "}, "name"),
        ({"tpm": 10, "colour": "red"}, "colour"),
    ]:
        assert_refused(gw.admin("PUT", "/api/keys/taken", json=body), 400, param)
    assert_refused(gw.admin("PUT", "/api/keys/nobody", json={"rpm": 1}), 404, None)
    not_json = gw.admin(
        "POST", "/api/keys", content=b"{name", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    assert_refused(gw.admin("GET", "/api/keys", params={"tz_offset": "east"}), 400, "tz_offset")
    key = listed(gw)["taken"]
    assert (key["rpm"], key["tpm"], key["models"], key["state"]) == (
        5,
        None,
        ["gemini-*"],
        "enabled",
    )
    for method, path in [
        ("GET", "/api/keys"),
        ("POST", "/api/keys"),
        ("DELETE", "/api/keys/taken"),
    ]:
        assert httpx.request(method, gw.base_url + path, json={"name": "sneaky"}).status_code == 401
    assert list(listed(gw)) == ["taken"]


# -- usage by key ----------------------------------------------------------------------------
def plant(data_dir: Path, records: list[RequestRecord]) -> None:
    """Write monitor records into the gateway's database as its writer would."""
    engine = data_dir_store(data_dir)
    settings = Settings()
    writer = MonitorWriter(engine, lambda: settings)
    for record in records:
        writer.submit(record)
    # In a thread of its own: the browser tests' thread runs Playwright's event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, writer.flush()).result()
    engine.dispose()


def record(
    key: str | None, at: float, tokens: int, protocol: str = "openai", **kw: Any
) -> RequestRecord:
    kw.setdefault("status", 200)
    r = RequestRecord(protocol, "POST", "/v1/chat/completions", "127.0.0.1",
                      routed_model=kw.pop("model", "gemini-3-flash"), input_tokens=tokens,
                      output_tokens=tokens * 2, key_name=key, **kw)  # fmt: skip
    r.started_at = at
    return r


def starts(now: float, tz_offset: int) -> tuple[float, float]:
    """Today's and this week's (Monday's) start at `tz_offset` seconds east of UTC."""
    zone = datetime.fromtimestamp(now, timezone(timedelta(seconds=tz_offset)))
    day = zone.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp(), (day - timedelta(days=day.weekday())).timestamp()


def test_usage_per_key_equals_the_sum_of_its_records(gateway_factory: Any) -> None:
    gw = gateway_factory()
    create(gw, name="alice")
    create(gw, name="bob")
    create(gw, name="idle")
    now = time.time()
    day, week = starts(now, 0)
    planted = [
        record("alice", now - 30, 10),
        record("alice", now - 90, 20, status=429),
        record("alice", day - 60, 40),  # yesterday: this week unless today is Monday
        record("alice", week - 60, 80),  # last week
        record("bob", now - 10, 5, protocol="anthropic", model="claude-sonnet-4-6"),
        record("bob", day - 3 * 3600, 7),
        record(None, now - 5, 1000),  # the owner's key
        record("alice", now - 20, 9999, protocol="event"),  # not a request
    ]
    plant(gw.data_dir, planted)

    def expected(name: str, since: float) -> dict[str, int]:
        mine = [
            r
            for r in planted
            if r.key_name == name and r.protocol != "event" and r.started_at >= since
        ]
        return {"requests": len(mine), "input_tokens": sum(r.input_tokens or 0 for r in mine),
                "output_tokens": sum(r.output_tokens or 0 for r in mine)}  # fmt: skip

    keys = listed(gw)
    for name in ("alice", "bob", "idle"):
        assert keys[name]["usage"]["today"] == expected(name, day), name
        assert keys[name]["usage"]["week"] == expected(name, week), name
    assert keys["alice"]["usage"]["today"]["requests"] >= 2  # the two just now
    one = gw.admin("GET", "/api/keys/alice").json()["usage"]
    assert one["today"] == expected("alice", day) and one["day_start"] == day
    # Another time zone moves "today" and "this week".
    east = 13 * 3600
    day_e, week_e = starts(now, east)
    shifted = listed(gw, tz_offset=east)["alice"]["usage"]
    assert shifted["today"] == expected("alice", day_e) and shifted["week"] == expected(
        "alice", week_e
    )

    # The monitor's own records carry the names and add up the same.
    logs = gw.admin("GET", "/api/logs", params={"limit": 1000}).json()["logs"]
    assert sum(1 for r in logs if r["key_name"] == "bob" and r["protocol"] != "event") == 2

    rows = gw.admin("GET", "/api/stats/breakdown", params={"by": "key"}).json()["rows"]
    by_key = {r["key"]: r for r in rows}
    last_day = now - 24 * 3600
    for name in ("alice", "bob"):
        assert by_key[name]["requests"] == expected(name, last_day)["requests"]
        assert by_key[name]["input_tokens"] == expected(name, last_day)["input_tokens"]
    assert by_key["alice"]["errors"] == 1
    assert by_key["-"]["requests"] == 1 and by_key["-"]["input_tokens"] == 1000
    summary = gw.admin("GET", "/api/stats/summary").json()
    assert {r["key"]: r["requests"] for r in summary["by_key"]} == {
        k: r["requests"] for k, r in by_key.items()
    }

    exported = gw.admin("GET", "/api/stats/export.csv", params={"bucket": "day", "hours": 24 * 8})
    lines = list(csv.DictReader(io.StringIO(exported.text, newline="")))
    assert "key" in lines[0]
    for name in ("alice", "bob"):
        assert (
            sum(int(r["requests"]) for r in lines if r["key"] == name)
            == expected(name, now - 8 * 86400)["requests"]
        )
    assert sum(int(r["input_tokens"]) for r in lines if r["key"] == "-") == 1000

    out = gw.cli("stats", "--by", "key").stdout
    assert re.search(r"\nkey\s+requests", out), out
    assert re.search(rf"\nalice\s+{expected('alice', last_day)['requests']}\s+1\s", out), out
    bob = expected("bob", last_day)
    assert re.search(rf"\nbob\s+{bob['requests']}\s+0\s+{bob['input_tokens']}\s", out), out


def test_metrics_count_requests_and_tokens_by_key() -> None:
    metrics = Metrics()
    metrics.observe(record("alice", time.time(), 10))
    metrics.observe(record("alice", time.time(), 5))
    metrics.observe(record('we"ird\\name', time.time(), 1))
    metrics.observe(record(None, time.time(), 3))
    text = "\n".join(metrics.lines())
    model = 'model="gemini-3-flash"'
    assert f'agproxy_requests_total{{protocol="openai",status="200",{model},key="alice"}} 2' in text
    assert f'agproxy_requests_total{{protocol="openai",status="200",{model}}} 1' in text
    assert f'agproxy_tokens_total{{{model},kind="input",key="alice"}} 15' in text
    assert f'agproxy_tokens_total{{{model},kind="output",key="alice"}} 30' in text
    assert f'agproxy_tokens_total{{{model},kind="input"}} 3' in text
    assert 'key="we\\"ird\\\\name"' in text


def test_a_secret_sent_with_a_request_stays_out_of_the_monitor(
    gateway_factory: Any, fake_google: Any
) -> None:
    """With bodies captured, a client key's secret in a header or a prompt is redacted."""
    gw = gateway_factory(**google_env(fake_google), AGPROXY_MONITOR_CAPTURE_BODIES="true")
    add_accounts(gw, fake_google)
    secret = create(gw, name="leaky")["secret"]
    answer = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={
            "model": "gemini-3-flash",
            "messages": [{"role": "user", "content": f"my key is {secret}"}],
        },
        timeout=30,
    )
    assert answer.status_code in (200, 401), answer.text
    logs = gw.admin("GET", "/api/logs", params={"limit": 10}).json()["logs"]
    assert logs
    details = [gw.admin("GET", f"/api/logs/{row['id']}").json() for row in logs]
    assert any("my key is [redacted]" in (d["request_body"] or "") for d in details)
    for detail in map(str, details):
        assert secret not in detail and secret[3:] not in detail
    assert secret not in gw.admin("GET", "/metrics").text
    gw.stop()
    assert secret not in "".join(gw.output)


# -- with real requests (the request path's client keys) ------------------------------------
def test_real_requests_usage_equals_the_records_and_changes_apply_at_once(
    gateway_factory: Any, fake_google: Any
) -> None:
    """Keys made and changed through the admin API apply at once (no wait for the revision
    poll); each key's usage on the Keys list, in the breakdown, in `keys show` and in
    /metrics equals the sum of its monitor records; no secret is in a record (bodies
    captured), an error, /metrics or the log."""
    gw, _ = gateway_with(
        gateway_factory, fake_google, 1, AGPROXY_AUTH_MODE="strict",
        AGPROXY_MONITOR_CAPTURE_BODIES="true",
    )  # fmt: skip
    alice = create(gw, name="alice")["secret"]
    bob = create(gw, name="bob", models=["gemini-*"])["secret"]
    gemini = gw.base_url + "/v1beta/models/gemini-3-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
    for n in range(3):
        assert chat(gw, alice, f"question {n} " * (n + 1)).status_code == 200
    assert httpx.post(gemini, headers={"x-goog-api-key": alice}, json=body).status_code == 200
    assert httpx.post(gemini, headers={"x-api-key": bob}, json=body).status_code == 200
    refused = chat(gw, bob, "hi", model="claude-sonnet-4-6")
    assert refused.status_code == 403 and bob not in refused.text
    assert chat(gw, gw.api_key, "the owner").status_code == 200

    assert gw.admin("PUT", "/api/keys/bob", json={"enabled": False}).status_code == 200
    disabled = chat(gw, bob, "hi")
    assert disabled.status_code == 401 and "disabled" in disabled.text and bob not in disabled.text
    turned = gw.admin("POST", "/api/keys/alice/rotate").json()["secret"]
    assert chat(gw, alice, "hi").status_code == 401  # the old secret, at once
    assert chat(gw, turned, "rotated").status_code == 200

    keys = listed(gw)
    records = [
        r for r in gw.admin("GET", "/api/logs", params={"limit": 1000}).json()["logs"]
        if r["protocol"] != "event"
    ]  # fmt: skip
    by_key = {
        r["key"]: r
        for r in gw.admin("GET", "/api/stats/breakdown", params={"by": "key"}).json()["rows"]
    }
    metrics = gw.admin("GET", "/metrics").text
    for name in ("alice", "bob"):
        mine = [r for r in records if r["key_name"] == name]
        summed = {
            "requests": len(mine),
            "input_tokens": sum(r["input_tokens"] or 0 for r in mine),
            "output_tokens": sum(r["output_tokens"] or 0 for r in mine),
        }
        assert summed["requests"] >= 2 and summed["input_tokens"] > 0, (name, mine)
        assert keys[name]["usage"]["today"] == summed == keys[name]["usage"]["week"]
        row = by_key[name]
        assert {k: row[k] for k in summed} == summed
        counted = sum(
            int(m.group(1))
            for m in re.finditer(rf'agproxy_requests_total\{{[^}}]*key="{name}"\}} (\d+)', metrics)
        )
        assert counted == summed["requests"]
        shown = orjson.loads(gw.cli("keys", "show", name, "--json").stdout)["usage"]
        assert shown["today"] == summed or shown["week"] == summed  # the CLI's local day
    assert by_key["bob"]["errors"] == 1  # the model refused (a disabled key's 401 is no one's)

    secrets = (alice, bob, turned)
    for record in records:
        detail = gw.admin("GET", f"/api/logs/{record['id']}").text
        assert not any(s in detail or s[3:] in detail for s in secrets), record["id"]
    log = gw.log()
    assert not any(s in metrics or s[3:] in log for s in secrets)
