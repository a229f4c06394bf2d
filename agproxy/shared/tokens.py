"""One token refresh per account across every process sharing the Redis.

Within a process, TokenManager already joins concurrent refreshes of an account into one.
Across processes, the one that takes the account's lock (`SET NX` with a deadline) calls
Google and puts the new access token in Redis for as long as it is valid; the others
wait for it there (polling every 50 ms) and use it. If the refresher dies, its lock
expires and the next one refreshes. With Redis down, each process refreshes for itself,
as a single process does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from agproxy.accounts.store import Account
from agproxy.shared.link import PREFIX, Link

LOCK_SECONDS = 30.0  # longer than a refresh with its retries takes
POLL_SECONDS = 0.05
# A token another process got is taken when it is valid for at least this long: it is as
# fresh as a refresh could make it.
FRESH_ENOUGH = 30.0
# Deleted only by its holder: a lock that expired and was taken by another stays theirs.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedRefresh:
    def __init__(self, link: Link) -> None:
        self.link = link
        self._release = link.client.register_script(RELEASE)

    async def refresh(
        self, account: Account, refresh_here: Callable[[Account], Awaitable[str]]
    ) -> str:
        """`account`'s new access token: from the process refreshing it, or refreshed here."""
        lock = f"{PREFIX}refresh:{account.id}"
        me = self.link.me
        deadline = time.monotonic() + LOCK_SECONDS
        while time.monotonic() < deadline:
            token = await self._taken(account)
            if token is not None:
                return token
            got = await self.link.run(
                lambda r: r.set(lock, self.link.me, nx=True, px=int(LOCK_SECONDS * 1000)), None
            )
            if got is None and not self.link.up:
                break  # Redis is gone: refresh here
            if got:
                try:
                    # Another may have refreshed and let go between the look and the lock.
                    token = await self._taken(account)
                    if token is not None:
                        return token
                    return await self._refresh_and_share(account, refresh_here)
                finally:
                    await self.link.run(lambda _r: self._release(keys=[lock], args=[me]), 0)
            await asyncio.sleep(POLL_SECONDS)
        return await refresh_here(account)

    async def _taken(self, account: Account) -> str | None:
        """A token another process refreshed (not the one this process holds), adopted."""
        raw = await self.link.run(lambda r: r.get(f"{PREFIX}token:{account.id}"), None)
        if raw is None:
            return None
        try:
            shared: dict[str, Any] = orjson.loads(raw)
            token, expires_at = str(shared["token"]), float(shared["expires_at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if token == account.access_token or expires_at - FRESH_ENOUGH <= time.time():
            return None
        account.access_token, account.access_token_expires_at = token, expires_at
        return token

    async def _refresh_and_share(
        self, account: Account, refresh_here: Callable[[Account], Awaitable[str]]
    ) -> str:
        token = await refresh_here(account)
        expires_at = account.access_token_expires_at or 0.0
        seconds = int(expires_at - time.time())
        if seconds > 0:
            value = orjson.dumps({"token": token, "expires_at": expires_at})
            key = f"{PREFIX}token:{account.id}"
            await self.link.run(lambda r: r.set(key, value, ex=seconds), None)
        return token
