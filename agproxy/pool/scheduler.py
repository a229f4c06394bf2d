"""Picking an account for a request: eligibility, cooldowns, rotation, sticky sessions.

Everything here is in memory; no database on the request path. Picking looks at one or
two accounts however big the pool is (see rotation.py); only the failure path (why no
account can serve) and the dashboard's figures walk the pool.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agproxy.accounts.store import Account
from agproxy.accounts.windows import GROUP_NAMES, model_group, weekly_blocked_until
from agproxy.config import Settings
from agproxy.pool.pool import Pool
from agproxy.pool.rotation import Rotation, ready_at

SESSION_TTL = 3600.0
MAX_SESSIONS = 10_000
ANY_MODEL = "*"
# A binding unchanged is told again this often (seconds), so the shared copy's expiry
# (SESSION_TTL) moves on while the conversation goes on.
SHARE_BIND_EVERY = 600.0
_NONE_TRIED: frozenset[str] = frozenset()


class NoAccount(Exception):
    """No account can serve now. `retry_after` (seconds) when one will be free soon."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass
class Cooldowns:
    """Until when an account (for one model, or for all) should not be asked."""

    until: dict[tuple[str, str], float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic  # handed in, so tests need not sleep
    revision: int = 0  # moves on every change: what the saver compares
    # Told of every cooldown set here (account id, model or "*", until on the wall clock)
    # and cleared here (until None): how other processes learn of them (shared/pool.py).
    on_change: Callable[[str, str, float | None], None] | None = None

    def set(self, account_id: str, model: str | None, seconds: float) -> None:
        key = (account_id, model or ANY_MODEL)
        until = self.until[key] = max(self.until.get(key, 0.0), self.clock() + seconds)
        self.revision += 1
        if self.on_change is not None:
            self.on_change(key[0], key[1], time.time() + (until - self.clock()))

    def apply(self, account_id: str, model: str, until: float | None) -> None:
        """A cooldown another process set (until, wall clock) or cleared (None)."""
        key = (account_id, model)
        if until is None:
            self.until.pop(key, None)
        else:
            self.until[key] = max(self.until.get(key, 0.0), self.clock() + until - time.time())
        self.revision += 1

    def remaining(self, account_id: str, model: str) -> float:
        now = self.clock()
        left = (
            max(
                self.until.get((account_id, model), 0.0),
                self.until.get((account_id, ANY_MODEL), 0.0),
            )
            - now
        )
        return left if left > 0 else 0.0

    def clear(self, account_id: str | None = None, model: str | None = None) -> int:
        """Forget cooldowns (all, an account's, or an account's for one model); how many."""
        keys = [
            k
            for k in self.until
            if (account_id is None or k[0] == account_id) and (model is None or k[1] == model)
        ]
        for key in keys:
            del self.until[key]
            if self.on_change is not None:
                self.on_change(key[0], key[1], None)
        self.revision += 1
        return len(keys)

    def export(self, wall_now: float) -> list[tuple[str, str, float]]:
        """The running cooldowns as (account id, model or "*", until on the wall clock)."""
        now = self.clock()
        return [(a, m, wall_now + (u - now)) for (a, m), u in self.until.items() if u > now]

    def restore(self, rows: list[tuple[str, str, float]], wall_now: float) -> None:
        """Cooldowns saved by `export` (in an earlier process), those still running."""
        now = self.clock()
        for account_id, model, until in rows:
            if until > wall_now:
                key = (account_id, model)
                self.until[key] = max(self.until.get(key, 0.0), now + (until - wall_now))

    def prune(self) -> None:
        now = self.clock()
        for key in [k for k, v in self.until.items() if v <= now]:
            del self.until[key]

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            {
                "account_id": a,
                "model": None if m == ANY_MODEL else m,
                "seconds_left": round(v - now, 1),
            }
            for (a, m), v in self.until.items()
            if v > now
        ]


def has_quota_for(account: Account, model: str, clock: Callable[[], float] = time.time) -> bool:
    """True when the account lists the model with quota left (or its reset has passed)."""
    for quota in account.quotas:
        if quota.model == model:
            if quota.remaining_fraction is not None and quota.remaining_fraction > 0:
                return True
            return quota.reset_at is not None and quota.reset_at <= clock()
    return False


@dataclass
class Pick:
    account: Account
    wait: float = 0.0  # sticky: wait this long for the bound account's short cooldown


class Scheduler:
    """`clock` (monotonic) times cooldowns and sessions, `wall_clock` compares with quota
    reset times and stamps last use; both are handed in so tests can move time at will."""

    def __init__(
        self,
        pool: Pool,
        settings: Callable[[], Settings],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.wall_clock = wall_clock
        self.cooldowns = Cooldowns(clock=clock)
        self.sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.last_used: dict[str, float] = {}
        self.last_ok: dict[str, float] = {}  # account id → monotonic time of its last success
        # Told when a conversation is bound to an account (again), for other processes.
        self.on_bind: Callable[[str, str], None] | None = None
        self.rotation = Rotation()

    def _floor(self) -> float:
        return self.settings().quota_protection_percent / 100

    def serving(self, model: str) -> list[Account]:
        """Accounts with quota for `model`, less those whose weekly window for the model's
        group is empty and those quota protection keeps back. Walks the model's accounts:
        for the failure path, not for picking."""
        now, floor = self.wall_clock(), self._floor()
        index = self.pool.index
        return [a for a in index.by_model.get(model, ()) if ready_at(a, model, now, floor) <= now]

    def has_free(self, model: str) -> bool:
        """Could an account serve `model` right now (quota and no cooldown)?"""
        return self._next_free(model, _NONE_TRIED) is not None

    def pick(self, model: str, session: str | None, tried: set[str]) -> Pick:
        """The account for the next attempt at `model`, or NoAccount."""
        settings = self.settings()
        preferred = self._preferred(model, tried, settings)
        if preferred is not None:
            return Pick(preferred)

        if session and settings.scheduling_mode != "round_robin":
            bound = self.pool.index.by_id.get(self._bound(session) or "")
            now = self.wall_clock()
            if (
                bound is not None
                and bound.id not in tried
                and ready_at(bound, model, now, self._floor()) <= now
            ):
                left = self.cooldowns.remaining(bound.id, model)
                if left <= settings.sticky_max_wait_seconds:
                    return Pick(bound, left)
                # cooling down for longer: give up stickiness

        found = self._next_free(model, tried)
        if found is None:
            raise self._why_none(model, self.serving(model), tried)
        at, account = found
        self.rotation.cursor[model] = at + 1
        if session and settings.scheduling_mode != "round_robin":
            self._bind(session, account.id)
        return Pick(account)

    def peek(self, model: str) -> Account | None:
        """The account a new conversation about `model` would get now (no side effects)."""
        preferred = self._preferred(model, _NONE_TRIED, self.settings())
        if preferred is not None:
            return preferred
        found = self._next_free(model, _NONE_TRIED)
        return None if found is None else found[1]

    def free_account(self, account_id: str, model: str) -> Account | None:
        """The pool's account with this id when it can serve `model` now (quota, weekly
        window, protection, no cooldown), else None."""
        account = self.pool.index.by_id.get(account_id)
        if account is None or not self._free(account, model, self.wall_clock(), self._floor()):
            return None
        return account

    def _free(self, account: Account, model: str, now: float, floor: float) -> bool:
        return ready_at(account, model, now, floor) <= now and not self.cooldowns.remaining(
            account.id, model
        )

    def _next_free(self, model: str, tried: AbstractSet[str]) -> tuple[int, Account] | None:
        """The first account free for this request in `model`'s ring, from its cursor, and
        where it sits. Each is checked again: a quota refresh may have emptied it since
        the ring was built."""
        now, floor = self.wall_clock(), self._floor()
        ring = self.rotation.ring(self.pool.index, model, now, floor)
        size = len(ring)
        start = self.rotation.cursor.get(model, 0)
        for step in range(size):
            at = (start + step) % size
            account = ring[at]
            if account.id not in tried and self._free(account, model, now, floor):
                return at, account
        return None

    def _preferred(self, model: str, tried: AbstractSet[str], settings: Settings) -> Account | None:
        """`fixed` mode: the preferred account (by id or email) when it is free."""
        if settings.scheduling_mode != "fixed" or not settings.preferred_account:
            return None
        now, floor = self.wall_clock(), self._floor()
        for account in self.pool.index.by_name.get(settings.preferred_account.lower(), ()):
            if account.id not in tried and self._free(account, model, now, floor):
                return account
        return None

    def _why_none(self, model: str, serving: list[Account], tried: set[str]) -> NoAccount:
        if not self.pool.accounts:
            return NoAccount("no Google account is available in the pool")
        waits = [self.cooldowns.remaining(a.id, model) for a in serving]
        if waits and all(waits):
            soonest = min(waits)
            return NoAccount(
                f"all accounts are rate limited for {model}; retry in {soonest:.0f}s",
                retry_after=soonest,
            )
        if tried:
            return NoAccount(f"every account able to serve {model} failed for this request")
        weekly = self._weekly_none(model)
        if weekly is not None:
            return weekly
        percent = self.settings().quota_protection_percent
        if percent and any(has_quota_for(a, model, self.wall_clock) for a in self.pool.accounts):
            return NoAccount(
                f"every account with quota for {model} is below "
                f"quota_protection_percent ({percent:g}%), kept for your own use"
            )
        return NoAccount(f"no account has quota for {model}")

    def _weekly_none(self, model: str) -> NoAccount | None:
        """NoAccount naming the weekly window when it is what keeps every account with
        quota for `model` away: when the soonest one resets."""
        now = self.wall_clock()
        blocked = [
            until
            for a in self.pool.accounts
            if has_quota_for(a, model, self.wall_clock)
            and (until := weekly_blocked_until(a.windows, model, now)) is not None
        ]
        if not blocked:
            return None
        group = model_group(model) or ""
        what = f"the weekly quota window for {GROUP_NAMES.get(group, group)} is empty"
        soonest = min(blocked)
        if math.isinf(soonest):
            return NoAccount(f"{what} on every account with quota for {model}")
        at = datetime.fromtimestamp(soonest, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return NoAccount(
            f"{what} on every account with quota for {model}; the first resets at {at} "
            f"(in {_span(soonest - now)})",
            retry_after=soonest - now,
        )

    def recovers_at(self, model: str) -> float | None:
        """Wall time the pool can next serve `model`: now when an account is free, else the
        soonest time one becomes schedulable again (a cooldown ending, its quota for the
        model resetting, its weekly window resetting); None when no known time."""
        now, floor = self.wall_clock(), self._floor()
        soonest = math.inf
        for account in self.pool.index.by_model.get(model, ()):
            ready = ready_at(account, model, now, floor)
            if not math.isinf(ready):
                soonest = min(
                    soonest, max(ready, now + self.cooldowns.remaining(account.id, model))
                )
        return None if math.isinf(soonest) else soonest

    # -- sticky sessions ---------------------------------------------------------
    def bound_to(self, session: str) -> str | None:
        """The account `session` is bound to here, while the binding lives."""
        return self._bound(session)

    def _bound(self, session: str) -> str | None:
        entry = self.sessions.get(session)
        if entry is None or self.clock() - entry[1] > SESSION_TTL:
            return None
        return entry[0]

    def _bind(self, session: str, account_id: str) -> None:
        now = self.clock()
        if self.on_bind is not None:
            before = self.sessions.get(session)
            if before is None or before[0] != account_id or now - before[1] > SHARE_BIND_EVERY:
                self.on_bind(session, account_id)
        self.sessions[session] = (account_id, now)
        self.sessions.move_to_end(session)
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)

    def adopt(self, session: str, account_id: str) -> None:
        """The account another process bound `session` to (shared/pool.py)."""
        entry = self.sessions.get(session)
        if entry is None or entry[0] != account_id:
            self.sessions[session] = (account_id, self.clock())
            self.sessions.move_to_end(session)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)

    def served_recently(self, account_id: str, within: float) -> bool:
        """Did the account answer a request successfully in the last `within` seconds?"""
        at = self.last_ok.get(account_id)
        return at is not None and self.clock() - at <= within

    def succeeded(self, account: Account, session: str | None) -> None:
        self.last_used[account.id] = self.wall_clock()
        self.last_ok[account.id] = self.clock()
        if session and self.settings().scheduling_mode != "round_robin":
            self._bind(session, account.id)

    def take_last_used(self) -> dict[str, float]:
        used, self.last_used = self.last_used, {}
        return used


def _span(seconds: float) -> str:
    """3d 4h, 5h 20m, 12m: how long until a reset, for messages."""
    minutes = max(0, int(seconds // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"
