"""Which of a model's accounts their quota data lets serve, and whose turn is next.

The scheduler asks on every request, so nothing here walks the pool per request. Each
model keeps a ring: the accounts whose quota data lets them serve it now, in the user's
order. The ring is built again only when the pool changes (a new Index), when the
protection floor changes, or when the soonest time one left out could come back has
passed (its model quota or weekly window resets). A pick walks the ring from the
model's cursor and takes the first account free for the request (not cooling down, not
tried): with most accounts free that is the first or second, so a pool of 1,000 costs
what a pool of 3 does (bench/pool_size.py). With a share f of the ring cooling down a
pick looks at about 1/(1-f) accounts: the walk grows only as the pool runs dry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agproxy.accounts.store import Account
from agproxy.accounts.windows import weekly_blocked_until
from agproxy.pool.pool import Index


def ready_at(account: Account, model: str, now: float, floor: float) -> float:
    """When the account's quota data lets it serve `model`: `now` when it can already,
    else when its quota for the model or its weekly window resets (the later of both);
    math.inf when it does not list the model, when quota protection keeps it back
    (known remaining quota below `floor`, a fraction), or when no reset time is known."""
    for quota in account.quotas:
        if quota.model == model:
            break
    else:
        return math.inf
    fraction = quota.remaining_fraction
    if floor and fraction is not None and fraction < floor:
        return math.inf  # the rest is left to the account's owner
    ready = now
    if fraction is None or fraction <= 0:  # exhausted: usable again once it resets
        if quota.reset_at is None:
            return math.inf
        ready = max(ready, quota.reset_at)
    weekly = weekly_blocked_until(account.windows, model, now)
    return ready if weekly is None else max(ready, weekly)


@dataclass(frozen=True, slots=True)
class Ring:
    """One model's accounts that may serve it, as the quota data said when built."""

    index: Index  # built from this pool
    floor: float  # with this quota protection floor
    accounts: tuple[Account, ...]
    until: float  # wall time the soonest account left out may come back: build again then

    @classmethod
    def of(cls, index: Index, model: str, now: float, floor: float) -> Ring:
        ready: list[Account] = []
        until = math.inf
        for account in index.by_model.get(model, ()):
            at = ready_at(account, model, now, floor)
            if at <= now:
                ready.append(account)
            else:
                until = min(until, at)
        return cls(index, floor, tuple(ready), until)


class Rotation:
    """Per model, the ring and the cursor: where the next walk starts."""

    def __init__(self) -> None:
        self.rings: dict[str, Ring] = {}
        self.cursor: dict[str, int] = {}

    def ring(self, index: Index, model: str, now: float, floor: float) -> tuple[Account, ...]:
        ring = self.rings.get(model)
        if ring is None or ring.index is not index or ring.floor != floor or now >= ring.until:
            ring = self.rings[model] = Ring.of(index, model, now, floor)
        return ring.accounts
