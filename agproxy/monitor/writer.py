"""Writing monitor records: a bounded queue drained in batches by one background task.

The request path only appends to the queue; the database sees one transaction per
batch, written on the event loop when the lock is free (see `_write_now`) and on a
worker thread when another process holds it. On shutdown the queue is drained
completely. Retention keeps at most `monitor_max_rows` records and none older than
`monitor_retention_days`.

The queue is bounded in bytes (`monitor_queue_max_bytes`), as captured bodies make a
record weigh anything from a kilobyte to a megabyte: while the database is locked, the
queue fills and then sheds captured bodies first (the record is kept, saying so), and
whole records only when no body is left to shed. Both are counted in /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
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
INSERT = f"INSERT INTO request_logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
QUEUE_LIMIT = 50_000
# What a record weighs without its bodies (the object, its strings, the attempts list):
# tracemalloc measured about 950 bytes for one with a single attempt.
RECORD_BYTES = 1024
# A queue that held this much gives its memory back to the system once drained.
TRIM_AFTER_BYTES = 8 * 1024 * 1024
BODY_DROPPED = b"[not kept: the monitor queue was full while the database was busy]"
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
        # Records in the queue that still hold captured bodies, oldest first: the ones to
        # shed under pressure (always a subsequence of `queue`).
        self._bodied: deque[RequestRecord] = deque()
        self.queue_bytes = 0  # queued records and the batch being written
        self._peak_bytes = 0  # since the queue was last empty
        self.written = 0
        self._failing = False  # the last write failed (said once in the log)
        self.watchers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._wake = asyncio.Event()
        # One flush at a time: a reader that flushes first (the admin API) must also wait
        # for the batch the background task took and is writing on a worker thread, as
        # every batch is on PostgreSQL (and on SQLite when locked or with bodies).
        self._flushing = asyncio.Lock()
        self._last_retention = 0.0
        self._fast: sqlite3.Connection | None = None

    @property
    def dropped(self) -> int:
        return self.metrics.records_dropped

    def submit(self, record: RequestRecord) -> None:
        self.metrics.observe(record)
        if self.watchers:
            self._publish(record)
        settings = self.settings()
        if not settings.monitor_enabled:
            return
        limit = settings.monitor_queue_max_bytes
        size = _weigh(record)
        # Over the bound: shed the oldest bodies first (the newest tell most about what
        # is happening now), then this record's own.
        while self.queue_bytes + size > limit and self._bodied:
            self.queue_bytes -= self._shed(self._bodied.popleft())
        if self.queue_bytes + size > limit and _has_bodies(record):
            size -= self._shed(record)
        if self.queue_bytes + size > limit or len(self.queue) >= QUEUE_LIMIT:
            self.metrics.records_dropped += 1  # the database is far behind: don't block
            return
        record.queued_bytes = size
        self.queue_bytes += size
        self._peak_bytes = max(self._peak_bytes, self.queue_bytes)
        self.queue.append(record)
        if _has_bodies(record):
            self._bodied.append(record)
        if len(self.queue) >= BATCH:
            self._wake.set()

    def _shed(self, record: RequestRecord) -> int:
        """Replace the record's captured bodies by a note; the bytes this frees."""
        freed = 0
        if len(record.request_body or b"") > len(BODY_DROPPED):
            freed += len(record.request_body or b"") - len(BODY_DROPPED)
            record.request_body, record.request_cut = BODY_DROPPED, False
        if len(record.response_body or b"") > len(BODY_DROPPED):
            freed += len(record.response_body or b"") - len(BODY_DROPPED)
            record.response_body, record.response_cut = BODY_DROPPED, False
        if freed:
            record.queued_bytes -= freed
            self.metrics.bodies_dropped += 1
        return freed

    # -- live view: the console's monitor follows records as they finish ------------------
    def watch(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(WATCH_BACKLOG)
        self.watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.watchers.discard(queue)

    def _publish(self, record: RequestRecord) -> None:
        settings = self.settings()
        summary = record.row(0, settings.secrets, bodies=False)
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
        secrets = settings.secrets
        limit = settings.monitor_body_max_bytes
        return [r.values(limit, secrets) for r in batch]

    def _fast_connection(self) -> sqlite3.Connection | None:
        """A connection of our own for SQLite that never waits for a lock."""
        if self.engine.dialect.name != "sqlite" or not self.engine.url.database:
            return None
        if self._fast is None:
            self._fast = sqlite3.connect(
                self.engine.url.database, isolation_level=None, check_same_thread=False
            )
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
        if self.engine.dialect.name == "postgresql":
            rows = [_without_nul(row) for row in rows]
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(request_logs), [dict(zip(COLUMNS, row, strict=True)) for row in rows]
            )

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
                sa.select(request_logs.c.started_at)
                .order_by(request_logs.c.started_at.desc())
                .offset(settings.monitor_max_rows)
                .limit(1)
            ).scalar()
            if keep_from is not None:
                conn.execute(sa.delete(request_logs).where(request_logs.c.started_at <= keep_from))

    async def flush(self) -> None:
        async with self._flushing:
            while self.queue:
                batch, held = self._take_batch()
                try:
                    if any(r.request_body is not None for r in batch):
                        # Captured bodies: redaction is real work, let the loop interleave.
                        rows = await asyncio.to_thread(self._rows, batch)
                    else:
                        rows = self._rows(batch)
                    if not self._write_now(rows):
                        await asyncio.to_thread(self._write_waiting, rows)
                    self.written += len(batch)
                    self.queue_bytes -= held
                    if self._failing:
                        self._failing = False
                        log.warning("monitor records are written again")
                except Exception:
                    # Said once (the store down for a minute is 60 flushes), then quietly
                    # retried at every flush until it works again.
                    if not self._failing:
                        log.exception(
                            "could not write %d monitor records; keeping them and retrying",
                            len(batch),
                        )
                    self._failing = True
                    self.queue.extendleft(reversed(batch))
                    self._bodied.extendleft(reversed([r for r in batch if _has_bodies(r)]))
                    return

    def _take_batch(self) -> tuple[list[RequestRecord], int]:
        """The next records to write: at most BATCH, and at most a quarter of the queue's
        bytes (a batch waiting for a lock cannot shed its bodies), but always one."""
        cap = self.settings().monitor_queue_max_bytes // 4
        batch: list[RequestRecord] = []
        held = 0
        while (
            self.queue
            and len(batch) < BATCH
            and (not batch or held + self.queue[0].queued_bytes <= cap)
        ):
            record = self.queue.popleft()
            if self._bodied and self._bodied[0] is record:
                self._bodied.popleft()  # out of the queue: no longer there to shed
            batch.append(record)
            held += record.queued_bytes
        return batch, held

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
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
            # that arrives as the event is set, and the shutdown would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if not self.queue and self._peak_bytes > TRIM_AFTER_BYTES:
                self._peak_bytes = 0
                await asyncio.to_thread(_give_back_memory)
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


def _without_nul(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """PostgreSQL's text cannot hold NUL, which a client can put in a path (%00) or a
    captured body: one would fail the whole batch, again at every retry. Replaced by
    U+FFFD, as undecodable bytes are."""
    return tuple(
        v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v for v in row
    )


def _has_bodies(record: RequestRecord) -> bool:
    return record.request_body is not None and record.request_body is not BODY_DROPPED


def _weigh(record: RequestRecord) -> int:
    """The record's size in the queue. Captures become exact-size `bytes` here, and the
    capture buffers are emptied: a grown bytearray holds spare capacity, and while the
    request's closures also held the buffers, 60 captured 1 MiB requests kept 150 MiB
    after the queue had shed their bodies."""
    record.request_body = _settled(record.request_body)
    record.response_body = _settled(record.response_body)
    return (
        RECORD_BYTES
        + len(record.error or "")
        + len(record.request_body or b"")
        + len(record.response_body or b"")
    )


def _settled(capture: bytes | bytearray | None) -> bytes | None:
    if not isinstance(capture, bytearray):
        return capture
    kept = bytes(capture)
    capture.clear()  # frees the buffer now, whoever still holds the bytearray
    return kept


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _load_libc()


def _give_back_memory() -> None:
    """Return the heap a drained queue freed to the system. glibc keeps freed memory
    for reuse: after a 32 MiB queue of captured bodies drained, RSS stayed 37 MiB up
    without this. A no-op on C libraries without `malloc_trim` (musl, macOS)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
