"""The client keys' counters and gate (keys/limits.py, keys/gate.py) with a clock the test
moves: each limit's window, reservations settled, and the quota share."""

from __future__ import annotations

from typing import Any

import pytest

from agproxy.keys import ClientKey, KeyStore
from agproxy.keys.gate import SHARE_FLOOR, KeyRefusal, Keys
from agproxy.keys.limits import DAY, LocalCounters


class Clock:
    def __init__(self) -> None:
        self.now = 10 * DAY + 3600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys(store: Any) -> Any:
    clock = Clock()
    gate = Keys(KeyStore(store), LocalCounters(), clock)
    return gate, clock


def key(**limits: Any) -> ClientKey:
    return ClientKey("k1", "team", "sk-abcde", "0" * 64, **limits)


def refused(gate: Keys, k: ClientKey) -> KeyRefusal:
    with pytest.raises(KeyRefusal) as caught:
        gate.admit(k, 10)
    return caught.value


def test_rpm_is_a_sliding_minute(keys: Any) -> None:
    gate, clock = keys
    k = key(rpm=2)
    gate.admit(k, 10)
    clock.now += 30
    gate.admit(k, 10)
    over = refused(gate, k)
    assert over.status == 429 and over.retry_after == 30  # the first call leaves then
    clock.now += 30
    gate.admit(k, 10)


def test_tokens_are_reserved_then_settled(keys: Any) -> None:
    gate, clock = keys
    k = key(tpm=100)
    held = gate.admit(k, 90)  # the estimate holds 90 while the request runs
    gate.admit(k, 15)  # 90 < 100: let in, now 105 held
    assert "100 tokens per minute (105 used" in refused(gate, k).message
    gate.done(k, held, 20)  # the upstream said 20: 35 used
    gate.admit(k, 5)
    clock.now += 61
    assert gate.counters.tokens_last_minute("k1", clock.now) == 0


def test_daily_tokens_reset_at_midnight_utc(keys: Any) -> None:
    gate, clock = keys
    k = key(daily_tokens=50)
    gate.done(k, gate.admit(k, 10), 50)
    over = refused(gate, k)
    assert "00:00 UTC" in over.message and over.retry_after == DAY - 3600
    clock.now += DAY - 3600  # midnight
    gate.admit(k, 10)


def test_concurrency_slots_come_back(keys: Any) -> None:
    gate, _ = keys
    k = key(concurrency=1)
    held = gate.admit(k, 1)
    assert "1 requests at once" in refused(gate, k).message
    gate.done(k, held, None)
    gate.admit(k, 1)


def test_quota_share_counts_everyone_in_the_group(keys: Any) -> None:
    gate, clock = keys
    gate.shares = True
    k = key(quota_share=25)
    gate.spent(k, "claude-sonnet-4-6", SHARE_FLOOR // 2)  # the key: half of the 3p use
    gate.spent(None, "claude-sonnet-4-6", SHARE_FLOOR // 2)  # the owner: the other half
    gate.spent(None, "gemini-3-flash", 10 * SHARE_FLOOR)  # another group: not counted
    with pytest.raises(KeyRefusal) as over:
        gate.check_model(k, "claude-sonnet-4-6", "claude-sonnet-4-6")
    assert over.value.status == 429 and "50% of the pool's 3p tokens" in over.value.message
    gate.check_model(k, "gemini-3-flash", "gemini-3-flash")  # its Gemini share is 0%
    clock.now += 5 * 3600 + 1  # the window moved past it
    gate.check_model(k, "claude-sonnet-4-6", "claude-sonnet-4-6")


def test_a_share_is_not_judged_on_a_little_use(keys: Any) -> None:
    gate, _ = keys
    gate.shares = True
    k = key(quota_share=10)
    gate.spent(k, "claude-sonnet-4-6", SHARE_FLOOR - 1)  # 100% of very little
    gate.check_model(k, "claude-sonnet-4-6", None)


def test_the_allow_list_matches_the_requested_or_the_routed_id(keys: Any) -> None:
    gate, _ = keys
    k = key(models=("gemini-3-*",))
    gate.check_model(k, "my-alias", "gemini-3-flash")  # a mapping rule's alias of an allowed one
    with pytest.raises(KeyRefusal) as denied:
        gate.check_model(k, "claude-opus-4-6", "claude-opus-4-6")
    assert denied.value.status == 403 and "may use: gemini-3-*" in denied.value.message


def test_tokens_read_back_at_start_count_for_the_day_not_the_minute(keys: Any) -> None:
    gate, _ = keys
    k = gate.store.create("seeded", tpm=100, daily_tokens=1000)[0]
    gate.load()
    gate.seed_today({"seeded": 900})
    assert gate.counters.tokens_today(k.id, int(gate.clock() // DAY)) == 900
    assert gate.counters.tokens_last_minute(k.id, gate.clock()) == 0
    gate.admit(k, 10)  # under both limits
