"""The counters behind client keys' limits, behind one small interface (`Counters`) that a
shared backend (Redis, issue 16) can implement for several processes. `LocalCounters` is
exact within one process and costs a few dictionary operations per request.

Tokens are counted from what the upstream reports: a request reserves an estimate when
it starts (its body's size / 4) and settles it with the real input + output tokens when
it ends, so a burst of parallel requests cannot all slip under a limit before any of them
has finished.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Protocol

MINUTE = 60.0
DAY = 86_400.0
SHARE_WINDOW = 5 * 3600.0  # quota share: the pool's short quota window


@dataclass(slots=True)
class Reservation:
    """Tokens a request holds against its key's limits; settled when it ends."""

    key_id: str
    at: float
    tokens: int
    day: int


@dataclass(slots=True)
class Minute:
    """Tokens the pool served for a model group in one minute, in all and per key ("" for
    the owner): minutes, not requests, so a busy pool's 5-hour window stays small."""

    minute: int
    total: int = 0
    by_key: dict[str, int] = field(default_factory=dict)


class Counters(Protocol):
    def admit_rate(self, key_id: str, limit: int, now: float) -> float | None:
        """Count a request against `limit` per minute; None, or seconds to wait."""

    def enter(self, key_id: str, limit: int) -> bool:
        """Take one of `limit` slots for a request in flight; False when all are taken."""

    def leave(self, key_id: str) -> None: ...

    def tokens_since(self, key_id: str, since: float) -> int: ...

    def tokens_today(self, key_id: str, day: int) -> int: ...

    def share(self, key_id: str, group: str, now: float) -> tuple[int, int]:
        """(the key's tokens, everyone's tokens) for the model group in SHARE_WINDOW."""

    def spend_group(self, key_id: str, group: str, tokens: int, now: float) -> None:
        """What a finished request used of a model group (every request, the owner's too)."""

    def reserve(self, key_id: str, tokens: int, now: float) -> Reservation: ...

    def settle(self, reservation: Reservation, tokens: int) -> None: ...


class LocalCounters:
    def __init__(self) -> None:
        self.calls: defaultdict[str, deque[float]] = defaultdict(deque)
        self.inflight: defaultdict[str, int] = defaultdict(int)
        self.spent: defaultdict[str, deque[Reservation]] = defaultdict(deque)  # per key
        self.pool: defaultdict[str, deque[Minute]] = defaultdict(deque)  # per model group
        self.days: dict[str, tuple[int, int]] = {}  # key → (UTC day, tokens that day)

    def admit_rate(self, key_id: str, limit: int, now: float) -> float | None:
        calls = self.calls[key_id]
        while calls and calls[0] <= now - MINUTE:
            calls.popleft()
        if len(calls) >= limit:
            return calls[0] + MINUTE - now
        calls.append(now)
        return None

    def enter(self, key_id: str, limit: int) -> bool:
        if self.inflight[key_id] >= limit:
            return False
        self.inflight[key_id] += 1
        return True

    def leave(self, key_id: str) -> None:
        self.inflight[key_id] = max(0, self.inflight[key_id] - 1)

    def tokens_since(self, key_id: str, since: float) -> int:
        return sum(r.tokens for r in reversed(self.spent[key_id]) if r.at >= since)

    def tokens_today(self, key_id: str, day: int) -> int:
        seen = self.days.get(key_id)
        return seen[1] if seen is not None and seen[0] == day else 0

    def share(self, key_id: str, group: str, now: float) -> tuple[int, int]:
        since = int((now - SHARE_WINDOW) // MINUTE)
        mine = total = 0
        for bucket in self.pool[group]:
            if bucket.minute > since:
                total += bucket.total
                mine += bucket.by_key.get(key_id, 0)
        return mine, total

    def spend_group(self, key_id: str, group: str, tokens: int, now: float) -> None:
        minute = int(now // MINUTE)
        buckets = self.pool[group]
        if not buckets or buckets[-1].minute != minute:
            while buckets and buckets[0].minute <= minute - SHARE_WINDOW // MINUTE:
                buckets.popleft()
            buckets.append(Minute(minute))
        bucket = buckets[-1]
        bucket.total += tokens
        bucket.by_key[key_id] = bucket.by_key.get(key_id, 0) + tokens

    def reserve(self, key_id: str, tokens: int, now: float) -> Reservation:
        day = int(now // DAY)
        reservation = Reservation(key_id, now, tokens, day)
        entries = self.spent[key_id]  # for the last minute only: days have their own sum
        while entries and entries[0].at < now - MINUTE:
            entries.popleft()
        entries.append(reservation)
        self._add_day(key_id, day, tokens)
        return reservation

    def settle(self, reservation: Reservation, tokens: int) -> None:
        self._add_day(reservation.key_id, reservation.day, tokens - reservation.tokens)
        reservation.tokens = tokens

    def _add_day(self, key_id: str, day: int, tokens: int) -> None:
        seen_day, total = self.days.get(key_id, (day, 0))
        self.days[key_id] = (day, (total if seen_day == day else 0) + tokens)


def model_group(model: str | None) -> str:
    """The quota group a model draws on: Gemini, or the third-party models (Claude, GPT)."""
    lowered = (model or "").lower()
    return "3p" if lowered.startswith(("claude", "gpt")) else "gemini"


def now() -> float:
    return time.time()
