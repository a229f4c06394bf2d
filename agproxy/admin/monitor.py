"""Admin API for the monitor: request records, their totals and usage statistics."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from agproxy.admin.proxy import admin_error
from agproxy.db.tables import request_logs
from agproxy.frontends.common import JSONResponse
from agproxy.monitor import stats
from agproxy.service import Gateway

T = request_logs
MAX_POINTS = 5000
KEEPALIVE_SECONDS = 15.0
SUMMARY_COLUMNS = [c for c in T.c if c.name not in ("request_body", "response_body")]


def _row(row: Any) -> dict[str, Any]:
    # Column names come back as str subclasses, which orjson refuses as keys.
    data = {str(k): v for k, v in row._mapping.items()}
    data["attempts"] = orjson.loads(data["attempts"]) if data.get("attempts") else []
    return data


def _matching(dialect: str) -> Callable[[Any, str], Any]:
    """The filters' `contains`, ignoring case: SQLite's LIKE does (for ASCII letters),
    PostgreSQL's does not (its ILIKE does). A backslash is no escape in SQLite's LIKE; in
    PostgreSQL's it is unless ESCAPE '' says otherwise (a Windows path in the filter)."""
    if dialect == "postgresql":
        return lambda column, pattern: column.ilike(pattern, escape="")
    return lambda column, pattern: column.like(pattern)


def _query(gateway: Gateway, params: dict[str, str]) -> list[dict[str, Any]]:
    if any("\x00" in value for value in params.values()):
        raise ValueError("a filter cannot hold a NUL character")
    like = _matching(gateway.engine.dialect.name)
    limit = min(max(int(params.get("limit", 100)), 1), 1000)
    query = sa.select(*SUMMARY_COLUMNS).order_by(T.c.started_at.desc()).limit(limit)
    if params.get("offset"):
        query = query.offset(int(params["offset"]))
    if params.get("since"):
        query = query.where(T.c.started_at > float(params["since"]))
    status = params.get("status", "")
    if len(status) == 3 and status.endswith("xx") and status[0] in "12345":
        low = int(status[0]) * 100
        query = query.where(T.c.status >= low).where(T.c.status < low + 100)
    elif status:
        query = query.where(T.c.status == int(status))
    if params.get("errors_only") in ("1", "true"):
        query = query.where(T.c.status >= 400)
    if params.get("model"):
        model = f"%{params['model']}%"
        query = query.where(sa.or_(like(T.c.requested_model, model), like(T.c.routed_model, model)))
    if params.get("account"):
        query = query.where(like(T.c.account, f"%{params['account']}%"))
    if params.get("protocol"):
        query = query.where(T.c.protocol == params["protocol"])
    if params.get("q"):
        text = f"%{params['q']}%"
        searched = (T.c.path, T.c.requested_model, T.c.routed_model, T.c.account, T.c.user_agent)
        query = query.where(sa.or_(*(like(c, text) for c in (*searched, T.c.error))))
    with gateway.engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


async def settled(gateway: Gateway) -> None:
    """Records still queued are written first, so a read sees every finished request."""
    if gateway.monitor is not None:
        await gateway.monitor.flush()


async def list_logs(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    await settled(gateway)
    try:
        rows = await run_in_threadpool(_query, gateway, dict(request.query_params))
    except ValueError as exc:
        return admin_error(400, f"bad filter value: {exc}")
    return JSONResponse({"logs": rows})


async def stream_logs(request: Request) -> Response:
    """Server-sent events: one `data:` line per finished request (the list's row shape),
    and a comment every 15 s so proxies keep the connection open."""
    gateway: Gateway = request.app.state.gateway
    monitor = gateway.monitor
    if monitor is None:
        return admin_error(404, "the monitor is not available")
    queue = monitor.watch()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": watching\n\n"
            while True:
                try:
                    row = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if row is None:
                    return
                yield b"data: " + orjson.dumps(row) + b"\n\n"
        finally:
            monitor.unwatch(queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def get_log(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    await settled(gateway)

    def one() -> dict[str, Any] | None:
        with gateway.engine.connect() as conn:
            row = conn.execute(sa.select(T).where(T.c.id == request.path_params["id"])).first()
        return _row(row) if row else None

    found = await run_in_threadpool(one)
    return JSONResponse(found) if found else admin_error(404, "no such log record")


async def clear_logs(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    await settled(gateway)

    def clear() -> int:
        with gateway.engine.begin() as conn:
            return int(conn.execute(sa.delete(T)).rowcount or 0)

    return JSONResponse({"deleted": await run_in_threadpool(clear)})


class BadParam(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _number(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadParam(name, f"{name} must be a number") from None
    if not low <= value <= high:
        raise BadParam(name, f"{name} must be between {low:g} and {high:g}")
    return value


def _choice(request: Request, name: str, default: str, allowed: Collection[str]) -> str:
    value = request.query_params.get(name) or default
    if value not in allowed:
        raise BadParam(name, f"{name} must be one of {', '.join(allowed)}")
    return value


def _window(request: Request, default_hours: float) -> tuple[float, int]:
    """(since, tz_offset) from `hours` (at most a year) and `tz_offset` (seconds east)."""
    hours = _number(request, "hours", default_hours, 0.01, 24 * 366)
    return time.time() - hours * 3600, int(_number(request, "tz_offset", 0, -14 * 3600, 14 * 3600))


def _stats_endpoint(
    compute: Callable[[Gateway, Request], Any],
) -> Callable[[Request], Awaitable[Response]]:
    """Flush queued records, run the query off the loop, map bad parameters to 400."""

    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        await settled(gateway)
        try:
            result = await run_in_threadpool(compute, gateway, request)
        except BadParam as exc:
            return admin_error(400, str(exc), exc.name)
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


def _summary(gateway: Gateway, request: Request) -> dict[str, Any]:
    """Totals over the last `hours` (default 24), with the busiest models, accounts and
    client keys."""
    since, _ = _window(request, 24)
    return {
        "hours": round((time.time() - since) / 3600, 2),
        **stats.totals(gateway.engine, since),
        "by_model": stats.breakdown(gateway.engine, "model", since),
        "by_account": stats.breakdown(gateway.engine, "account", since),
        "by_key": stats.breakdown(gateway.engine, "key", since),
        "dropped": gateway.monitor.dropped if gateway.monitor else 0,
    }


def _usage(gateway: Gateway, request: Request) -> dict[str, Any]:
    bucket = _choice(request, "bucket", "hour", stats.BUCKETS)
    default_hours = {"5min": 1, "hour": 24, "day": 24 * 30, "week": 24 * 7 * 12}[bucket]
    since, tz_offset = _window(request, default_hours)
    if (time.time() - since) / stats.BUCKETS[bucket] > MAX_POINTS:
        raise BadParam(
            "hours", f"that is more than {MAX_POINTS} {bucket} buckets; choose a larger bucket"
        )
    return {
        "bucket": bucket,
        "tz_offset": tz_offset,
        "series": stats.series(gateway.engine, bucket, since, tz_offset),
    }


def _breakdown(gateway: Gateway, request: Request) -> dict[str, Any]:
    by = _choice(request, "by", "model", stats.GROUPS)
    since, _ = _window(request, 24)
    return {"by": by, "rows": stats.breakdown(gateway.engine, by, since)}


def _export(gateway: Gateway, request: Request) -> Response:
    bucket = _choice(request, "bucket", "hour", stats.BUCKETS)
    since, tz_offset = _window(request, 24 * 7)
    out = io.StringIO()
    # RFC 4180 line ends: the writer quotes a cell holding a "\r" only when "\r" ends
    # lines, and an unquoted one splits the row in any reader.
    csv.writer(out, lineterminator="\r\n").writerows(
        stats.csv_rows(gateway.engine, bucket, since, tz_offset)
    )
    name = f"agproxy-usage-{bucket}-{time.strftime('%Y%m%d')}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


routes = [
    Route("/logs", list_logs, methods=["GET"]),
    Route("/logs/clear", clear_logs, methods=["POST"]),
    Route("/logs/stream", stream_logs, methods=["GET"]),
    Route("/logs/{id}", get_log, methods=["GET"]),
    Route("/stats/summary", _stats_endpoint(_summary), methods=["GET"]),
    Route("/stats/usage", _stats_endpoint(_usage), methods=["GET"]),
    Route("/stats/breakdown", _stats_endpoint(_breakdown), methods=["GET"]),
    Route("/stats/export.csv", _stats_endpoint(_export), methods=["GET"]),
]
