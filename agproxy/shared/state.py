"""The shared parts wired to the gateway's (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agproxy.accounts.tokens import TokenManager
from agproxy.keys.gate import Keys
from agproxy.pool.policy import Policy
from agproxy.shared.link import Link
from agproxy.shared.pool import SharedPool
from agproxy.shared.rates import SharedRates
from agproxy.shared.tokens import SharedRefresh
from agproxy.shared.workers import WorkerRole, Workers


@dataclass
class Shared:
    link: Link
    pool: SharedPool
    workers: Workers

    async def start(self) -> None:
        await self.link.start()

    async def close(self) -> None:
        await self.link.close()


def share(
    url: str,
    policy: Policy,
    tokens: TokenManager,
    keys: Keys,
    role: WorkerRole | None,
    describe: Callable[[], dict[str, Any]],
    switch: Callable[[bool], Awaitable[Any]],
) -> Shared:
    """Hook the gateway's parts to the Redis at `url` (connected by `Shared.start`)."""
    link = Link(url)
    pool = SharedPool(link, policy.scheduler)
    policy.recall = pool.recall
    policy.announce = pool.announce
    tokens.shared = SharedRefresh(link)
    keys.rates = SharedRates(link)
    return Shared(link, pool, Workers(link, role, describe, switch))
