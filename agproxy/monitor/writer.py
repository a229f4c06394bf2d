"""Writing monitor records: a bounded queue drained in batches by one background task.

The request path only appends to the queue; the database sees one transaction per
batch. On shutdown the queue is drained completely. Retention keeps at most
`monitor_max_rows` records and none older than `monitor_retention_days`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from agproxy.config import Settings
from agproxy.db.tables import request_logs
from agproxy.monitor.metrics import Metrics
from agproxy.monitor.record import RequestRecord

log = logging.getLogger("agproxy.monitor")
QUEUE_LIMIT = 50_000
BATCH = 500
FLUSH_SECONDS = 0.5
RETENTION_EVERY = 300.0
WATCH_BACKLOG = 1000


class MonitorWriter:
    def __init__(self, engine: Engine, settings: Callable[[], Settings]) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = Metrics()
        self.queue: deque[RequestRecord] = deque()
        self.dropped = 0
        self.written = 0
        self.watchers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._wake = asyncio.Event()
        self._last_retention = 0.0

    def submit(self, record: RequestRecord) -> None:
        self.metrics.observe(record)
        if self.watchers:
            self._publish(record)
        if not self.settings().monitor_enabled:
            return
        if len(self.queue) >= QUEUE_LIMIT:
            self.dropped += 1  # the database is far behind: count, don't block requests
            return
        self.queue.append(record)
        if len(self.queue) >= BATCH:
            self._wake.set()

    # -- live view: the console's monitor follows records as they finish ------------------
    def watch(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(WATCH_BACKLOG)
        self.watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.watchers.discard(queue)

    def _publish(self, record: RequestRecord) -> None:
        settings = self.settings()
        summary = record.row(0, (settings.api_key, settings.admin_password,
                                 settings.zai_api_key), bodies=False)
        del summary["request_body"], summary["response_body"]
        summary["attempts"] = record.attempts
        for queue in self.watchers:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled viewer misses rows
                queue.put_nowait(summary)

    def close_watchers(self) -> None:
        """End every live view (shutdown must not wait for open consoles)."""
        for queue in self.watchers:
            while True:
                try:
                    queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    queue.get_nowait()
        self.watchers.clear()

    def _write(self, batch: list[RequestRecord]) -> None:
        settings = self.settings()
        secrets = (settings.api_key, settings.admin_password, settings.zai_api_key)
        rows = [r.row(settings.monitor_body_max_bytes, secrets) for r in batch]
        with self.engine.begin() as conn:
            conn.execute(sa.insert(request_logs), rows)

    def _retain(self) -> None:
        settings = self.settings()
        cutoff = time.time() - settings.monitor_retention_days * 86400
        with self.engine.begin() as conn:
            conn.execute(sa.delete(request_logs).where(request_logs.c.started_at < cutoff))
            keep_from = conn.execute(
                sa.select(request_logs.c.started_at).order_by(request_logs.c.started_at.desc())
                .offset(settings.monitor_max_rows).limit(1)).scalar()
            if keep_from is not None:
                conn.execute(sa.delete(request_logs)
                             .where(request_logs.c.started_at <= keep_from))

    async def flush(self) -> None:
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(BATCH, len(self.queue)))]
            try:
                await asyncio.to_thread(self._write, batch)
                self.written += len(batch)
            except Exception:
                log.exception("could not write %d monitor records; keeping them", len(batch))
                self.queue.extendleft(reversed(batch))
                return

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            await self.flush()
            if time.monotonic() - self._last_retention > RETENTION_EVERY:
                self._last_retention = time.monotonic()
                try:
                    await asyncio.to_thread(self._retain)
                except Exception:
                    log.exception("monitor retention failed")
