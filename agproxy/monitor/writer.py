"""Writing monitor records: a bounded queue drained in batches by one background task.

The request path only appends to the queue; the database sees one transaction per
batch, written on the event loop when the lock is free (see `_write_now`) and on a
worker thread when another process holds it. On shutdown the queue is drained
completely. Retention keeps at most `monitor_max_rows` records and none older than
`monitor_retention_days`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from agproxy.config import Settings
from agproxy.db.tables import request_logs
from agproxy.monitor.metrics import Metrics
from agproxy.monitor.record import COLUMNS, RequestRecord

log = logging.getLogger("agproxy.monitor")
INSERT = (f"INSERT INTO request_logs ({', '.join(COLUMNS)}) "
          f"VALUES ({', '.join('?' * len(COLUMNS))})")
QUEUE_LIMIT = 50_000
BATCH = 100
FLUSH_SECONDS = 0.5
RETENTION_EVERY = 300.0
CHECKPOINT_EVERY = 5.0
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
        self._fast: sqlite3.Connection | None = None

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

    def _rows(self, batch: list[RequestRecord]) -> list[tuple[Any, ...]]:
        settings = self.settings()
        secrets = (settings.api_key, settings.admin_password, settings.zai_api_key)
        limit = settings.monitor_body_max_bytes
        return [r.values(limit, secrets) for r in batch]

    def _fast_connection(self) -> sqlite3.Connection | None:
        """A connection of our own for SQLite that never waits for a lock."""
        if self.engine.dialect.name != "sqlite" or not self.engine.url.database:
            return None
        if self._fast is None:
            self._fast = sqlite3.connect(self.engine.url.database, isolation_level=None,
                                         check_same_thread=False)
            self._fast.execute("PRAGMA synchronous=NORMAL")
            self._fast.execute("PRAGMA busy_timeout=0")
            # No checkpoint (copying the WAL into the database, with an fsync) on the
            # event loop: `run` checkpoints on a worker thread instead.
            self._fast.execute("PRAGMA wal_autocheckpoint=0")
        return self._fast

    def _write_now(self, rows: list[tuple[Any, ...]]) -> bool:
        """Write on the calling (event loop) thread; False when another connection holds
        the write lock, so nothing here ever waits.

        Measured under load, a batch of 100 rows written here costs the loop about a
        millisecond, while the same write on a worker thread cost a fifth of the
        throughput: the thread takes and gives back the GIL for every row, and each
        handoff stalls the loop."""
        conn = self._fast_connection()
        if conn is None:
            return False
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False  # busy: another process is writing
        try:
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True

    def _write_waiting(self, rows: list[tuple[Any, ...]]) -> None:
        """Write through the engine, waiting for the lock (on a worker thread); also the
        path for databases other than SQLite."""
        with self.engine.begin() as conn:
            conn.execute(sa.insert(request_logs), [dict(zip(COLUMNS, row, strict=True))
                                                   for row in rows])

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None

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
                if any(r.request_body is not None for r in batch):
                    # Captured bodies: redaction is real work, let the loop interleave.
                    rows = await asyncio.to_thread(self._rows, batch)
                else:
                    rows = self._rows(batch)
                if not self._write_now(rows):
                    await asyncio.to_thread(self._write_waiting, rows)
                self.written += len(batch)
            except Exception:
                log.exception("could not write %d monitor records; keeping them", len(batch))
                self.queue.extendleft(reversed(batch))
                return

    def _checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL into the database (on a worker thread; its own connection, as a
        checkpoint cannot run inside the engine's transactions). Returns SQLite's
        (busy, frames in the log, frames checkpointed)."""
        conn = sqlite3.connect(str(self.engine.url.database), isolation_level=None)
        try:
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return busy, frames, done
        finally:
            conn.close()

    async def run(self) -> None:
        last_checkpoint = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            await self.flush()
            if self._fast is not None and time.monotonic() - last_checkpoint > CHECKPOINT_EVERY:
                last_checkpoint = time.monotonic()
                try:
                    await asyncio.to_thread(self._checkpoint)
                except Exception:
                    log.exception("monitor checkpoint failed")
            if time.monotonic() - self._last_retention > RETENTION_EVERY:
                self._last_retention = time.monotonic()
                try:
                    await asyncio.to_thread(self._retain)
                except Exception:
                    log.exception("monitor retention failed")
