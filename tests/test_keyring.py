"""The key ring (a key-based provider's keys under the pool's resilience rules), driven
with a fake clock and sleep: each outcome, as a table, in milliseconds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from agproxy.pool.keyring import REFUSED_COOLDOWN, KeyAttempt, KeyRing
from agproxy.pool.policy import Exhausted
from agproxy.upstream import Failure, UpstreamError
from agproxy.upstream.errors import classify

MODEL = "glm-4.7"


@dataclass
class Clock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def ring(keys: list[str], clock: Clock) -> KeyRing:
    return KeyRing("prov", lambda: keys, lambda: 60.0, clock=lambda: clock.now, sleep=clock.sleep)


def run(r: KeyRing, outcomes: list[Any]) -> tuple[Any, list[str]]:
    """Each attempt answers the next outcome (an UpstreamError raised, else returned)."""
    asked: list[str] = []

    async def call(a: KeyAttempt) -> Any:
        asked.append(a.key)
        outcome = outcomes.pop(0)
        if isinstance(outcome, UpstreamError):
            raise outcome
        return outcome

    try:
        result: Any = asyncio.run(r.run(MODEL, 4, call))
    except (Exhausted, UpstreamError) as exc:
        result = exc
    return result, asked


def err(status: int, retry_after: str | None = None) -> UpstreamError:
    return classify(status, b'{"type":"error","error":{"message":"x"}}', retry_after)


@pytest.mark.parametrize(
    ("keys", "outcomes", "asked", "cooled", "result"),
    [
        # success on the first key
        (["a"], ["ok"], ["a"], {}, "ok"),
        # 429 with a delay: that key cools for it, the next key serves
        (["a", "b"], [err(429, "40"), "ok"], ["b", "a"], {"1": 40.0}, "ok"),
        # 401: the key is set aside for every model, the next one serves
        (["a", "b"], [err(401), "ok"], ["b", "a"], {"1": REFUSED_COOLDOWN}, "ok"),
        # a 5xx on the only key: asked once more after a short pause
        (["a"], [err(503), "ok"], ["a", "a"], {}, "ok"),
        # a 400 is the request's: raised at once, nothing cools
        (["a", "b"], [err(400)], ["b"], {}, Failure.INVALID_REQUEST),
        # no key configured: exhausted without asking anyone
        ([], [], [], {}, "no prov key is configured"),
        # every key rate limited: exhausted, with the soonest retry
        (["a"], [err(429, "7")], ["a"], {"0": 7.0}, "cooling down"),
    ],
)
def test_outcomes(
    keys: list[str], outcomes: list[Any], asked: list[str], cooled: dict[str, float], result: Any
) -> None:
    clock = Clock()
    r = ring(keys, clock)
    got, who = run(r, list(outcomes))
    assert who == asked
    left = {e["account_id"]: e["seconds_left"] for e in r.cooldowns.snapshot()}
    assert left == cooled
    if isinstance(result, Failure):
        assert isinstance(got, UpstreamError) and got.kind is result
    elif result == "ok":
        assert got == "ok"
    else:
        assert isinstance(got, Exhausted) and result in got.no_account.message  # type: ignore[union-attr]


def test_a_429_without_delay_backs_off_longer_each_time_until_a_success() -> None:
    clock = Clock()
    r = ring(["a"], clock)
    waits = []
    for _ in range(3):
        run(r, [err(429)])
        waits.append(r.cooldowns.remaining("0", MODEL))
        clock.now += waits[-1]
    assert waits == [60.0, 300.0, 1800.0]
    assert run(r, ["ok"])[0] == "ok"
    run(r, [err(429)])
    assert r.cooldowns.remaining("0", MODEL) == 60.0  # the success reset the steps


def test_changing_the_keys_forgets_their_cooldowns() -> None:
    clock = Clock()
    keys = ["old"]
    r = KeyRing("prov", lambda: keys, lambda: 60.0, clock=lambda: clock.now, sleep=clock.sleep)
    run(r, [err(401)])
    assert not r.has_free(MODEL)
    keys[:] = ["new"]
    assert r.has_free(MODEL)
    assert run(r, ["ok"]) == ("ok", ["new"])
