"""The stores on both backends: accounts (with cooldowns, quotas and windows), client keys,
stored responses, the monitor's records, its statistics and filters, run against a SQLite
file and against a database of a real PostgreSQL server (the `store` fixture). Where the
backends differ (PostgreSQL's sums, rounding casts, case-sensitive LIKE, text without NUL,
no up-front write lock), the answers must not."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from agproxy.accounts.store import AccountStore, ModelQuota, Status, UpsertResult
from agproxy.accounts.windows import QuotaWindow
from agproxy.admin.monitor import _query
from agproxy.config import Settings
from agproxy.db import revision
from agproxy.db.tables import request_logs
from agproxy.keys.store import KeyRefused, KeyStore
from agproxy.monitor import stats
from agproxy.monitor.record import RequestRecord
from agproxy.monitor.writer import MonitorWriter
from agproxy.responses.store import ResponseStore, StoredResponse

SETTINGS = Settings(api_key="sk-test-000000")


# -- accounts ------------------------------------------------------------------------------
def test_accounts_are_added_updated_and_removed(store: Any) -> None:
    accounts = AccountStore(store)
    start = accounts.revision()
    quotas = [ModelQuota("gemini-3-flash", 0.25, 1e9 + 0.5, 65536), ModelQuota("claude", None, 2.0)]
    windows = [QuotaWindow("3p-weekly", "3p", "weekly", None, 1e9)]
    added, result = accounts.upsert(
        "Ann@Example.com", "1//r1", project_id="p", quotas=quotas, windows=windows
    )
    assert result is UpsertResult.ADDED and accounts.revision() == start + 1
    second, _ = accounts.upsert("bob@example.com", "1//r2")
    assert (added.sort_order, second.sort_order) == (0, 1)
    assert accounts.upsert("ann@example.com", "1//r1")[1] is UpsertResult.DUPLICATE
    accounts.set_status(added.id, Status.NEEDS_RELOGIN, "x" * 2000, "https://verify/" + "p" * 2000)
    again, result = accounts.upsert("ANN@example.com", "1//r1-new")
    assert result is UpsertResult.UPDATED and again.id == added.id and again.status is Status.OK
    found = accounts.get("ann@example.com")
    assert found is not None and found.refresh_token == "1//r1-new"
    assert [(q.model, q.remaining_fraction, q.reset_at) for q in found.quotas] == [
        ("claude", None, 2.0),
        ("gemini-3-flash", 0.25, 1e9 + 0.5),
    ]
    assert found.windows == windows and found.public()["proxy_url"] is None
    accounts.set_enabled(added.id, False)
    accounts.save_tokens(added.id, "ya29.a", time.time() + 3600)
    used_at = time.time()
    accounts.touch_used({added.id: used_at})
    found = accounts.get(added.id)
    assert found is not None and not found.enabled and found.last_used_at == used_at
    assert accounts.remove(added.id) and not accounts.remove(added.id)
    assert [a.email for a in accounts.all()] == ["bob@example.com"]


def test_cooldowns_are_saved_and_loaded_to_the_microsecond(store: Any) -> None:
    accounts = AccountStore(store)
    now = time.time()
    rows = [("a1", "*", now + 60.000001), ("a1", "gemini-3-flash", now + 0.5), ("a2", "m", now - 1)]
    accounts.save_cooldowns(rows)
    assert sorted(accounts.load_cooldowns(now)) == sorted(rows[:2])
    accounts.save_cooldowns([])
    assert accounts.load_cooldowns(now) == []


def test_processes_saving_cooldowns_at_once_take_turns(store: Any) -> None:
    """Every process of a gateway saves the cooldowns it knows (the same set, with Redis):
    saves at the same moment neither fail nor leave a mix."""
    accounts = AccountStore(store)
    now = time.time()
    rows = [(f"a{i}", "m", now + 60 + i) for i in range(20)]
    failures: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(10):
                accounts.save_cooldowns(rows)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(accounts.load_cooldowns(now)) == sorted(rows)


def test_a_counter_first_bumped_by_many_at_once_counts_them_all(store: Any) -> None:
    """PostgreSQL takes no write lock up front: two first bumps must not both insert."""
    failures: list[BaseException] = []

    def bump() -> None:
        try:
            with store.begin() as conn:
                revision.bump(conn, "fresh")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and revision.read(store, "fresh") == 8


# -- client keys ---------------------------------------------------------------------------
def test_client_keys_keep_limits_past_32_bits(store: Any) -> None:
    keys = KeyStore(store)
    key, secret = keys.create("team", models=("gemini-*",), daily_tokens=10**12, rpm=5)
    with pytest.raises(KeyRefused, match="exists already"):
        keys.create("team")
    keys.update(key.id, tpm=3_000_000_000, models=())
    rotated = keys.rotate(key.id)
    found = keys.find("team")
    assert (found.daily_tokens, found.tpm, found.models) == (10**12, 3_000_000_000, ())
    assert rotated != secret and found.prefix == rotated[:8]
    keys.delete(key.id)
    assert keys.all() == []


# -- stored responses ----------------------------------------------------------------------
def test_stored_responses_chain_and_prune(store: Any) -> None:
    responses = ResponseStore(store, lambda: 1.0)
    now = time.time()

    async def scenario() -> None:
        for n, previous in ((1, None), (2, "resp_1"), (3, "resp_2")):
            responses.save(
                StoredResponse(
                    f"resp_{n}",
                    "team",
                    now - (2 * 86400 if n == 1 else 0),
                    previous,
                    [{"role": "user", "content": f"turn {n} \x00"}],
                    {"id": f"resp_{n}", "output": [{"type": "message", "n": n}]},
                )
            )
        await responses.drain()
        history = await responses.history("resp_3", "team")
        # resp_1 is past retention: the conversation starts at resp_2.
        assert history is not None and [item.get("n") for item in history] == [None, 2, None, 3]
        assert history[0]["content"] == "turn 2 \x00"
        assert await responses.get("resp_3", None) is None  # another owner's
        assert await responses.get("resp_\x00", "team") is None
        assert await responses.delete("resp_3", "team")

    asyncio.run(scenario())
    responses.prune(time.time())  # resp_1 may have gone already, at the first write
    assert [responses._select(f"resp_{n}") is not None for n in (1, 2, 3)] == [False, True, False]


# -- the monitor: records, statistics, filters -----------------------------------------------
def record(at: float, **fields: Any) -> RequestRecord:
    made = RequestRecord("openai", "POST", fields.pop("path", "/v1/chat/completions"), None)
    made.started_at = at
    made.status = 200
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def write(store: Any, *records: RequestRecord) -> MonitorWriter:
    writer = MonitorWriter(store, lambda: SETTINGS)
    for made in records:
        writer.submit(made)
    asyncio.run(writer.flush())
    assert not writer.queue, "a batch was refused"
    writer.close()
    return writer


def test_records_with_long_text_and_nul_are_written(store: Any) -> None:
    agent = "Agent/1.0 " * 100
    write(store, record(time.time(), path="/v1/x\x00y", user_agent=agent, status=404))
    with store.connect() as conn:
        row = conn.execute(sa.select(request_logs)).mappings().one()
    assert row["user_agent"] == agent
    # PostgreSQL's text holds no NUL: it becomes U+FFFD there, and stays in SQLite.
    assert row["path"] in ("/v1/x\x00y", "/v1/x\ufffdy")


def test_statistics_add_up_and_are_plain_numbers(store: Any) -> None:
    # 2026-11-23 12:00 UTC, a Monday: buckets by the hour and the day, in UTC and UTC+2.
    noon = 1795435200.0
    assert time.gmtime(noon)[:4] == (2026, 11, 23, 12)
    write(
        store,
        record(
            noon + 0.9,
            routed_model="gemini-3-flash",
            input_tokens=3_000_000_000,
            output_tokens=5,
            account="a***e@x",
            account_id="id-a",
            key_name="team",
        ),
        record(
            noon + 1799,
            routed_model="gemini-3-flash",
            input_tokens=10,
            status=429,
            account="a***e@x",
            account_id="id-b",
            key_name="team",
            duration_ms=10.0,
        ),
        record(
            noon + 3600,
            requested_model="claude-opus",
            input_tokens=1,
            thinking_tokens=2,
            duration_ms=20.0,
        ),
        record(noon + 3601, protocol="event", routed_model="gemini-3-flash", input_tokens=99),
    )
    since = noon - 86400
    totals = stats.totals(store, since)
    assert (totals["requests"], totals["errors"], totals["accounts"]) == (3, 1, 3)
    assert totals["input_tokens"] == 3_000_000_011 and totals["avg_ms"] == 10.0
    by_model = stats.breakdown(store, "model", since)
    assert [(r["model"], r["requests"], r["input_tokens"]) for r in by_model] == [
        ("gemini-3-flash", 2, 3_000_000_010),
        ("claude-opus", 1, 1),
    ]
    by_account = stats.breakdown(store, "account", since)
    assert sorted((r["account"], r["requests"]) for r in by_account) == [
        ("-", 1),
        ("a***e@x", 1),
        ("a***e@x", 1),
    ]
    hours = stats.series(store, "hour", noon - 3600, 0, noon + 7199)
    assert [(p["t"] - noon, p["requests"]) for p in hours] == [(-3600, 0), (0, 2), (3600, 1)]
    days = stats.series(store, "day", noon - 86400, 7200, noon + 86400)
    assert [p["requests"] for p in days] == [0, 3, 0]
    assert stats.usage_by_key(store, since) == {
        "team": {"requests": 2, "input_tokens": 3_000_000_010, "output_tokens": 5}
    }
    assert stats.tokens_by_key(store, since) == {"team": 3_000_000_015}
    rows = list(stats.csv_rows(store, "hour", since))
    assert sorted(rows[1:]) == [
        [
            "2026-11-23 12:00",
            "hour",
            "gemini-3-flash",
            "a***e@x",
            "team",
            1,
            0,
            3_000_000_000,
            5,
            0,
            0,
            0.0,
        ],
        ["2026-11-23 12:00", "hour", "gemini-3-flash", "a***e@x", "team", 1, 1, 10, 0, 0, 0, 10.0],
        ["2026-11-23 13:00", "hour", "claude-opus", "-", "-", 1, 0, 1, 0, 2, 0, 20.0],
    ]
    # What the admin API answers with: orjson refuses a Decimal.
    orjson.dumps([totals, by_model, by_account, hours, days, rows])


def test_log_filters_ignore_case_and_take_text_as_written(store: Any) -> None:
    write(
        store,
        record(1.0, routed_model="Gemini-3-Flash", account="a***e@x"),
        record(2.0, requested_model="claude-opus", path="/v1/C:\\Users\\x", error="Quota 50% used"),
    )
    gateway: Any = SimpleNamespace(engine=store)

    def ids(**params: str) -> list[str | None]:
        return [r["routed_model"] or r["requested_model"] for r in _query(gateway, params)]

    assert ids(model="GEMINI") == ["Gemini-3-Flash"]
    assert ids(account="A***E") == ["Gemini-3-Flash"]
    assert ids(q="c:\\users") == ["claude-opus"]
    assert ids(q="50%") == ["claude-opus"]
    assert ids(q="no such thing") == []
    # A NUL (PostgreSQL text cannot hold one) is a bad filter value (400), on both.
    for name in ("model", "account", "q", "protocol"):
        with pytest.raises(ValueError, match="NUL"):
            ids(**{name: "gem\x00ini"})


def test_a_read_after_a_flush_sees_the_batch_another_flush_is_writing(store: Any) -> None:
    """The background task takes a batch and writes it on a worker thread (every batch on
    PostgreSQL; with captured bodies on SQLite too): the admin API's flush before a read
    must wait for it, or the read misses records that have finished."""
    writer = MonitorWriter(store, lambda: SETTINGS)

    async def scenario() -> int:
        for n in range(5):
            writer.submit(record(float(n), request_body=b"captured"))
        background = asyncio.create_task(writer.flush())
        await asyncio.sleep(0)  # it takes the batch and waits for its thread
        assert not writer.queue
        await writer.flush()
        with store.connect() as conn:
            seen = conn.execute(sa.select(sa.func.count()).select_from(request_logs)).scalar()
        await background
        return int(seen or 0)

    assert asyncio.run(scenario()) == 5
    writer.close()
