"""The one connection to Redis that the processes of a gateway share state through, built
so that Redis going away never fails a request.

Every call goes through `Link.run(operation, fallback)`. While Redis answers, the
operation runs (each with a short timeout). When Redis does not answer (refused, reset,
timed out), the link is down: one warning is logged, every later call returns its
fallback at once without trying, and one background task pings Redis every second.
When it answers again the link is up, the `on_up` callbacks re-sync what each part
keeps there, and one line says so.

Events between processes go over one pub/sub channel as small JSON objects
(`{"from": process id, "kind": …}`); a process ignores its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.retry import Retry

from agproxy.addresses import mask_url

log = logging.getLogger("agproxy.shared")

PREFIX = "agproxy:"
CHANNEL = PREFIX + "events"
TIMEOUT = 0.5  # one Redis call; on loopback or a LAN it answers in well under a millisecond
RECONNECT_SECONDS = 1.0
# What counts as "Redis is not there": its own errors, and the socket's.
DOWN = (RedisError, OSError, asyncio.TimeoutError)

MAX_CONNECTIONS = 64
Handler = Callable[[dict[str, Any]], None]


def _busy(exc: BaseException) -> bool:
    """The pool had no connection free within the timeout (Redis itself answered)."""
    return isinstance(exc, MaxConnectionsError) or (
        isinstance(exc, RedisConnectionError) and str(exc) == "No connection available."
    )


def process_id() -> str:
    """This process among all those sharing the Redis: host, pid and a random part (a pid
    is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Link:
    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.shown_url = mask_url(url) or url
        self.me = process_id()
        # A bounded pool that makes a call wait (briefly) for a connection: a burst of a
        # thousand requests shares a few dozen connections instead of failing past 100.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # a refused call is an answer: down, now
            health_check_interval=0,
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.up = False
        self.handlers: dict[str, Handler] = {}
        self.on_up: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watching: asyncio.Task[None] | None = None
        self._closed = False

    # -- calls -------------------------------------------------------------------
    async def run(self, operation: Callable[[Any], Awaitable[Any]], fallback: Any) -> Any:
        """`operation` on Redis, or `fallback` when Redis is down (now, or by this call)."""
        if not self.up:
            return fallback
        try:
            return await operation(self.client)
        except DOWN as exc:
            if _busy(exc):  # every connection is in use: Redis is there, this call skips it
                return fallback
            self._went_down(exc)
            return fallback

    def soon(self, operation: Callable[[Any], Awaitable[Any]]) -> None:
        """`operation` in the background, off the request path (its failure marks the link
        down like any other)."""
        if self.up:
            self.keep(self.run(operation, None))

    def publish(self, kind: str, **fields: Any) -> None:
        message = orjson.dumps({"from": self.me, "kind": kind, **fields})
        self.soon(lambda r: r.publish(CHANNEL, message))

    # -- up and down -------------------------------------------------------------
    async def start(self) -> None:
        """Connect (or start trying to), and listen to the other processes' events."""
        try:
            await self.client.ping()
        except DOWN as exc:
            self._went_down(exc, first=True)
            return
        await self._came_up(first=True)

    def _went_down(self, exc: BaseException, first: bool = False) -> None:
        if not self.up and not first:
            return
        self.up = False
        log.warning(
            "Redis at %s %s (%s): carrying on with this process's own state; retrying every %.0f s",
            self.shown_url,
            "is not reachable" if first else "went away",
            type(exc).__name__,
            RECONNECT_SECONDS,
        )
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None
        self.keep(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECONNECT_SECONDS)
            try:
                await self.client.ping()
            except DOWN:
                continue
            await self._came_up(first=False)
            return

    async def _came_up(self, first: bool) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
        except DOWN as exc:
            with contextlib.suppress(*DOWN):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            self.up = True  # so that _went_down logs and schedules the retry
            self._went_down(exc)
            return
        self.up = True
        self._watching = self.keep(self._listen(pubsub))
        for resync in self.on_up:
            try:
                await resync()
            except DOWN as exc:
                self._went_down(exc)
                return
        if not first:
            log.info("Redis at %s is back: shared state re-synced", self.shown_url)

    async def _listen(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None or message.get("type") != "message":
                    continue
                self._dispatch(message["data"])
        except asyncio.CancelledError:
            raise
        except DOWN as exc:
            self._watching = None
            self._went_down(exc)
        finally:
            with contextlib.suppress(*DOWN, asyncio.CancelledError):
                await asyncio.shield(pubsub.aclose())

    def _dispatch(self, data: bytes) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict) or event.get("from") == self.me:
            return
        handler = self.handlers.get(str(event.get("kind")))
        if handler is None:
            return
        try:
            handler(event)
        except Exception:  # one bad event must not stop the listener
            log.exception("could not apply the shared event %r", event.get("kind"))

    def keep(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*DOWN):
            await self.client.aclose()
