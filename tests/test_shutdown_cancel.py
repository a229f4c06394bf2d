"""Background loops end when cancelled, even when the cancel arrives in the same loop step
as the event they wait for (on Python 3.11, asyncio.wait_for swallowed such a cancel and
a gateway's shutdown waited for the loop forever)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvloop

from agproxy.config import Settings
from agproxy.db import open_database
from agproxy.monitor.writer import MonitorWriter
from agproxy.pool.pool import Pool
from agproxy.pool.scheduler import Scheduler
from agproxy.shared.link import Link
from agproxy.shared.pool import SharedPool

SETTINGS = Settings(api_key="sk-test-000000")


def ends_when_cancelled(start: Any, wake: Any) -> bool:
    async def main() -> bool:
        task = asyncio.create_task(start())
        await asyncio.sleep(0.05)
        wake()  # the event is set…
        task.cancel()  # …in the same step as the shutdown's cancel
        done, _ = await asyncio.wait([task], timeout=3)
        return bool(done)

    return uvloop.run(main())


def test_the_monitor_writer_stops(tmp_path: Path) -> None:
    engine = open_database(tmp_path / "t.db")
    try:
        writer = MonitorWriter(engine, lambda: SETTINGS)
        assert ends_when_cancelled(writer.run, writer._wake.set)
    finally:
        engine.dispose()


def test_the_shared_state_watchers_stop(tmp_path: Path) -> None:
    shared: list[SharedPool] = []

    async def watch() -> None:
        shared.append(
            SharedPool(Link("redis://127.0.0.1:1/0"), Scheduler(Pool(None), lambda: SETTINGS))
        )  # type: ignore[arg-type]
        while True:
            await shared[0].wait_change("accounts", 1.0)

    assert ends_when_cancelled(watch, lambda: shared[0].changed["accounts"].set())
