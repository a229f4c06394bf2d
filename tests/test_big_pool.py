"""A pool of 1,000 accounts: picking behaves as in a small pool and costs the same.

The scheduler is built in memory (no store, no upstream) with clocks handed in, so each
test runs in milliseconds. The cost tests count what a pick reads (accounts examined,
clock reads), not wall time: they fail on any pick that walks the pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from agproxy.accounts.store import Account, ModelQuota
from agproxy.accounts.windows import QuotaWindow
from agproxy.config import Settings
from agproxy.pool import Pool
from agproxy.pool.scheduler import NoAccount, Scheduler

NOW = 1_000_000.0
HOUR = 3600.0
MODEL, OTHER = "claude-sonnet-4-6", "gemini-3-flash"
SIZE = 1000


class Clock:
    """Both of the scheduler's clocks, counting how often they are read."""

    def __init__(self) -> None:
        self.mono, self.wall, self.reads = 500.0, NOW, 0

    def monotonic(self) -> float:
        self.reads += 1
        return self.mono

    def time(self) -> float:
        self.reads += 1
        return self.wall


class Watched(Account):
    """An account that counts how often its quota data is read: once per account a pick
    examines (and once per account when a model's ring is built)."""

    examined = 0

    @property  # type: ignore[override]
    def quotas(self) -> list[ModelQuota]:
        Watched.examined += 1
        return Account.quotas.__get__(self)  # type: ignore[attr-defined,no-any-return]

    @quotas.setter
    def quotas(self, value: list[ModelQuota]) -> None:
        Account.quotas.__set__(self, value)  # type: ignore[attr-defined]


def account(
    n: int,
    fraction: float | None = 1.0,
    reset_at: float | None = NOW + HOUR,
    windows: tuple[QuotaWindow, ...] = (),
    models: tuple[str, ...] = (MODEL, OTHER),
    kind: type[Account] = Account,
) -> Account:
    return kind(
        id=f"id{n:04}",
        email=f"User{n}@Example.com",
        refresh_token="1//x",
        quotas=[ModelQuota(m, fraction if m == MODEL else 1.0, reset_at) for m in models],
        windows=list(windows),
    )


def scheduler(accounts: list[Account], **settings: Any) -> tuple[Scheduler, Clock]:
    pool = Pool(store=None)  # type: ignore[arg-type]  # never loaded: accounts set directly
    pool.accounts = tuple(accounts)
    clock = Clock()
    config = Settings(api_key="sk-test-000000", **settings)
    return Scheduler(pool, lambda: config, clock.monotonic, clock.time), clock


def picks(
    s: Scheduler, n: int, tried: set[str] | None = None, session: str | None = None
) -> list[str]:
    return [s.pick(MODEL, session, tried or set()).account.id for _ in range(n)]


# -- what keeps an account out of the rotation ---------------------------------------------
EMPTY_WEEKLY = QuotaWindow("3p-weekly", "3p", "weekly", 0.0, NOW + 3 * 24 * HOUR)
EMPTY_GEMINI_WEEKLY = QuotaWindow("gemini-weekly", "gemini", "weekly", 0.0, NOW + 3 * 24 * HOUR)
Setup = Callable[[int], Account]
Cool = Callable[[Scheduler, str], None]


def _none(_: Scheduler, __: str) -> None:
    return None


class Case(NamedTuple):
    what: str
    make: Setup = account
    cool: Cool = _none
    serves: bool = False
    refusal: str = ""  # NoAccount's message when every account is like this


CASES = [
    Case("free", serves=True),
    Case(
        "cooling down for the model",
        cool=lambda s, a: s.cooldowns.set(a, MODEL, 60),
        refusal=f"all accounts are rate limited for {MODEL}; retry in 60s",
    ),
    Case(
        "cooling down for every model",
        cool=lambda s, a: s.cooldowns.set(a, None, 90),
        refusal=f"all accounts are rate limited for {MODEL}; retry in 90s",
    ),
    Case(
        "cooling down for another model",
        cool=lambda s, a: s.cooldowns.set(a, OTHER, 60),
        serves=True,
    ),
    Case(
        "quota spent, its reset ahead",
        lambda n: account(n, fraction=None),
        refusal=f"no account has quota for {MODEL}",
    ),
    Case("quota spent, its reset passed", lambda n: account(n, None, NOW - 1), serves=True),
    Case(
        "quota spent, no reset time",
        lambda n: account(n, None, None),
        refusal=f"no account has quota for {MODEL}",
    ),
    Case(
        "below the protection floor (10 %)",
        lambda n: account(n, fraction=0.05),
        refusal=f"every account with quota for {MODEL} is below quota_protection_percent (10%)",
    ),
    Case(
        "weekly window empty",
        lambda n: account(n, windows=(EMPTY_WEEKLY,)),
        refusal="the weekly quota window for Claude and GPT models is empty",
    ),
    Case(
        "another group's weekly window empty",
        lambda n: account(n, windows=(EMPTY_GEMINI_WEEKLY,)),
        serves=True,
    ),
    Case(
        "the model not listed",
        lambda n: account(n, models=(OTHER,)),
        refusal=f"no account has quota for {MODEL}",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_the_rotation_covers_every_free_account_evenly(case: Case) -> None:
    # Every 10th account is in the state under test; the others are free.
    accounts = [case.make(n) if n % 10 == 0 else account(n) for n in range(SIZE)]
    s, _ = scheduler(accounts, quota_protection_percent=10)
    for a in accounts[::10]:
        case.cool(s, a.id)
    serving = accounts if case.serves else [a for n, a in enumerate(accounts) if n % 10]
    free = {a.id for a in serving}
    assert s.peek(MODEL) is not None and s.peek(MODEL).id in free  # type: ignore[union-attr]
    assert s.has_free(MODEL)
    assert Counter(picks(s, 3 * len(free))) == dict.fromkeys(free, 3)


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_a_pool_all_in_one_state_refuses_as_a_small_one_does(case: Case) -> None:
    accounts = [case.make(n) for n in range(SIZE)]
    s, _ = scheduler(accounts, quota_protection_percent=10)
    for a in accounts:
        case.cool(s, a.id)
    if case.serves:
        assert len(set(picks(s, SIZE))) == SIZE
        return
    assert not s.has_free(MODEL) and s.peek(MODEL) is None
    with pytest.raises(NoAccount) as refused:
        s.pick(MODEL, None, set())
    assert refused.value.message.startswith(case.refusal)


def test_accounts_tried_for_the_request_are_skipped() -> None:
    s, _ = scheduler([account(n) for n in range(SIZE)])
    tried = {f"id{n:04}" for n in range(0, SIZE, 2)}
    assert Counter(picks(s, SIZE, tried)) == {f"id{n:04}": 2 for n in range(1, SIZE, 2)}
    with pytest.raises(NoAccount, match="failed for this request"):
        s.pick(MODEL, None, {f"id{n:04}" for n in range(SIZE)})


def test_an_account_comes_back_when_its_quota_resets() -> None:
    accounts = [account(n, fraction=None) if n % 2 else account(n) for n in range(SIZE)]
    s, clock = scheduler(accounts)
    assert all(int(a[2:]) % 2 == 0 for a in picks(s, SIZE))
    clock.wall += HOUR  # the spent half resets
    assert len(set(picks(s, SIZE))) == SIZE


def test_a_quota_refreshed_in_place_is_seen_at_once() -> None:
    """The account's quota list is replaced by a refresh before the pool reloads."""
    accounts = [account(n) for n in range(SIZE)]
    s, _ = scheduler(accounts)
    picks(s, 10)
    for a in accounts[10:20]:
        a.quotas = [ModelQuota(MODEL, None, NOW + HOUR)]
    assert not {f"id{n:04}" for n in range(10, 20)} & set(picks(s, SIZE - 10))


# -- sticky sessions and fixed mode ------------------------------------------------------
def test_a_conversation_stays_on_its_account_and_waits_out_a_short_cooldown() -> None:
    s, _ = scheduler([account(n) for n in range(SIZE)], sticky_max_wait_seconds=2)
    picks(s, 123)  # the rotation has moved on
    first = s.pick(MODEL, "conversation", set()).account.id
    assert picks(s, 50, session="conversation") == [first] * 50
    s.cooldowns.set(first, MODEL, 1.5)
    waited = s.pick(MODEL, "conversation", set())
    assert (waited.account.id, waited.wait) == (first, 1.5)
    s.cooldowns.set(first, MODEL, 30)
    moved = s.pick(MODEL, "conversation", set()).account.id
    assert moved != first
    assert picks(s, 5, session="conversation") == [moved] * 5  # bound to the new account
    assert s.pick(MODEL, "conversation", {moved}).account.id not in (moved, first)


def test_round_robin_mode_ignores_conversations() -> None:
    s, _ = scheduler([account(n) for n in range(SIZE)], scheduling_mode="round_robin")
    assert len(set(picks(s, SIZE, session="conversation"))) == SIZE


@pytest.mark.parametrize("named", ["user700@example.com", "USER700@EXAMPLE.COM", "id0700"])
def test_fixed_mode_asks_the_preferred_account_while_it_is_free(named: str) -> None:
    s, _ = scheduler(
        [account(n) for n in range(SIZE)], scheduling_mode="fixed", preferred_account=named
    )
    assert picks(s, 20) == ["id0700"] * 20
    assert s.peek(MODEL) is not None and s.peek(MODEL).id == "id0700"  # type: ignore[union-attr]
    assert s.pick(MODEL, None, {"id0700"}).account.id != "id0700"  # tried: the rotation
    s.cooldowns.set("id0700", MODEL, 60)
    assert "id0700" not in picks(s, SIZE - 1)


def test_the_pool_reloaded_or_an_account_dropped_is_picked_from_at_once() -> None:
    accounts = [account(n) for n in range(SIZE)]
    s, _ = scheduler(accounts)
    picks(s, 10)
    s.pool.drop("id0011")
    assert "id0011" not in picks(s, SIZE)
    s.pool.accounts = (account(5000),)
    assert picks(s, 3) == ["id5000"] * 3


# -- what a pick costs -------------------------------------------------------------------
def examined_per_pick(accounts: list[Account], n: int, **settings: Any) -> tuple[float, float]:
    """Accounts examined and clock reads per pick, over `n` picks after a first one."""
    s, clock = scheduler(accounts, **settings)
    s.pick(MODEL, None, set())  # builds the model's ring: one look at each account
    Watched.examined, clock.reads = 0, 0
    picks(s, n)
    return Watched.examined / n, clock.reads / n


@pytest.mark.parametrize("size", [3, 100, 1000, 10_000])
def test_a_pick_examines_one_account_whatever_the_pool_size(size: int) -> None:
    examined, reads = examined_per_pick([account(n, kind=Watched) for n in range(size)], 300)
    assert examined == 1
    assert reads == examined_per_pick([account(n, kind=Watched) for n in range(3)], 300)[1]


def test_accounts_out_of_quota_are_not_examined_on_each_pick() -> None:
    """99 % of the pool spent: they wait outside the ring until their reset."""
    accounts = [account(n, None, kind=Watched) if n % 100 else account(n) for n in range(SIZE)]
    examined, _ = examined_per_pick(accounts, 300, quota_protection_percent=10)
    assert examined <= 1


def test_with_most_accounts_cooling_a_pick_examines_about_one_in_the_free_share() -> None:
    """90 % cooling down: about 10 accounts a pick, the walk grows only as the pool dries."""
    accounts = [account(n, kind=Watched) for n in range(SIZE)]
    s, _ = scheduler(accounts)
    for a in accounts:
        if int(a.id[2:]) % 10:
            s.cooldowns.set(a.id, MODEL, 600)
    s.pick(MODEL, None, set())
    Watched.examined = 0
    picks(s, 500)
    assert Watched.examined / 500 <= 10


def test_a_sticky_pick_and_has_free_examine_one_account() -> None:
    accounts = [account(n, kind=Watched) for n in range(SIZE)]
    s, _ = scheduler(accounts)
    s.pick(MODEL, "conversation", set())
    Watched.examined = 0
    picks(s, 100, session="conversation")
    assert Watched.examined == 100
    Watched.examined = 0
    assert all(s.has_free(MODEL) for _ in range(100))
    assert Watched.examined == 100
