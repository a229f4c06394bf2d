"""Usage statistics, the dashboard, /metrics and the mapping trace, through the admin API
of a running gateway (and the stats functions on a database with planted records)."""

from __future__ import annotations

import asyncio
import calendar
import csv
import io
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fake_google import Fault
from test_monitor import logs

from agproxy.config import Settings
from agproxy.monitor import stats
from agproxy.monitor.record import RequestRecord, mask_email
from agproxy.monitor.writer import MonitorWriter
from conftest import Borrowed, Gateway, add_to, borrow, gateway_with, google_env, spawn

GEMINI = "/v1beta/models/{}:generateContent"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway for the tests that count no records: they only read or change settings."""
    gw = spawn(tmp_path_factory.mktemp("stats") / "gw", **google_env(fake_google_server))
    yield gw
    gw.stop()


@pytest.fixture
def shared(gateway: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    with borrow(gateway, fake_google) as turn:
        yield turn


def ask(gw: Any, model: str, text: str = "hi") -> httpx.Response:
    return httpx.post(
        gw.base_url + GEMINI.format(model),
        timeout=30,
        json={"contents": [{"role": "user", "parts": [{"text": text}]}]},
    )


def test_stats_equal_the_sum_of_the_records(gateway_factory: Any, fake_google: Any) -> None:
    gw, accounts = gateway_with(
        gateway_factory, fake_google, 2, AGPROXY_SCHEDULING_MODE="round_robin"
    )
    for i in range(6):
        assert ask(gw, "gemini-3-flash", "flash " * (i + 1)).status_code == 200
    for _ in range(3):
        assert ask(gw, "gemini-3-pro-high").status_code == 200
    fake_google.inject(Fault.invalid_argument("bad"), times=2)
    assert ask(gw, "gemini-3-flash").status_code == 400
    assert ask(gw, "gemini-3-flash").status_code == 400

    records = logs(gw, limit=1000)
    assert len(records) == 11

    def total(rows: list[dict[str, Any]], key: str) -> int:
        return sum(r[key] or 0 for r in rows)

    summary = gw.admin("GET", "/api/stats/summary").json()
    assert (summary["requests"], summary["errors"]) == (11, 2)
    for key in ("input_tokens", "output_tokens"):
        assert summary[key] == total(records, key) > 0
    assert summary["accounts"] == 2

    by_model = {
        r["model"]: r
        for r in gw.admin("GET", "/api/stats/breakdown", params={"by": "model"}).json()["rows"]
    }
    assert by_model["gemini-3-flash"]["requests"] == 8
    assert by_model["gemini-3-flash"]["errors"] == 2
    assert by_model["gemini-3-pro-high"]["requests"] == 3
    flash = [r for r in records if r["routed_model"] == "gemini-3-flash"]
    assert by_model["gemini-3-flash"]["input_tokens"] == total(flash, "input_tokens")

    by_account = gw.admin("GET", "/api/stats/breakdown", params={"by": "account"}).json()
    # One row per account even when their masked emails coincide (grouped by id).
    per_id: dict[str, list[str]] = {}
    for r in records:
        per_id.setdefault(r["account_id"], []).append(r["account"])
    assert len(per_id) == 2
    assert sorted((r["account"], r["requests"]) for r in by_account["rows"]) == sorted(
        (labels[0], len(labels)) for labels in per_id.values()
    )
    assert {r["account"] for r in by_account["rows"]} <= {mask_email(a.email) for a in accounts}

    usage = gw.admin("GET", "/api/stats/usage", params={"bucket": "hour", "hours": 5}).json()
    assert len(usage["series"]) in (5, 6)  # every hour of the window, empty ones as zeros
    assert sum(p["requests"] for p in usage["series"]) == 11
    assert sum(p["output_tokens"] for p in usage["series"]) == total(records, "output_tokens")
    assert usage["series"][0]["requests"] == 0

    exported = gw.admin("GET", "/api/stats/export.csv", params={"bucket": "day"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sum(int(r["requests"]) for r in rows) == 11
    assert sum(int(r["input_tokens"]) for r in rows) == total(records, "input_tokens")
    assert {r["model"] for r in rows} == {"gemini-3-flash", "gemini-3-pro-high"}

    out = gw.cli("stats", "--by", "model").stdout
    assert "11 requests, 2 errors" in out
    assert re.search(r"gemini-3-flash\s+8\s+2\s", out)
    cli_rows = list(csv.DictReader(io.StringIO(gw.cli("stats", "--csv", "--bucket", "day").stdout)))
    assert sum(int(r["requests"]) for r in cli_rows) == 11


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"bucket": "month"}, "bucket"),
        ({"hours": "soon"}, "hours"),
        ({"hours": "-1"}, "hours"),
        ({"bucket": "5min", "hours": "8000"}, "hours"),
        ({"by": "colour"}, "by"),
    ],
)
def test_bad_stats_parameters_get_400(gateway: Gateway, params: dict[str, str], param: str) -> None:
    gw = gateway
    path = "/api/stats/breakdown" if "by" in params else "/api/stats/usage"
    response = gw.admin("GET", path, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_buckets_follow_local_time_and_weeks_start_on_monday(store: Any) -> None:
    engine = store
    settings = Settings(api_key="sk-test-000000")
    writer = MonitorWriter(engine, lambda: settings)
    # 2026-11-22 is a Sunday. 22:30 UTC is already Monday 00:30 at UTC+2.
    sunday_late = calendar.timegm((2026, 11, 22, 22, 30, 0, 0, 0, 0))
    for offset_minutes, tokens in ((0, 5), (-60, 7), (24 * 60, 11)):
        record = RequestRecord("gemini", "POST", "/x", None, status=200, input_tokens=tokens)
        record.started_at = sunday_late + offset_minutes * 60
        writer.submit(record)
    asyncio.run(writer.flush())
    since, until = sunday_late - 3 * 86400, sunday_late + 3 * 86400
    utc = stats.series(engine, "day", since, 0, until)
    plus2 = stats.series(engine, "day", since, 7200, until)
    assert [p["input_tokens"] for p in utc if p["requests"]] == [12, 11]
    assert [p["input_tokens"] for p in plus2 if p["requests"]] == [7, 5, 11]
    weeks = stats.series(engine, "week", since, 0, until)
    assert [p["input_tokens"] for p in weeks if p["requests"]] == [12, 11]
    monday = time.gmtime(weeks[-1]["t"])
    assert monday.tm_wday == 0 and monday.tm_hour == 0


def test_metrics_need_the_admin_password_and_count_requests(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, accounts = gateway_with(
        gateway_factory,
        fake_google,
        2,
        AGPROXY_ADMIN_PASSWORD="admin-" + uuid.uuid4().hex,
        AGPROXY_AUTH_MODE="off",
    )
    for _ in range(3):
        assert ask(gw, "gemini-3-flash").status_code == 200
    fake_google.inject(Fault.rate_limited(retry_delay="90s"), email=accounts[0].email)
    fake_google.inject(Fault.rate_limited(retry_delay="90s"), email=accounts[1].email)
    assert ask(gw, "gemini-3-flash").status_code == 429

    assert gw.get("/metrics").status_code == 401
    assert (
        gw.get("/metrics", headers={"Authorization": f"Bearer {gw.api_key}"}).status_code == 401
    )  # the api key is not the admin password here
    response = gw.admin("GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'agproxy_requests_total{protocol="gemini",status="200",model="gemini-3-flash"} 3' in text
    assert 'agproxy_requests_total{protocol="gemini",status="429"' in text
    assert 'agproxy_request_duration_seconds_count{protocol="gemini"} 4' in text
    assert 'agproxy_request_duration_seconds_bucket{protocol="gemini",le="+Inf"} 4' in text
    assert 'agproxy_upstream_errors_total{class="rate_limited"} 2' in text
    assert "agproxy_cooldowns 2" in text
    assert 'agproxy_accounts{state="enabled"} 2' in text and "agproxy_up 1" in text
    assert 'agproxy_quota_remaining_ratio{model="gemini-3-flash"} 1.0000' in text
    tokens = re.search(r'agproxy_tokens_total\{model="gemini-3-flash",kind="input"\} (\d+)', text)
    assert tokens and int(tokens.group(1)) == sum(
        r["input_tokens"] or 0 for r in logs(gw) if r["status"] == 200
    )
    for account in accounts:
        assert account.email not in text
    assert logs(gw, q="/metrics") == []  # scrapes are not AI requests


def accounts_id(gw: Any, email: str) -> str:
    return next(
        a["id"] for a in gw.admin("GET", "/api/accounts").json()["accounts"] if a["email"] == email
    )


def test_dashboard_shows_cooldowns_attention_and_the_next_account(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, accounts = gateway_with(gateway_factory, fake_google, 3)
    fake_google.inject(Fault.rate_limited(retry_delay="120s"), email=accounts[0].email, times=5)
    for _ in range(4):
        ask(gw, "gemini-3-flash")
    fake_google.inject(
        Fault.forbidden(reason="account suspended"), email=accounts[2].email, times=5
    )
    for _ in range(4):
        ask(gw, "gemini-3-flash")
    board = gw.admin("GET", "/api/dashboard").json()
    assert board["status"]["running"] is True
    attention = {a["email"]: a for a in board["attention"]}
    cooling = attention[accounts[0].email]
    assert cooling["state"] == "cooling_down" and cooling["model"] == "gemini-3-flash"
    assert 100 < cooling["seconds_left"] <= 120
    assert attention[accounts[2].email]["state"] == "forbidden"
    assert accounts[1].email not in attention
    assert board["accounts"]["total"] == 3 and board["accounts"]["forbidden"] == 1
    [flash_next] = [n for n in board["next_up"] if n["model"] == "gemini-3-flash"]
    assert flash_next["email"] == accounts[1].email  # the only one free for it
    quota = {q["model"]: q for q in board["quota"]}
    assert quota["gemini-3-flash"]["average"] == 1.0 and quota["gemini-3-flash"]["accounts"] == 2
    hour = board["last_hour"]
    records = logs(gw)
    requests = [r for r in records if r["protocol"] != "event"]
    # The account turning forbidden is in the monitor too, as an event; not a request.
    assert [r["path"] for r in records if r["protocol"] == "event"] == [
        f"/accounts/{accounts_id(gw, accounts[2].email)}/state"
    ]
    assert hour["requests"] == len(requests) == 8
    assert hour["errors"] == sum(1 for r in requests if r["status"] >= 400)
    assert sum(p["requests"] for p in hour["series"]) == 8 and len(hour["series"]) == 12


def test_trace_explains_routing(shared: Borrowed) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    shared.configure(model_mapping={"gpt-4*": "gemini-3-pro-high", "gpt-4o*": "gemini-3-flash"})
    found = gw.admin("GET", "/api/models/trace", params={"model": "gpt-4o"}).json()
    assert found == {
        "requested": "gpt-4o",
        "model": "gemini-3-flash",
        "rule": "gpt-4o*",
        "source": "rule",
        "target": "gemini-3-flash",
    }
    assert (
        gw.admin("GET", "/api/models/trace", params={"model": "gpt-4-turbo"}).json()["rule"]
        == "gpt-4*"
    )
    # Unsaved rules can be tried before they are saved; the built-in table explains too.
    tried = gw.admin(
        "POST",
        "/api/models/trace",
        json={"model": "gpt-4o", "rules": {"gpt-*": "gemini-3-pro-high"}},
    ).json()
    assert (tried["model"], tried["rule"]) == ("gemini-3-pro-high", "gpt-*")
    assert (
        gw.admin("POST", "/api/models/trace", json={"model": "gemini-3.5-flash"}).json()["source"]
        == "family"
    )
    nothing = gw.admin("GET", "/api/models/trace", params={"model": "llama-9"}).json()
    assert (nothing["model"], nothing["source"]) == (None, "none")
    bad = gw.admin("POST", "/api/models/trace", json={"model": "x", "rules": ["no"]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rules"
    assert gw.admin("GET", "/api/models/trace").status_code == 400


def test_accounts_whose_masked_emails_coincide_stay_apart(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw = gateway_factory("gw", **google_env(fake_google), AGPROXY_SCHEDULING_MODE="round_robin")
    tag = uuid.uuid4().hex[:6]
    twins = [
        fake_google.add_account(email=f"a{tag}{middle}e@twins.example") for middle in ("lic", "nn")
    ]  # both a***e@twins.example
    add_to(gw, *twins)
    for i in range(4):
        assert ask(gw, "gemini-3-flash", f"twin {i}").status_code == 200
    assert len({mask_email(a.email) for a in twins}) == 1
    summary = gw.admin("GET", "/api/stats/summary").json()
    assert summary["accounts"] == 2
    assert [r["requests"] for r in summary["by_account"]] == [2, 2]


@pytest.mark.parametrize("params", [{"limit": "many"}, {"status": "5x"}, {"since": "yesterday"}])
def test_bad_log_filters_get_400(gateway: Gateway, params: dict[str, str]) -> None:
    gw = gateway
    response = gw.admin("GET", "/api/logs", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("bad filter value")
