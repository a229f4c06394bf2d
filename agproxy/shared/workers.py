"""The processes serving one gateway, as `agproxy status` and the console list them, and
the proxy service switch that applies to every worker of one `agproxy serve --workers N`.

Each process writes a line about itself into one Redis hash every few seconds (host,
pid, its worker number, where it listens, whether the service runs, requests served);
a line not renewed for STALE_SECONDS is a process that is gone, and is dropped by
whoever reads it. Workers of one `serve` share a group id: a start or stop (with a new
port, say) made through any of them is published, and the others do the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from agproxy.shared.link import PREFIX, Link

log = logging.getLogger("agproxy.workers")

PROCESSES = PREFIX + "processes"
BEAT_SECONDS = 2.0
STALE_SECONDS = 10.0
WORKER_ENV = "AGPROXY_WORKER"  # "group:index:count", set by the parent for its workers


@dataclass(frozen=True)
class WorkerRole:
    """Which worker of which `agproxy serve --workers N` this process is."""

    group: str
    index: int
    count: int

    @classmethod
    def from_env(cls) -> WorkerRole | None:
        raw = os.environ.get(WORKER_ENV)
        if not raw:
            return None
        group, _, rest = raw.partition(":")
        index, _, count = rest.partition(":")
        return cls(group, int(index), int(count))

    def env(self) -> str:
        return f"{self.group}:{self.index}:{self.count}"


class Workers:
    def __init__(
        self,
        link: Link,
        role: WorkerRole | None,
        describe: Callable[[], dict[str, Any]],
        switch: Callable[[bool], Awaitable[Any]],
    ) -> None:
        self.link = link
        self.role = role
        self.describe = describe  # this process's line: where it listens, running, …
        self.switch = switch  # start (True) or stop (False) this process's service
        self.started_at = time.time()
        link.handlers["service"] = self._service_event
        link.on_up.append(self.beat)

    def me(self) -> dict[str, Any]:
        return {
            "id": self.link.me,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "group": self.role.group if self.role else self.link.me,
            "worker": self.role.index if self.role else 0,
            "started_at": self.started_at,
            "seen_at": time.time(),
            **self.describe(),
        }

    async def beat(self) -> None:
        line = orjson.dumps(self.me())
        await self.link.run(lambda r: r.hset(PROCESSES, self.link.me, line), None)

    async def run(self) -> None:
        """Renew this process's line until cancelled; remove it when cancelled."""
        if self.role is not None:
            await self._replace_predecessor()
        try:
            while True:
                await self.beat()
                await asyncio.sleep(BEAT_SECONDS)
        finally:
            await self.link.run(lambda r: r.hdel(PROCESSES, self.link.me), None)

    async def _lines(self) -> list[tuple[bytes, dict[str, Any] | None]]:
        """The process list's lines (None for one that is not a JSON object)."""
        raw: dict[bytes, bytes] = await self.link.run(lambda r: r.hgetall(PROCESSES), {})
        lines: list[tuple[bytes, dict[str, Any] | None]] = []
        for field, line in raw.items():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                entry = None
            lines.append((field, entry if isinstance(entry, dict) else None))
        return lines

    async def _replace_predecessor(self) -> None:
        """A worker started again in place of one that died (kill -9 leaves its line):
        the dead one's line goes now rather than when it turns stale."""
        assert self.role is not None
        gone = [
            field
            for field, entry in await self._lines()
            if entry is not None
            and (entry.get("group"), entry.get("worker")) == (self.role.group, self.role.index)
            and entry.get("id") != self.link.me
        ]
        if gone:
            await self.link.run(lambda r: r.hdel(PROCESSES, *gone), None)

    async def listing(self) -> list[dict[str, Any]]:
        """Every process sharing the Redis, this one first, then by host and worker; this
        one alone when Redis is not there."""
        me = self.me()
        now = time.time()
        found: list[dict[str, Any]] = []
        stale: list[bytes] = []
        for field, entry in await self._lines():
            seen_at = entry.get("seen_at") if entry is not None else None
            if (
                entry is None
                or not isinstance(seen_at, int | float)
                or now - seen_at > STALE_SECONDS
            ):
                stale.append(field)
            elif entry.get("id") != me["id"]:
                found.append(entry)
        if stale:
            self.link.soon(lambda r: r.hdel(PROCESSES, *stale))
        found.sort(key=lambda e: (str(e.get("host")), str(e.get("group")), str(e.get("worker"))))
        for entry in [me, *found]:
            entry["this_process"] = entry["id"] == me["id"]
            entry["same_serve"] = entry.get("group") == me["group"]
        return [me, *found]

    # -- one switch for every worker --------------------------------------------
    def switched(self, running: bool) -> None:
        """This process's service was started or stopped by hand: its siblings follow."""
        if self.role is not None and self.role.count > 1:
            self.link.publish("service", group=self.role.group, running=running)

    def _service_event(self, event: dict[str, Any]) -> None:
        if self.role is None or event.get("group") != self.role.group:
            return
        running = bool(event.get("running"))
        self.link.keep(self._follow(running))

    async def _follow(self, running: bool) -> None:
        try:
            await self.switch(running)
        except Exception as exc:  # StartError: this worker says why in its log
            log.warning(
                "worker %d could not %s the proxy service: %s",
                self.role.index if self.role else 0,
                "start" if running else "stop",
                getattr(exc, "message", exc),
            )
