"""Client keys' request-per-minute limits, exact across every process sharing the Redis.

Each key's requests of the last minute are one sorted set (member: a unique request id,
score: Redis's own clock, so hosts whose clocks differ still agree). One script drops
what is older than a minute, counts, and admits or says how long to wait, atomically:
two processes cannot both take the last slot. With Redis down, the process's own
counter decides (keys/limits.py), as with a single process.
"""

from __future__ import annotations

import itertools

from agproxy.keys.limits import DOWN
from agproxy.shared.link import PREFIX, Link

ADMIT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - 60)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(first[2]) + 60 - t)
end
redis.call('ZADD', KEYS[1], t, ARGV[2])
redis.call('EXPIRE', KEYS[1], 61)
return ''
"""


class SharedRates:
    def __init__(self, link: Link) -> None:
        self.link = link
        self._admit = link.client.register_script(ADMIT)
        self._ids = itertools.count()

    async def admit(self, key_id: str, limit: int) -> float | None | str:
        """None: admitted; seconds to wait; or DOWN (Redis is not there: count locally)."""
        member = f"{self.link.me}:{next(self._ids)}"
        answer = await self.link.run(
            lambda r: self._admit(keys=[f"{PREFIX}rpm:{key_id}"], args=[limit, member]), DOWN
        )
        if answer == DOWN:
            return DOWN
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        return float(text) if text else None
