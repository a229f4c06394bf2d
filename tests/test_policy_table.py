"""What `Policy.run` does with each upstream outcome, as a table.

Each row lists what the upstream answers, attempt by attempt, and what must follow: the
result, which accounts were asked in order, which cooldowns were set and for how long,
which tokens were refreshed, and how long the policy waited. The scheduler, pool, store
and token manager are the real ones (SQLite in a temporary directory; token refreshes go
to the fake Google over HTTP); the clock, the sleep and the `call` passed to `Policy.run`
(the upstream seam) are the only fakes, so the whole table runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fake_google import Fault
from sqlalchemy import Engine

from agproxy.accounts import Status, build_account_service
from agproxy.accounts.store import ModelQuota
from agproxy.accounts.windows import QuotaWindow
from agproxy.config import Settings
from agproxy.db import open_database
from agproxy.pool import Pool
from agproxy.pool.policy import Attempt, Exhausted, Policy
from agproxy.pool.scheduler import Scheduler
from agproxy.upstream import Failure, UpstreamError
from agproxy.upstream.errors import classify

MODEL = "gemini-3-flash"
NAMES = "abcde"


class Clock:
    """Time that moves only when the policy sleeps or a row says so."""

    def __init__(self) -> None:
        self.mono = 1_000.0
        self.wall = time.time()
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


OK = "ok"
TRANSPORT = "transport"


def answer(outcome: Fault | str) -> UpstreamError | None:
    """The error the upstream client raises for this answer (None: a success)."""
    if outcome == OK:
        return None
    if outcome == TRANSPORT:  # as upstream/cloudcode.py's _transport builds it
        return UpstreamError(Failure.TRANSPORT, 502, "the upstream could not be reached")
    assert isinstance(outcome, Fault)
    return classify(
        outcome.status, orjson.dumps(outcome.body(MODEL)), outcome.headers.get("retry-after")
    )


@dataclass(frozen=True)
class Request:
    answers: tuple[Fault | str, ...]  # what the upstream says, attempt by attempt
    result: str  # "ok", "error 400", "exhausted 503 no_account"…
    tried: str  # accounts asked, in order ("aab")
    cooled: dict[str, float] = field(default_factory=dict)  # account -> seconds, after
    refreshed: str = ""  # accounts whose token was refreshed
    slept: tuple[float, ...] = ()  # the waits, other than jittered pauses
    jittered: int = 0  # pauses of 0.25 s ± 50% before a second chance
    session: str | None = None
    cooling_first: dict[str, float] = field(default_factory=dict)  # before the request


@dataclass(frozen=True)
class Row:
    name: str
    requests: tuple[Request, ...]
    accounts: int = 2
    settings: dict[str, Any] = field(default_factory=dict)
    quota_reset_in: float | None = None  # every account's quota for MODEL resets then
    revoked: str = ""  # refresh tokens Google refuses (invalid_grant)
    gone: dict[str, Status] = field(default_factory=dict)  # out of the pool afterwards
    advance: float = 0.0  # seconds the clock moves between requests
    weekly_empty: str = ""  # accounts whose weekly window for MODEL is empty for a day


def one(answers: tuple[Fault | str, ...], result: str, tried: str, **kw: Any) -> tuple[Request]:
    return (Request(answers, result, tried, **kw),)


BARE_429 = Fault.rate_limited()
E500, E503 = Fault.server_error(500), Fault.server_error(503)
ROWS = [
    Row("success", one((OK,), "ok", "a")),
    Row(
        "429 with a retry delay cools the account for it, next account serves",
        one((Fault.rate_limited(retry_delay="7s"), OK), "ok", "ab", cooled={"a": 7}),
    ),
    Row(
        "429 with a sub-second retry delay cools for at least a second",
        one((Fault.rate_limited(retry_delay="0.2s"), OK), "ok", "ab", cooled={"a": 1}),
    ),
    Row(
        "429 naming the quota reset delay cools until then",
        one((Fault.rate_limited(quota_reset_delay="1m30s"), OK), "ok", "ab", cooled={"a": 90}),
    ),
    Row(
        "bare 429: the account's known quota reset time sets the cooldown",
        one((BARE_429, OK), "ok", "ab", cooled={"a": 90}),
        quota_reset_in=90,
    ),
    Row(
        "bare 429: a quota reset hours away cools for an hour at most",
        one((BARE_429, OK), "ok", "ab", cooled={"a": 3600}),
        quota_reset_in=7200,
    ),
    Row(
        "bare 429 repeated: the backoff grows 1, 5, 30, 120 × default_cooldown_seconds",
        tuple(
            Request((BARE_429,), f"exhausted 429 no_account retry {s}s", "a", cooled={"a": s})
            for s in (10, 50, 300, 1200, 1200)
        ),
        accounts=1,
        settings={"default_cooldown_seconds": 10},
        advance=5000,
    ),
    Row(
        "backoff_steps is a setting",
        tuple(
            Request((BARE_429,), f"exhausted 429 no_account retry {s}s", "a", cooled={"a": s})
            for s in (20, 30, 30)
        ),
        accounts=1,
        settings={"default_cooldown_seconds": 10, "backoff_steps": [2, 3]},
        advance=5000,
    ),
    Row(
        "a success resets the backoff",
        (
            Request((BARE_429,), "exhausted 429 no_account retry 10s", "a", cooled={"a": 10}),
            Request((BARE_429,), "exhausted 429 no_account retry 50s", "a", cooled={"a": 50}),
            Request((OK,), "ok", "a"),
            Request((BARE_429,), "exhausted 429 no_account retry 10s", "a", cooled={"a": 10}),
        ),
        accounts=1,
        settings={"default_cooldown_seconds": 10},
        advance=51,
    ),
    Row(
        "401: the token is refreshed and the same account asked again",
        one((Fault.unauthenticated(), OK), "ok", "aa", refreshed="a"),
    ),
    Row(
        "401 again after refreshing: move on, no second refresh",
        one((Fault.unauthenticated(), Fault.unauthenticated(), OK), "ok", "aab", refreshed="a"),
    ),
    Row(
        "401 and the refresh fails: move on, the account needs to sign in again",
        one((Fault.unauthenticated(), OK), "ok", "ab"),
        revoked="a",
        gone={"a": Status.NEEDS_RELOGIN},
    ),
    Row(
        "403 marks the account forbidden and moves on",
        one((Fault.forbidden(), OK), "ok", "ab"),
        gone={"a": Status.FORBIDDEN},
    ),
    Row(
        "404 cools the account for the model and moves on",
        one((Fault.not_found(), OK), "ok", "ab", cooled={"a": 30}),
    ),
    Row("500 moves on without a cooldown", one((E500, OK), "ok", "ab")),
    Row(
        "429 MODEL_CAPACITY_EXHAUSTED moves on without a cooldown",
        one(
            (Fault.rate_limited(reason="MODEL_CAPACITY_EXHAUSTED", retry_delay="9s"), OK),
            "ok",
            "ab",
        ),
    ),
    Row("a transport error moves on without a cooldown", one((TRANSPORT, OK), "ok", "ab")),
    Row(
        "5xx on the only account: a second chance after a jittered pause",
        one((E503, OK), "ok", "aa", jittered=1),
        accounts=1,
    ),
    Row(
        "the second chance is given once",
        one((E503, E500), "exhausted 500 no_account", "aa", jittered=1),
        accounts=1,
    ),
    Row(
        "every account failing for the request: each gets one second chance",
        one((TRANSPORT, E503, E500, OK), "ok", "abab", jittered=2),
        settings={"retry_max_attempts": 6},
    ),
    Row(
        "400 is returned at once: the request is at fault, not the account",
        one((Fault.invalid_argument(),), "error 400", "a"),
    ),
    # The user's error_rules come before the built-in table.
    Row(
        "error rule retry_other_account: a 429 moves on and cools nothing",
        one((Fault.rate_limited(retry_delay="9s"), OK), "ok", "ab"),
        settings={"error_rules": [{"status": 429, "action": "retry_other_account"}]},
    ),
    Row(
        "error rule cooldown: a 500 whose body matches cools the account",
        one(
            (Fault.server_error(500, "Backend PANIC in shard 7"), OK), "ok", "ab", cooled={"a": 10}
        ),
        settings={
            "error_rules": [{"status": 500, "contains": "panic", "action": "cooldown"}],
            "default_cooldown_seconds": 10,
        },
    ),
    Row(
        "error rule whose text does not match: the built-in table applies",
        one((E500, OK), "ok", "ab"),
        settings={"error_rules": [{"status": 500, "contains": "panic", "action": "cooldown"}]},
    ),
    Row(
        "error rule return_to_client: a 503 is not retried",
        one((E503,), "error 503", "a"),
        settings={"error_rules": [{"status": 503, "action": "return_to_client"}]},
    ),
    Row(
        "error rule disable_account: the account leaves the pool, the next serves",
        one((Fault.invalid_argument("billing account closed"), OK), "ok", "ab"),
        settings={
            "error_rules": [{"status": 400, "contains": "billing", "action": "disable_account"}]
        },
        gone={"a": Status.FORBIDDEN},
    ),
    # Each attempt asks the next account in the rotation, skipping those already tried.
    Row(
        "the retry budget caps the attempts",
        one((E503, E503, E503, E503), "exhausted 503", "abcd"),
        accounts=5,
    ),
    Row(
        "every account rate limited: Exhausted with no_account and the soonest retry",
        one(
            (Fault.rate_limited(retry_delay="20s"), Fault.rate_limited(retry_delay="10s")),
            "exhausted 429 no_account retry 10s",
            "ab",
            cooled={"a": 20, "b": 10},
        ),
    ),
    Row(
        "every account already cooling: no call, Exhausted with no_account",
        one(
            (),
            "exhausted - no_account retry 5s",
            "",
            cooled={"a": 5, "b": 40},
            cooling_first={"a": 5, "b": 40},
        ),
    ),
    Row(
        "a sticky session waits out its account's short cooldown",
        (
            Request((OK,), "ok", "a", session="s1"),
            Request((OK,), "ok", "a", session="s1", cooling_first={"a": 1.5}, slept=(1.5,)),
        ),
    ),
    Row(
        "a sticky session leaves its account when the cooldown is longer than the wait",
        (
            Request((OK,), "ok", "a", session="s1"),
            Request((OK,), "ok", "b", session="s1", cooling_first={"a": 2.5}, cooled={"a": 2.5}),
        ),
    ),
    Row(
        "an account whose weekly window is empty is not asked",
        one((OK,), "ok", "b"),
        weekly_empty="a",
    ),
    Row(
        "every weekly window empty: no call, 429 until the first weekly reset",
        one((), "exhausted - no_account retry 86400s", ""),
        weekly_empty="ab",
    ),
    Row(
        "the weekly reset passes: the account is asked again",
        (
            Request((), "exhausted - no_account retry 86400s", ""),
            Request((OK,), "ok", "a"),
        ),
        accounts=1,
        weekly_empty="a",
        advance=86400,
    ),
]


class Upstream:
    """The `call` handed to Policy.run: answers as scripted, noting who asked with what."""

    def __init__(self, answers: tuple[Fault | str, ...], names: dict[str, str]) -> None:
        self.answers = list(answers)
        self.names = names
        self.asked = ""
        self.tokens: list[str] = []

    async def call(self, attempt: Attempt) -> str:
        self.asked += self.names[attempt.account.email]
        self.tokens.append(attempt.creds.access_token)
        error = answer(self.answers.pop(0))
        if error is not None:
            raise error
        return OK


def describe(outcome: object) -> str:
    if isinstance(outcome, Exhausted):
        text = f"exhausted {outcome.error.status if outcome.error else '-'}"
        if outcome.no_account:
            text += " no_account"
            if outcome.no_account.retry_after is not None:
                text += f" retry {outcome.no_account.retry_after:g}s"
        return text
    if isinstance(outcome, UpstreamError):
        return f"error {outcome.status}"
    return str(outcome)


async def play(row: Row, engine: Engine, fake: Any) -> None:
    settings = Settings(
        api_key="sk-test-000000",
        upstream_base_urls=(fake.v1internal,),
        oauth_token_url=fake.token_url,
        **row.settings,
    )
    accounts = build_account_service(lambda: settings, engine)
    for left in accounts.store.all():  # the previous row's
        accounts.store.remove(left.id)
    clock = Clock()
    emails: dict[str, str] = {}
    for name in NAMES[: row.accounts]:
        google = fake.add_account(email=f"{name}-{uuid.uuid4().hex[:8]}@example.com")
        emails[google.email] = name
        reset = clock.time() + row.quota_reset_in if row.quota_reset_in else None
        weekly = QuotaWindow("gemini-weekly", "gemini", "weekly", 0.0, clock.time() + 86400)
        accounts.store.upsert(
            google.email,
            google.refresh_token,
            access_token=f"ya29.first-{name}",
            expires_at=time.time() + 3600,
            project_id="proj-a",
            quotas=[ModelQuota(MODEL, 1.0, reset)],
            windows=[weekly] if name in row.weekly_empty else [],
        )
        if name in row.revoked:
            fake.revoke(google.refresh_token)
    pool = Pool(accounts.store)
    pool.load()
    accounts.tokens.on_relogin = lambda account: pool.drop(account.id)
    scheduler = Scheduler(pool, lambda: settings, clock.monotonic, clock.time)
    policy = Policy(scheduler, accounts, clock.time, clock.sleep)
    ids = {emails[a.email]: a.id for a in pool.accounts}

    try:
        for number, request in enumerate(row.requests):
            if number:
                clock.advance(row.advance)
            for name, seconds in request.cooling_first.items():
                scheduler.cooldowns.set(ids[name], MODEL, seconds)
            upstream = Upstream(request.answers, emails)
            clock.slept.clear()
            try:
                outcome: object = await policy.run(MODEL, request.session, upstream.call)
            except (Exhausted, UpstreamError) as exc:
                outcome = exc
            where = f"{row.name} (request {number + 1})"
            assert describe(outcome) == request.result, where
            assert upstream.asked == request.tried, where
            assert not upstream.answers, f"{where}: answers left over"
            cooled = {
                emails[a.email]: round(scheduler.cooldowns.remaining(a.id, MODEL), 1)
                for a in pool.accounts
            }
            expected = {name: 0.0 for name in cooled} | request.cooled
            assert cooled == {n: expected[n] for n in cooled}, where
            refreshed = "".join(
                name
                for email, name in emails.items()
                if fake.token_refresh_count(fake.account(email).refresh_token)
            )
            assert refreshed == "".join(sorted(request.refreshed + row.revoked)), where
            if request.refreshed:  # the retry on the same account used the fresh token
                assert upstream.tokens[1] != upstream.tokens[0], where
            jittered = [s for s in clock.slept if 0.125 <= s <= 0.375]
            assert len(jittered) == request.jittered, where
            assert tuple(s for s in clock.slept if s not in jittered) == request.slept, where
        served = {emails[a.email] for a in pool.accounts}
        for name, status in row.gone.items():
            assert name not in served, row.name
            stored = accounts.store.get(ids[name])
            assert stored is not None and stored.status is status, row.name
        assert served == set(NAMES[: row.accounts]) - set(row.gone), row.name
    finally:
        await accounts.client.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One database for the table, emptied by each row: migrating it and compiling its
    statements take longer than playing a row."""
    engine = open_database(tmp_path_factory.mktemp("policy") / "agproxy.db")
    yield engine
    engine.dispose()


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_policy_outcome(row: Row, engine: Engine, fake_google: Any) -> None:
    asyncio.run(play(row, engine, fake_google))
