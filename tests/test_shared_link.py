"""The Redis link itself, against a real redis-server: a burst larger than its connection
pool waits for connections instead of calling Redis "down"; a dead Redis is down at once
and back within about a second of returning."""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop

from agproxy.shared.link import MAX_CONNECTIONS, Link


def test_a_burst_bigger_than_the_pool_is_served_not_called_down(own_redis: Any) -> None:
    async def main() -> tuple[list[Any], bool]:
        link = Link(own_redis.url)
        await link.start()
        await link.run(lambda r: r.set("k", "v"), None)
        try:
            got = await asyncio.gather(
                *(link.run(lambda r: r.get("k"), "fallback") for _ in range(MAX_CONNECTIONS * 8))
            )
            return got, link.up
        finally:
            await link.close()

    got, up = uvloop.run(main())
    assert up and got == [b"v"] * (MAX_CONNECTIONS * 8)


def test_a_dead_redis_answers_the_fallback_and_comes_back(own_redis: Any) -> None:
    async def main() -> list[Any]:
        link = Link(own_redis.url)
        back = asyncio.Event()

        async def resynced() -> None:
            back.set()

        link.on_up.append(resynced)
        await link.start()
        back.clear()
        seen = [await link.run(lambda r: r.ping(), "fallback")]
        own_redis.kill()
        seen.append(await link.run(lambda r: r.ping(), "fallback"))
        seen.append((link.up, await link.run(lambda r: r.ping(), "fallback")))
        own_redis.start()
        await asyncio.wait_for(back.wait(), 5)
        seen.append(await link.run(lambda r: r.ping(), "fallback"))
        await link.close()
        return seen

    assert uvloop.run(main()) == [True, "fallback", (False, "fallback"), True]
