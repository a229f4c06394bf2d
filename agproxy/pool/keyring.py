"""A key-based provider's keys under the same resilience rules as the Google
pool's accounts (see policy.py): a key that is rate limited cools down for the delay the
provider gave (else a growing default) and the next key is tried; a key the provider
refuses (401/403) is set aside for a while; a failure of the request's own (a 5xx, a
transport error) moves on, and a key that failed that way is asked once more when no
other is left; a 400 is the client's to fix and is raised at once. When no key is left,
`Exhausted` says why, exactly as the pool does, so a front end can fail over to another
provider or answer with the same errors (frontends/failures.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from agproxy.monitor import note_attempt
from agproxy.pool.policy import (
    BACKOFF_STEPS,
    NOT_FOUND_COOLDOWN,
    REQUEST_FAILURES,
    TRANSIENT_BACKOFF,
    Exhausted,
)
from agproxy.pool.scheduler import Cooldowns, NoAccount
from agproxy.upstream import Failure, UpstreamError

log = logging.getLogger("agproxy.keyring")
T = TypeVar("T")

# A key the provider refused (wrong, revoked, out of credit) is not asked again for this
# long; changing the key in the settings gives a fresh ring at once.
REFUSED_COOLDOWN = 300.0


@dataclass(frozen=True, slots=True)
class KeyAttempt:
    key: str
    label: str  # how the monitor and the logs name the key: never the key itself
    model: str
    number: int


@dataclass
class _Tries:
    model: str
    tried: set[int] = field(default_factory=set)
    second_chance: list[int] = field(default_factory=list)
    last_error: UpstreamError | None = None


class KeyRing:
    """`keys` is read at every request (settings change at run time); a key's cooldowns
    follow its position, and are forgotten when the list changes."""

    def __init__(
        self,
        name: str,
        keys: Callable[[], Sequence[str]],
        default_cooldown: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        steps: Callable[[], Sequence[float]] = lambda: BACKOFF_STEPS,
        names: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.name = name
        self.keys = keys
        self.names = names  # each key's name, in the keys' order
        self.default_cooldown = default_cooldown
        self.steps = steps
        self.sleep = sleep
        self.cooldowns = Cooldowns(clock=clock)
        self.strikes: dict[tuple[int, str], int] = {}
        self._seen: tuple[str, ...] = ()
        self._turn = 0

    def _current(self) -> tuple[str, ...]:
        keys = tuple(k for k in self.keys() if k)
        if keys != self._seen:  # a key added, removed or replaced: a fresh start
            self._seen = keys
            self.cooldowns.clear()
            self.strikes.clear()
        return keys

    def label(self, index: int) -> str:
        names = self.names() if self.names is not None else ()
        if index < len(names):
            return names[index]
        return self.name if len(self._seen) <= 1 else f"{self.name} key {index + 1}"

    def has_free(self, model: str) -> bool:
        keys = self._current()
        return any(not self.cooldowns.remaining(str(i), model) for i in range(len(keys)))

    def _pick(self, tries: _Tries, keys: tuple[str, ...]) -> int | None:
        free = [
            i
            for i in range(len(keys))
            if i not in tries.tried and not self.cooldowns.remaining(str(i), tries.model)
        ]
        if not free:
            return None
        self._turn += 1
        return free[self._turn % len(free)]

    def _none_left(self, tries: _Tries, keys: tuple[str, ...]) -> NoAccount:
        if not keys:
            return NoAccount(f"no {self.name} key is configured")
        waits = [self.cooldowns.remaining(str(i), tries.model) for i in range(len(keys))]
        if all(waits):
            soonest = min(waits)
            return NoAccount(
                f"every {self.name} key is cooling down for {tries.model}; retry in {soonest:.0f}s",
                retry_after=soonest,
            )
        return NoAccount(f"every {self.name} key failed for this request")

    def _failed(self, tries: _Tries, index: int, error: UpstreamError) -> None:
        """What the error means for the key; raises it when the request is at fault."""
        model, key = tries.model, str(index)
        tries.tried.add(index)
        if error.kind in REQUEST_FAILURES:
            tries.second_chance.append(index)
        elif error.kind is Failure.RATE_LIMITED:
            strikes = self.strikes.get((index, model), 0)
            self.strikes[(index, model)] = strikes + 1
            steps = self.steps()
            step = steps[min(strikes, len(steps) - 1)]
            delay = error.retry_after if error.retry_after is not None else None
            self.cooldowns.set(key, model, max(delay or self.default_cooldown() * step, 1.0))
        elif error.kind in (Failure.AUTH_EXPIRED, Failure.FORBIDDEN):
            log.warning("%s refused %s: %s", self.name, self.label(index), error.message[:200])
            self.cooldowns.set(key, None, REFUSED_COOLDOWN)
        elif error.kind is Failure.NOT_FOUND:
            self.cooldowns.set(key, model, NOT_FOUND_COOLDOWN)
        else:
            raise error

    async def run(self, model: str, attempts: int, call: Callable[[KeyAttempt], Awaitable[T]]) -> T:
        """`call` with a key at a time until one succeeds; Exhausted when none is left."""
        keys = self._current()
        tries = _Tries(model)
        for number in range(attempts):
            index = self._pick(tries, keys)
            if index is None and tries.second_chance:
                index = tries.second_chance.pop(0)
                await self.sleep(TRANSIENT_BACKOFF * (0.5 + random.random()))
            if index is None:
                raise Exhausted(tries.last_error, self._none_left(tries, keys))
            label = self.label(index)
            try:
                result = await call(KeyAttempt(keys[index], label, model, number))
            except UpstreamError as error:
                tries.last_error = error
                note_attempt(label, f"{error.status} {error.kind.value}", model)
                log.info("attempt %d on %s for %s: %s", number + 1, label, model, error)
                self._failed(tries, index, error)
                continue
            self.strikes.pop((index, model), None)
            note_attempt(label, "ok", model)
            return result
        raise Exhausted(tries.last_error, None)
