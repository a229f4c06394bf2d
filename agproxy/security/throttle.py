"""Failed authentications slow their sender down: exponential backoff per client address.

The first FREE_FAILURES mistakes cost nothing (a client with a stale key must be able
to say so in its own error). After that each failure blocks the address for twice as
long as the one before, up to MAX_BLOCK; while blocked, every request from it is
refused without looking at its key, so guessing stops being worth anything. A quiet
address is forgotten after FORGET_AFTER; the table is capped so that a spray of
addresses cannot grow it without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 10
FIRST_BLOCK = 1.0
MAX_BLOCK = 300.0
FORGET_AFTER = 900.0
MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Record:
    failures: int
    last: float
    blocked_until: float


class AuthThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._clients: OrderedDict[str, _Record] = OrderedDict()

    def blocked_for(self, address: str) -> float:
        """Seconds this address must still wait; 0 when it may try."""
        record = self._clients.get(address)
        if record is None:
            return 0.0
        now = self.clock()
        if now - record.last > FORGET_AFTER:
            del self._clients[address]
            return 0.0
        return max(0.0, record.blocked_until - now)

    def failed(self, address: str) -> tuple[int, float]:
        """Count a failure; returns (failures in a row, seconds the address is now blocked)."""
        now = self.clock()
        record = self._clients.pop(address, None)
        if record is None or now - record.last > FORGET_AFTER:
            record = _Record(0, now, 0.0)
        record.failures += 1
        record.last = now
        block = 0.0
        if record.failures > FREE_FAILURES:
            block = min(FIRST_BLOCK * 2 ** (record.failures - FREE_FAILURES - 1), MAX_BLOCK)
            record.blocked_until = now + block
        self._clients[address] = record  # most recent last: the oldest are evicted first
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        return record.failures, block

    def succeeded(self, address: str) -> None:
        if self._clients:
            self._clients.pop(address, None)
