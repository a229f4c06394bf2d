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
    in_minute: bool = True  # still inside the key's last-minute window


@dataclass(slots=True)
class Minute:
    """Tokens the pool served for a model group in one minute, in all and per key ("" for
    the owner): minutes, not requests, so a busy pool's 5-hour window stays small."""

    minute: int
    total: int = 0
    by_key: dict[str, int] = field(default_factory=dict)


# A shared counter's answer when it cannot count (its store is away): count locally.
DOWN = "down"


class SharedRate(Protocol):
    """A key's requests per minute counted across processes (shared/rates.py)."""

    async def admit(self, key_id: str, limit: int) -> float | None | str:
        """None: admitted; seconds to wait; or DOWN."""


class Counters(Protocol):
    def admit_rate(self, key_id: str, limit: int, now: float) -> float | None:
        """Count a request against `limit` per minute; None, or seconds to wait."""

    def enter(self, key_id: str, limit: int) -> bool:
        """Take one of `limit` slots for a request in flight; False when all are taken."""

    def leave(self, key_id: str) -> None: ...

    def tokens_last_minute(self, key_id: str, now: float) -> int: ...

    def tokens_today(self, key_id: str, day: int) -> int: ...

    def add_today(self, key_id: str, tokens: int, now: float) -> None:
        """Tokens used today before this process counted (read back from the monitor)."""

    def share(self, key_id: str, group: str, now: float) -> tuple[int, int]:
        """(the key's tokens, everyone's tokens) for the model group in SHARE_WINDOW."""

    def spend_group(self, key_id: str, group: str, tokens: int, now: float) -> None:
        """What a finished request used of a model group (every request, the owner's too)."""

    def reserve(self, key_id: str, tokens: int, now: float) -> Reservation: ...

    def settle(self, reservation: Reservation, tokens: int) -> None: ...


@dataclass
class _Window:
    """A model group's last SHARE_WINDOW of use, with its sums kept as it moves."""

    minutes: deque[Minute] = field(default_factory=deque)
    total: int = 0
    by_key: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def move_to(self, minute: int) -> None:
        while self.minutes and self.minutes[0].minute <= minute - SHARE_WINDOW // MINUTE:
            gone = self.minutes.popleft()
            self.total -= gone.total
            for key_id, tokens in gone.by_key.items():
                self.by_key[key_id] -= tokens


class LocalCounters:
    """Every operation is O(1) (amortized): sliding windows keep their sums as they move."""

    def __init__(self) -> None:
        self.calls: defaultdict[str, deque[float]] = defaultdict(deque)
        self.inflight: defaultdict[str, int] = defaultdict(int)
        self.spent: defaultdict[str, deque[Reservation]] = defaultdict(deque)  # last minute
        self.minute_total: defaultdict[str, int] = defaultdict(int)
        self.days: dict[str, tuple[int, int]] = {}  # key → (UTC day, tokens that day)
        self.pool: defaultdict[str, _Window] = defaultdict(_Window)  # per model group

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

    def tokens_last_minute(self, key_id: str, now: float) -> int:
        entries = self.spent[key_id]
        while entries and entries[0].at < now - MINUTE:
            gone = entries.popleft()
            gone.in_minute = False
            self.minute_total[key_id] -= gone.tokens
        return self.minute_total[key_id]

    def tokens_today(self, key_id: str, day: int) -> int:
        seen = self.days.get(key_id)
        return seen[1] if seen is not None and seen[0] == day else 0

    def add_today(self, key_id: str, tokens: int, now: float) -> None:
        self._add_day(key_id, int(now // DAY), tokens)

    def share(self, key_id: str, group: str, now: float) -> tuple[int, int]:
        window = self.pool[group]
        window.move_to(int(now // MINUTE))
        return window.by_key.get(key_id, 0), window.total

    def spend_group(self, key_id: str, group: str, tokens: int, now: float) -> None:
        minute = int(now // MINUTE)
        window = self.pool[group]
        if not window.minutes or window.minutes[-1].minute != minute:
            window.move_to(minute)
            window.minutes.append(Minute(minute))
        bucket = window.minutes[-1]
        bucket.total += tokens
        bucket.by_key[key_id] = bucket.by_key.get(key_id, 0) + tokens
        window.total += tokens
        window.by_key[key_id] += tokens

    def reserve(self, key_id: str, tokens: int, now: float) -> Reservation:
        self.tokens_last_minute(key_id, now)  # moves the window first
        reservation = Reservation(key_id, now, tokens, int(now // DAY))
        self.spent[key_id].append(reservation)
        self.minute_total[key_id] += tokens
        self._add_day(key_id, reservation.day, tokens)
        return reservation

    def settle(self, reservation: Reservation, tokens: int) -> None:
        change = tokens - reservation.tokens
        if reservation.in_minute:
            self.minute_total[reservation.key_id] += change
        self._add_day(reservation.key_id, reservation.day, change)
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
