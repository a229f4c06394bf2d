"""Client keys on the request path: which key a request came with, and whether its
limits let it through. The owner's `api_key` (and requests when auth is off) carry no
client key and pass without any of this.

- Disabled or expired keys are refused by the auth middleware (401, saying which).
- rpm, concurrency, tpm and daily tokens are checked when the request starts (429 with
  Retry-After, naming the limit and when it resets). A request is let in while the key's
  tokens (those reported, plus the estimates of its requests still running) are under
  the limit; it reserves its estimate then and settles it with the upstream's counts when
  it ends (keys/limits.py), so parallel requests cannot all slip under together.
- The model allow-list and the quota share are checked where the model is routed
  (`Gateway.route_model`): 403 listing the models the key may use; 429 for the share.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from agproxy.keys.limits import (
    DAY,
    DOWN,
    MINUTE,
    Counters,
    LocalCounters,
    Reservation,
    SharedRate,
    model_group,
)
from agproxy.keys.store import ClientKey, KeyStore, digest

CLIENT_KEY = "agproxy.client_key"  # the scope entry the auth middleware fills
CURRENT_KEY: ContextVar[ClientKey | None] = ContextVar("agproxy_client_key", default=None)
SHARE_FLOOR = 20_000  # tokens a group must have served before a share can be over


class KeyRefusal(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        if self.retry_after is None:
            return None
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def _wait(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _over_rate(key: ClientKey, wait: float) -> KeyRefusal:
    return KeyRefusal(
        429,
        f"rate limit of the client key {key.name!r} reached: {key.rpm} requests per minute; "
        f"it resets in {_wait(wait)}",
        wait,
    )


@dataclass
class Keys:
    store: KeyStore
    counters: Counters = field(default_factory=LocalCounters)
    clock: Callable[[], float] = time.time
    by_digest: dict[str, ClientKey] = field(default_factory=dict)
    shares: bool = False  # some key has a quota share: every request's use is counted
    revision: int = -1
    rates: SharedRate | None = None  # rpm across processes, when they share a Redis

    def load(self) -> None:
        revision = self.store.revision()
        keys = self.store.all()
        self.by_digest = {k.digest: k for k in keys}
        self.shares = any(k.quota_share is not None for k in keys)
        self.revision = revision

    def seed_today(self, spent: dict[str, int]) -> None:
        """Tokens each key (by name) used today before this process started, from the
        monitor's records: a restart does not hand a key a fresh daily allowance."""
        now = self.clock()
        by_name = {k.name: k for k in self.by_digest.values()}
        for name, tokens in spent.items():
            key = by_name.get(name)
            if key is not None and tokens > 0:
                self.counters.add_today(key.id, tokens, now)  # the day only, not the minute

    def reload_if_changed(self) -> bool:
        if self.store.revision() == self.revision:
            return False
        self.load()
        return True

    def lookup(self, presented: bytes) -> ClientKey | None:
        return self.by_digest.get(digest(presented)) if self.by_digest else None

    def refusal(self, key: ClientKey) -> str | None:
        """Why a known key may not be used at all (401), or None."""
        if not key.enabled:
            return f"the client key {key.name!r} is disabled; ask the gateway's owner"
        if key.expired(self.clock()):
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(key.expires_at or 0))
            return f"the client key {key.name!r} expired on {when}; ask the gateway's owner"
        return None

    async def admit_shared_rate(self, key: ClientKey) -> bool:
        """The key's rpm counted across every process sharing the Redis (KeyRefusal when
        over it): True when it was, False when this process counts it (no Redis)."""
        if self.rates is None or key.rpm is None:
            return False
        wait = await self.rates.admit(key.id, key.rpm)
        if wait == DOWN:
            return False
        if isinstance(wait, float):
            raise _over_rate(key, wait)
        return True

    def admit(
        self, key: ClientKey, estimate: int, rate_checked: bool = False
    ) -> Reservation | None:
        """The request counted against the key's limits, or KeyRefusal (429). `rate_checked`:
        its rpm was counted across processes already (`admit_shared_rate`)."""
        if not key.limited:
            return None
        now = self.clock()
        if key.rpm is not None and not rate_checked:
            wait = self.counters.admit_rate(key.id, key.rpm, now)
            if wait is not None:
                raise _over_rate(key, wait)
        self._check_tokens(key, now)
        if key.concurrency is not None and not self.counters.enter(key.id, key.concurrency):
            raise KeyRefusal(
                429,
                f"the client key {key.name!r} allows {key.concurrency} requests at once; "
                "one must finish first",
                1,
            )
        return self.counters.reserve(key.id, estimate, now)

    def _check_tokens(self, key: ClientKey, now: float) -> None:
        if key.tpm is not None:
            used = self.counters.tokens_last_minute(key.id, now)
            if used >= key.tpm:
                raise KeyRefusal(
                    429,
                    f"token limit of the client key {key.name!r} reached: {key.tpm} tokens per "
                    f"minute ({used} used in the last minute); it resets within a minute",
                    MINUTE,
                )
        if key.daily_tokens is not None:
            day = int(now // DAY)
            used = self.counters.tokens_today(key.id, day)
            if used >= key.daily_tokens:
                wait = (day + 1) * DAY - now
                raise KeyRefusal(
                    429,
                    f"daily token limit of the client key {key.name!r} reached: "
                    f"{key.daily_tokens} tokens a day ({used} used today); it resets at "
                    f"00:00 UTC, in {_wait(wait)}",
                    wait,
                )

    @contextlib.contextmanager
    def counted(
        self,
        key: ClientKey,
        estimate: int,
        used: Callable[[], tuple[str | None, int | None]],
        rate_checked: bool = False,
    ) -> Iterator[None]:
        """One request with `key`: counted against its limits (KeyRefusal when over one),
        the key current while it runs, settled with `used()` (the routed model and the
        tokens spent) when it ends."""
        held = self.admit(key, estimate, rate_checked)
        entered = CURRENT_KEY.set(key)
        try:
            yield
        finally:
            CURRENT_KEY.reset(entered)
            model, tokens = used()
            self.done(key, held, tokens)
            self.spent(key, model, tokens)

    def done(self, key: ClientKey, held: Reservation | None, tokens: int | None) -> None:
        if key.concurrency is not None and held is not None:
            self.counters.leave(key.id)
        if held is not None and tokens is not None:
            self.counters.settle(held, tokens)

    def spent(self, key: ClientKey | None, model: str | None, tokens: int | None) -> None:
        """A finished request's tokens, for quota shares (counted only when a key has one)."""
        if self.shares and model and tokens:
            self.counters.spend_group(
                key.id if key else "", model_group(model), tokens, self.clock()
            )

    def check_model(self, key: ClientKey, requested: str, routed: str | None) -> None:
        """May the key use this model (requested id, or the model it routes to)?"""
        if not (key.allows(requested) or (routed is not None and key.allows(routed))):
            raise KeyRefusal(
                403,
                f"the client key {key.name!r} may not use the model {requested!r}; it may use: "
                f"{', '.join(key.models)}",
            )
        if key.quota_share is None:
            return
        group = model_group(routed or requested)
        mine, total = self.counters.share(key.id, group, self.clock())
        if total >= SHARE_FLOOR and mine * 100 > key.quota_share * total:
            raise KeyRefusal(
                429,
                f"the client key {key.name!r} used {mine * 100 / total:.0f}% of the pool's "
                f"{group} tokens in the last 5 hours; its share is {key.quota_share:g}%. It "
                "frees up as the window moves on",
                600,
            )


def current_key() -> ClientKey | None:
    return CURRENT_KEY.get()
