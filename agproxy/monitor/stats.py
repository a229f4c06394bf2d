"""Aggregates over the monitor's records: time series, breakdowns, CSV rows.

Everything is computed in the store (SQLite or PostgreSQL) from `request_logs`, so a
figure here always equals the sum of the records it covers. Buckets are aligned to the
caller's local time (`tz_offset`, seconds east of UTC, as the console and the CLI send
it); weeks start on Monday.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from agproxy.db.tables import request_logs as T

BUCKETS = {"5min": 300, "hour": 3600, "day": 86400, "week": 7 * 86400}
WEEK_SHIFT = 3 * 86400  # 1970-01-01 was a Thursday: shift so buckets open on Mondays
GROUPS = {
    "model": sa.func.coalesce(T.c.routed_model, T.c.requested_model, "-"),
    # Grouped by id (masked emails can coincide), shown by masked email.
    "account": sa.func.coalesce(T.c.account_id, T.c.account, "-"),
    "protocol": T.c.protocol,
    # The client key's name; "-": the owner's api_key, or no key (auth off).
    "key": sa.func.coalesce(T.c.key_name, "-"),
    # google, or the name of the key-based provider that answered.
    "provider": sa.func.coalesce(T.c.provider, "-"),
}
LABELS = {"account": sa.func.coalesce(sa.func.max(T.c.account), "-")}
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "thinking_tokens", "cached_tokens")
# A spreadsheet runs a cell starting with one of these as a formula; model ids are the
# client's free text (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# Statistics count requests: the monitor's events (an account changing state) are not.
REQUESTS = T.c.protocol != "event"


def _measures() -> list[Any]:
    return [
        sa.func.count().label("requests"),
        sa.func.coalesce(sa.func.sum(sa.case((T.c.status >= 400, 1), else_=0)), 0).label("errors"),
        *(sa.func.coalesce(sa.func.sum(T.c[c]), 0).label(c) for c in TOKEN_COLUMNS),
        sa.func.coalesce(sa.func.avg(T.c.duration_ms), 0).label("avg_ms"),
    ]


def _measured(row: Any) -> dict[str, Any]:
    # int(): PostgreSQL sums BIGINTs as NUMERIC, which arrives as a Decimal.
    data: dict[str, Any] = {k: int(row._mapping[k]) for k in ("requests", "errors", *TOKEN_COLUMNS)}
    data["avg_ms"] = round(float(row._mapping["avg_ms"]), 1)
    return data


def bucket_start(ts: float, bucket: str, tz_offset: int = 0) -> int:
    size = BUCKETS[bucket]
    shift = tz_offset + (WEEK_SHIFT if bucket == "week" else 0)
    return int((ts + shift) // size * size - shift)


def _bucket_column(bucket: str, tz_offset: int, dialect: str) -> Any:
    size = BUCKETS[bucket]
    shift = tz_offset + (WEEK_SHIFT if bucket == "week" else 0)
    if dialect == "postgresql":
        # PostgreSQL's CAST rounds to the nearest whole number (SQLite's truncates, the
        # same as a floor for times after 1970): a record at 15:00 would join the next day.
        start = sa.cast(sa.func.floor((T.c.started_at + shift) / size), sa.BigInteger)
        return (start * size - shift).label("t")
    return (sa.cast((T.c.started_at + shift) / size, sa.Integer) * size - shift).label("t")


def series(
    engine: Engine, bucket: str, since: float, tz_offset: int = 0, until: float | None = None
) -> list[dict[str, Any]]:
    """One point per bucket from `since` to now, empty buckets included (zeros)."""
    until = time.time() if until is None else until
    column = _bucket_column(bucket, tz_offset, engine.dialect.name)
    query = (
        sa.select(column, *_measures())
        .where(T.c.started_at >= since, REQUESTS)
        .where(T.c.started_at <= until)
        .group_by(column)
    )
    with engine.connect() as conn:
        found = {int(r._mapping["t"]): _measured(r) for r in conn.execute(query)}
    empty = {"requests": 0, "errors": 0, **dict.fromkeys(TOKEN_COLUMNS, 0), "avg_ms": 0.0}
    points, t = [], bucket_start(since, bucket, tz_offset)
    while t <= until:
        points.append({"t": t, **found.pop(t, empty)})
        t += BUCKETS[bucket]
    return points


def breakdown(engine: Engine, by: str, since: float) -> list[dict[str, Any]]:
    """Totals per model, account, protocol or client key since `since`, busiest first."""
    key = GROUPS[by].label("key")
    label = LABELS.get(by, key).label("label")
    query = (
        sa.select(key, label, *_measures())
        .where(T.c.started_at >= since, REQUESTS)
        .group_by(key)
        .order_by(sa.func.count().desc(), key)
    )
    with engine.connect() as conn:
        return [{by: r.label, **_measured(r)} for r in conn.execute(query)]


def usage_by_key(engine: Engine, since: float) -> dict[str, dict[str, int]]:
    """Requests and input/output tokens per client key name since `since` (requests made
    with the owner's api_key or no key are not counted)."""
    query = (
        sa.select(
            T.c.key_name,
            sa.func.count().label("requests"),
            sa.func.coalesce(sa.func.sum(T.c.input_tokens), 0).label("input_tokens"),
            sa.func.coalesce(sa.func.sum(T.c.output_tokens), 0).label("output_tokens"),
        )
        .where(T.c.started_at >= since, T.c.key_name.is_not(None), REQUESTS)
        .group_by(T.c.key_name)
    )
    with engine.connect() as conn:
        return {
            r.key_name: {
                "requests": r.requests,
                "input_tokens": int(r.input_tokens),  # a Decimal from PostgreSQL
                "output_tokens": int(r.output_tokens),
            }
            for r in conn.execute(query)
        }


def day_and_week_start(now: float, tz_offset: int = 0) -> tuple[int, int]:
    """When today and this week (from Monday) began, in the caller's local time."""
    return bucket_start(now, "day", tz_offset), bucket_start(now, "week", tz_offset)


def totals(engine: Engine, since: float) -> dict[str, Any]:
    query = sa.select(
        *_measures(),
        sa.func.count(sa.distinct(GROUPS["account"])).label("accounts"),
    ).where(T.c.started_at >= since, REQUESTS)
    with engine.connect() as conn:
        row = conn.execute(query).one()
    return {**_measured(row), "accounts": row.accounts}


def csv_rows(engine: Engine, bucket: str, since: float, tz_offset: int = 0) -> Iterator[list[Any]]:
    """Header, then one row per bucket × model × account × client key, oldest first."""
    column = _bucket_column(bucket, tz_offset, engine.dialect.name)
    model, account = GROUPS["model"].label("model"), GROUPS["account"].label("account_key")
    label = LABELS["account"].label("account")
    key = GROUPS["key"].label("key")
    query = (
        sa.select(column, model, account, label, key, *_measures())
        .where(T.c.started_at >= since, REQUESTS)
        .group_by(column, model, account, key)
        .order_by(column, model, label, key)
    )
    yield [
        "bucket_start",
        "bucket",
        "model",
        "account",
        "key",
        "requests",
        "errors",
        *TOKEN_COLUMNS,
        "avg_ms",
    ]
    with engine.connect() as conn:
        for r in conn.execute(query):
            local = time.gmtime(int(r._mapping["t"]) + tz_offset)
            stamp = time.strftime("%Y-%m-%d %H:%M", local)
            m = _measured(r)
            yield [
                stamp,
                bucket,
                csv_cell(r.model),
                csv_cell(r.account),
                csv_cell(r.key),
                m["requests"],
                m["errors"],
                *(m[c] for c in TOKEN_COLUMNS),
                m["avg_ms"],
            ]


def csv_cell(text: str) -> str:
    """The text, with a leading quote when a spreadsheet would read it as a formula (the
    "-" that stands for no model or account is left as it is)."""
    return "'" + text if text.startswith(FORMULA_START) and text != "-" else text


def tokens_by_key(engine: Engine, since: float) -> dict[str, int]:
    """Tokens per client key name since `since` (input, output and thinking)."""
    used = (
        sa.func.coalesce(T.c.input_tokens, 0)
        + sa.func.coalesce(T.c.output_tokens, 0)
        + sa.func.coalesce(T.c.thinking_tokens, 0)
    )
    query = (
        sa.select(T.c.key_name, sa.func.sum(used))
        .where(T.c.started_at >= since, T.c.key_name.is_not(None))
        .group_by(T.c.key_name)
    )
    with engine.connect() as conn:
        return {name: int(total or 0) for name, total in conn.execute(query)}
