"""The resilience policy end to end (issue 4, "Resilience tests"): a real `agproxy serve` with
a pool of accounts on the fake Google upstream, faults injected per account, and the fake's
request log as the witness of which account was asked, when, and how often. Also quota
protection, and what `agproxy status` shows of the traffic and the cooling accounts."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fake_google import Fault
from google import genai
from google.genai import errors as genai_errors

from conftest import Gateway, google_env, spawn

MODEL = "gemini-3-flash"
GENERATE = f"/v1beta/models/{MODEL}:generateContent"
STREAM_SSE = f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
STREAM_ARRAY = f"/v1beta/models/{MODEL}:streamGenerateContent"


class Pool:
    """This test's accounts on the module's gateway (the only ones it has while the test runs)."""

    def __init__(self, gw: Gateway, accounts: list[Any]) -> None:
        self.gw = gw
        self.accounts = accounts
        self.emails = [a.email for a in accounts]

    def ask(
        self,
        text: str | None = None,
        path: str = GENERATE,
        contents: list[dict[str, Any]] | None = None,
    ) -> httpx.Response:
        contents = contents or [turn("user", text or f"a new conversation {uuid.uuid4().hex}")]
        return httpx.post(self.gw.base_url + path, json={"contents": contents}, timeout=60)

    def accounts_json(self) -> dict[str, dict[str, Any]]:
        listed = self.gw.cli("accounts", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return {a["email"]: a for a in json.loads(listed.stdout)}

    def active(self) -> int:
        return int(self.gw.admin("GET", "/api/proxy/status").json()["active_accounts"])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One `agproxy serve` for the module. Each test brings its own accounts and settings
    (make_pool) and takes them away again, so no cooldown, forbidden account, sticky
    binding or backoff of one test can reach another."""
    gw = spawn(tmp_path_factory.mktemp("resilience") / "gw", **google_env(fake_google_server))
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def make_pool(gateway: Gateway, fake_google: Any) -> Iterator[Any]:
    """make(n, tag, config, accounts): n new fake accounts pool<i>-<tag>@example.com (or the
    given `accounts`) added through the admin API, `config` changes applied to the running
    gateway, the fake's request log cleared. Afterwards the accounts are removed and the
    settings return to their defaults."""
    added: list[str] = []
    changed: set[str] = set()

    def make(
        n: int = 3,
        tag: str | None = None,
        config: dict[str, Any] | None = None,
        accounts: list[Any] | None = None,
    ) -> Pool:
        if config:
            changed.update(config)
            put = gateway.admin("PUT", "/api/config", json=config)
            assert put.status_code == 200, put.text
        tag = tag or uuid.uuid4().hex[:8]
        accounts = accounts or [
            fake_google.add_account(email=f"pool{i}-{tag}@example.com", project=f"proj-{i}-{tag}")
            for i in range(n)
        ]
        for acct in accounts:
            response = gateway.admin(
                "POST", "/api/accounts", json={"refresh_token": acct.refresh_token}
            )
            assert response.status_code == 201, response.text
            added.append(response.json()["account"]["id"])
        started = gateway.admin("POST", "/api/proxy/start")
        assert started.status_code == 200 and started.json()["active_accounts"] == len(accounts)
        fake_google.reset()  # the log starts with the test's own requests
        return Pool(gateway, accounts)

    yield make
    for account_id in added:
        assert gateway.admin("DELETE", f"/api/accounts/{account_id}").status_code == 200
    if changed:
        assert gateway.admin("PUT", "/api/config", json=dict.fromkeys(changed)).status_code == 200


@pytest.fixture
def pool(make_pool: Callable[..., Pool]) -> Pool:
    """Three accounts, default scheduling (balance)."""
    return make_pool(3)


def turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"text": text}]}


def per_account(fake: Any, pool: Pool, rpc: str = "generateContent") -> dict[str, int]:
    return {email: len(fake.calls(rpc, email=email)) for email in pool.emails}


def upstream_calls(fake: Any, rpc: str = "generateContent") -> list[Any]:
    return fake.calls(rpc)


def google_error(response: httpx.Response, code: int, status: str) -> str:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status) and error["message"]
    return str(error["message"])


def sse_events(raw: str) -> list[dict[str, Any]]:
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(json.loads(block[len("data: ") :]))
    return events


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(
        p.get("text", "")
        for e in events
        for c in e.get("candidates", [])
        for p in c["content"]["parts"]
    )


# -- 429: cool the account down, move on ------------------------------------------------------
def test_a_rate_limited_account_is_skipped_until_its_cooldown_ends(
    make_pool: Any, fake_google: Any
) -> None:
    pool = make_pool(3)
    limited = pool.accounts[0].email
    delay = 1.5  # above the 1 s floor, so the window below shows the delay itself is kept
    fake_google.inject(Fault.rate_limited(retry_delay=f"{delay}s"), email=limited, times=1000)

    answers = [pool.ask().status_code for _ in range(9)]
    assert answers == [200] * 9
    [refused] = fake_google.calls("generateContent", email=limited)  # asked once: the 429
    counts = per_account(fake_google, pool)
    assert sum(counts.values()) == 10  # 9 answers + the one 429, moved to another account
    assert all(counts[e] >= 3 for e in pool.emails[1:])

    # The fault is still armed: a call before the cooldown ends would show up in the log.
    while time.monotonic() < refused.at + delay - 0.3:
        assert pool.ask().status_code == 200
        time.sleep(0.05)
    assert len(fake_google.calls("generateContent", email=limited)) == 1

    # Once the cooldown is over it is asked again (and, still limited, cooled down again).
    time.sleep(max(0.0, refused.at + delay + 0.05 - time.monotonic()))
    for _ in range(3):
        assert pool.ask().status_code == 200
    calls = fake_google.calls("generateContent", email=limited)
    assert len(calls) == 2 and calls[1].at - refused.at >= delay

    # With the limit lifted it serves again after this second cooldown.
    fake_google.reset()
    time.sleep(max(0.0, calls[1].at + delay + 0.05 - time.monotonic()))
    answers = [pool.ask().status_code for _ in range(6)]
    assert answers == [200] * 6
    assert len(fake_google.calls("generateContent", email=limited)) == 2  # its share of six


def test_all_accounts_limited_is_a_429_with_retry_after(make_pool: Any, fake_google: Any) -> None:
    pool = make_pool(3)
    # Different delays, in the forms Google uses: the soonest one is what the client waits.
    fake_google.inject(Fault.rate_limited(retry_delay="9.9s"), email=pool.emails[0])
    fake_google.inject(Fault.rate_limited(quota_reset_delay="1m30s"), email=pool.emails[1])
    fake_google.inject(
        Fault.rate_limited(retry_delay="45s", reason="RATE_LIMIT_EXCEEDED"), email=pool.emails[2]
    )
    started = time.monotonic()
    response = pool.ask("everyone is limited right now")
    message = google_error(response, 429, "RESOURCE_EXHAUSTED")
    assert response.headers["retry-after"] == str(math.ceil(9.9))
    assert "rate limited" in message
    assert per_account(fake_google, pool) == dict.fromkeys(pool.emails, 1)

    # Nobody is asked while every account cools down: the answer comes from the cooldowns.
    again = pool.ask("a different conversation")
    google_error(again, 429, "RESOURCE_EXHAUSTED")
    left = 9.9 - (time.monotonic() - started)
    assert math.ceil(left) <= int(again.headers["retry-after"]) <= 10
    streamed = pool.ask("a stream while limited", STREAM_SSE)
    google_error(streamed, 429, "RESOURCE_EXHAUSTED")
    assert "retry-after" in streamed.headers
    assert len(upstream_calls(fake_google)) == 3 and not upstream_calls(
        fake_google, "streamGenerateContent"
    )


# -- 401: refresh once, retry ------------------------------------------------------------------
def test_an_invalid_access_token_is_refreshed_and_retried_once(
    pool: Pool, fake_google: Any
) -> None:
    fake_google.inject(Fault.unauthenticated())  # whichever account is asked first
    response = pool.ask("a conversation whose token went bad")
    assert response.status_code == 200
    first, second = upstream_calls(fake_google)
    assert first.account_email == second.account_email  # refreshed, then the same account
    account = fake_google.account(first.account_email)
    assert len(fake_google.calls("token", email=account.email)) == 1
    assert first.headers["authorization"] != second.headers["authorization"]
    assert second.headers["authorization"] == f"Bearer {account.access_tokens[-1]}"


def test_an_expired_access_token_is_refreshed(pool: Pool, fake_google: Any) -> None:
    """Google expired the tokens before the gateway expected it (ACCESS_TOKEN_EXPIRED)."""
    before = {a.email: fake_google.token_refresh_count(a.refresh_token) for a in pool.accounts}
    for email in pool.emails:
        fake_google.expire_access_tokens(email)
    for i in range(3):
        assert pool.ask(f"after expiry, conversation {i} {uuid.uuid4().hex}").status_code == 200
    refreshed = {
        a.email: fake_google.token_refresh_count(a.refresh_token) - before[a.email]
        for a in pool.accounts
    }
    calls = upstream_calls(fake_google)
    assert sorted(refreshed.values()) == [1, 1, 1]  # each account once, on its first 401
    assert len(calls) == 6  # per request: the 401, then the retry


def test_an_account_still_refused_after_refreshing_is_left_for_another(
    pool: Pool, fake_google: Any
) -> None:
    fake_google.inject(Fault.unauthenticated(), times=2)
    response = pool.ask("refused twice by the first account")
    assert response.status_code == 200
    emails = [c.account_email for c in upstream_calls(fake_google)]
    assert len(emails) == 3 and emails[0] == emails[1] != emails[2]
    assert len(fake_google.calls("token", email=emails[0])) == 1

    # Every account keeps refusing: the client's key is fine, so no 401 for it.
    fake_google.reset()
    fake_google.inject(Fault.unauthenticated(), times=50)
    response = pool.ask("nobody accepts our tokens")
    google_error(response, 503, "UNAVAILABLE")
    assert all(len(fake_google.calls("token", email=e)) <= 1 for e in pool.emails)


# -- 403: forbidden, move on -------------------------------------------------------------------
def test_a_403_marks_the_account_forbidden_and_moves_on(make_pool: Any, fake_google: Any) -> None:
    pool = make_pool(3)
    bad = pool.emails[1]
    # A plain 403 (one asking to verify the account is test_account_states.py's).
    fake_google.inject(Fault.forbidden(), email=bad, times=100)
    answers = [pool.ask().status_code for _ in range(6)]
    assert answers == [200] * 6
    assert len(fake_google.calls("generateContent", email=bad)) == 1  # never asked again
    assert len(upstream_calls(fake_google)) == 7  # the refused request went elsewhere
    listed = pool.accounts_json()
    assert listed[bad]["state"] == "forbidden"
    reason = "Forbidden (403): The caller does not have permission"
    assert listed[bad]["status_reason"] == reason  # `agproxy accounts list` and the admin API
    assert [listed[e]["state"] for e in pool.emails if e != bad] == ["enabled", "enabled"]
    shown = {a["email"]: a for a in pool.gw.admin("GET", "/api/accounts").json()["accounts"]}
    assert (shown[bad]["state"], shown[bad]["status_reason"]) == ("forbidden", reason)
    assert pool.active() == 2


# -- 400: the request is at fault --------------------------------------------------------------
def test_a_400_is_returned_at_once_and_blames_no_account(pool: Pool, fake_google: Any) -> None:
    fake_google.inject(Fault.invalid_argument("Invalid `signature` in `thinking` block"))
    opener = f"please check this request {uuid.uuid4().hex}"
    response = pool.ask(opener)
    assert "Invalid `signature`" in google_error(response, 400, "INVALID_ARGUMENT")
    [call] = upstream_calls(fake_google)  # not retried, not rotated

    # Nobody was cooled down or disabled: the same conversation stays on that account at
    # once, and three new conversations use all three accounts.
    started = time.monotonic()
    assert pool.ask(opener).status_code == 200
    assert time.monotonic() - started < 1.0
    assert upstream_calls(fake_google)[1].account_email == call.account_email
    for _ in range(3):
        assert pool.ask().status_code == 200
    assert {c.account_email for c in upstream_calls(fake_google)[2:]} == set(pool.emails)
    states = {
        a["email"]: a["state"]
        for a in pool.gw.admin("GET", "/api/accounts").json()["accounts"]
        if a["email"] in pool.emails
    }
    assert set(states.values()) == {"enabled"} and pool.active() == 3


# -- 5xx: retried on another account, nothing cools down ---------------------------------------
@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_once_is_retried(pool: Pool, fake_google: Any, status: int) -> None:
    fake_google.inject(Fault.server_error(status))
    response = pool.ask(f"survive a {status}")
    assert response.status_code == 200
    assert response.json()["candidates"][0]["content"]["parts"] == [
        {"text": f"echo: survive a {status}"}
    ]
    failed, served = upstream_calls(fake_google)
    assert failed.account_email != served.account_email  # the 5xx followed the request
    assert not pool.gw.admin("GET", "/api/dashboard").json()["attention"]


def test_the_retry_budget_caps_attempts(make_pool: Any, fake_google: Any) -> None:
    pool = make_pool(3, config={"retry_max_attempts": 2})
    fake_google.inject(Fault.server_error(500), times=50)
    response = pool.ask("fails everywhere")
    google_error(response, 502, "UNAVAILABLE")
    assert len({c.account_email for c in upstream_calls(fake_google)}) == 2  # two, not three
    streamed = pool.ask("streams fail everywhere too", STREAM_SSE)
    google_error(streamed, 502, "UNAVAILABLE")
    assert len(upstream_calls(fake_google, "streamGenerateContent")) == 2
    fake_google.reset()  # the failures were the requests': every account serves at once
    assert [pool.ask().status_code for _ in range(3)] == [200] * 3


# -- streams -----------------------------------------------------------------------------------
def test_a_stream_cut_after_bytes_were_sent_ends_with_an_error_event(
    pool: Pool, fake_google: Any
) -> None:
    fake_google.inject(Fault.cut_stream(after_events=1))
    response = pool.ask("a long answer that gets cut", STREAM_SSE)
    assert response.status_code == 200
    first, last = sse_events(response.text)
    assert streamed_text([first]) == "echo: "
    assert last["error"]["status"] == "UNAVAILABLE" and last["error"]["code"] >= 500
    assert "stream" in last["error"]["message"]
    assert len(upstream_calls(fake_google, "streamGenerateContent")) == 1  # no retry

    fake_google.inject(Fault.cut_stream(after_events=1))
    array = pool.ask("the array form gets cut too", STREAM_ARRAY)
    events = json.loads(array.text)  # still a well-formed array, ending in the error
    assert len(events) == 2 and "error" in events[-1]

    fake_google.inject(Fault.cut_stream(after_events=1))
    client = genai.Client(api_key="unused", http_options={"base_url": pool.gw.base_url})
    with pytest.raises(genai_errors.APIError):  # the SDK sees a failure, not a short answer
        list(client.models.generate_content_stream(model=MODEL, contents="cut for the SDK"))
    assert len(upstream_calls(fake_google, "streamGenerateContent")) == 3


@pytest.mark.parametrize(
    "fault",
    [Fault.cut_stream(after_events=0), Fault.empty_stream()],
    ids=["cut-before-data", "empty"],
)
def test_a_stream_failing_before_any_data_is_retried(
    pool: Pool, fake_google: Any, fault: Fault
) -> None:
    fake_google.inject(fault)
    response = pool.ask("nothing came back the first time", STREAM_SSE)
    assert response.status_code == 200
    events = sse_events(response.text)
    assert not [e for e in events if "error" in e]
    assert streamed_text(events) == "echo: nothing came back the first time"
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    failed, served = upstream_calls(fake_google, "streamGenerateContent")
    assert failed.account_email != served.account_email


@pytest.mark.parametrize("path", [STREAM_SSE, STREAM_ARRAY], ids=["sse", "array"])
def test_a_client_disconnect_cancels_the_upstream_call(
    pool: Pool, fake_google: Any, path: str
) -> None:
    fake_google.inject(Fault.stall(seconds=10))
    with httpx.stream(
        "POST",
        pool.gw.base_url + path,
        timeout=30,
        json={"contents": [turn("user", "a slow answer I will not wait for")]},
    ) as response:
        assert response.status_code == 200
        first = next(response.iter_raw())
        assert b"echo: " in first
    closed_at = time.monotonic()
    while not fake_google.disconnects and time.monotonic() < closed_at + 3:
        time.sleep(0.02)
    [gone] = fake_google.disconnects
    [call] = upstream_calls(fake_google, "streamGenerateContent")
    assert gone["email"] == call.account_email and gone["model"] == MODEL
    assert gone["at"] - closed_at < 2.0
    assert pool.ask("still serving").status_code == 200


# -- scheduling --------------------------------------------------------------------------------
def test_sticky_sessions_keep_a_conversation_on_one_account(pool: Pool, fake_google: Any) -> None:
    history = [turn("user", f"let us plan a trip to Lisbon {uuid.uuid4().hex}")]
    for i in range(4):
        response = pool.ask(contents=history)
        assert response.status_code == 200
        history += [response.json()["candidates"][0]["content"], turn("user", f"and day {i}?")]
    owners = {c.account_email for c in upstream_calls(fake_google)}
    assert len(owners) == 1  # the conversation stayed where its prompt cache is

    for _ in range(6):
        assert pool.ask().status_code == 200
    spread = Counter(c.account_email for c in upstream_calls(fake_google)[4:])
    assert set(spread) == set(pool.emails)  # other conversations use every account


def test_round_robin_spreads_even_one_conversation(make_pool: Any, fake_google: Any) -> None:
    pool = make_pool(3, config={"scheduling_mode": "round_robin"})
    for _ in range(6):
        assert pool.ask("the very same conversation opener").status_code == 200
    assert per_account(fake_google, pool) == dict.fromkeys(pool.emails, 2)


def test_fixed_mode_uses_only_the_preferred_account(make_pool: Any, fake_google: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    preferred = f"pool1-{tag}@example.com"
    pool = make_pool(3, tag, {"scheduling_mode": "fixed", "preferred_account": preferred})
    for _ in range(4):
        assert pool.ask().status_code == 200
        assert pool.ask("one conversation for all of them", STREAM_SSE).status_code == 200
    assert {c.account_email for c in upstream_calls(fake_google)} == {preferred}
    assert {c.account_email for c in upstream_calls(fake_google, "streamGenerateContent")} == {
        preferred
    }


def test_repeated_rate_limits_without_timing_back_off_longer(
    make_pool: Any, fake_google: Any
) -> None:
    # Quota known but no reset time: a bare 429 falls back to default_cooldown_seconds.
    fake_account = fake_google.add_account(
        email=f"nodelay-{uuid.uuid4().hex[:6]}@example.com",
        models={MODEL: {"remainingFraction": 0.5}},
    )
    pool = make_pool(config={"default_cooldown_seconds": 1}, accounts=[fake_account])

    def cooldown() -> float:
        [item] = [
            a
            for a in pool.gw.admin("GET", "/api/dashboard").json()["attention"]
            if a["state"] == "cooling_down"
        ]
        return float(item["seconds_left"])

    # Each phase waits only a 1 s cooldown out: the 5× one is checked last, not waited.
    fake_google.inject(Fault.rate_limited(), email=fake_account.email)
    assert pool.ask("again").status_code == 429
    assert 0 < cooldown() <= 1  # the first time: default_cooldown_seconds
    time.sleep(1.2)
    assert pool.ask("again").status_code == 200  # a success resets the backoff:
    fake_google.inject(Fault.rate_limited(), email=fake_account.email, times=2)
    assert pool.ask("again").status_code == 429
    assert 0 < cooldown() <= 1  # the first step again, not five times as long
    time.sleep(1.2)
    assert pool.ask("again").status_code == 429
    assert 3.5 < cooldown() <= 5  # the same again without a success: five times as long


# -- quota protection --------------------------------------------------------------------------
def test_quota_protection_keeps_low_accounts_for_their_owner(
    make_pool: Any, fake_google: Any
) -> None:
    reset = "2099-01-01T00:00:00Z"
    low = fake_google.add_account(
        email=f"low-{uuid.uuid4().hex[:6]}@example.com",
        models={MODEL: {"remainingFraction": 0.05, "resetTime": reset}},
    )
    high = fake_google.add_account(
        email=f"high-{uuid.uuid4().hex[:6]}@example.com",
        models={MODEL: {"remainingFraction": 0.6, "resetTime": reset}},
    )
    pool = make_pool(
        accounts=[low, high],
        config={"quota_protection_percent": 10, "scheduling_mode": "round_robin"},
    )
    for i in range(4):
        assert pool.ask(f"protected {i}").status_code == 200
    assert {c.account_email for c in upstream_calls(fake_google)} == {high.email}
    [flash] = [
        q for q in pool.gw.admin("GET", "/api/dashboard").json()["quota"] if q["model"] == MODEL
    ]
    assert (flash["accounts"], flash["protected"]) == (2, 1)

    # With every account below the line the client is told why, in its protocol's shape.
    fake_google.account(high.email).models[MODEL]["remainingFraction"] = 0.02
    assert pool.gw.admin("POST", "/api/accounts/quota").status_code == 200
    refused = pool.ask("one more")
    assert refused.status_code == 503
    assert "below quota_protection_percent (10%)" in refused.json()["error"]["message"]


# -- what `agproxy status` shows ---------------------------------------------------------------
def test_cli_status_shows_traffic_and_cooling_accounts(make_pool: Any, fake_google: Any) -> None:
    pool = make_pool(2, config={"scheduling_mode": "round_robin"})
    # The last hour's traffic on this gateway is this test's own.
    assert pool.gw.admin("POST", "/api/logs/clear").status_code == 200
    limited = pool.emails[0]
    fake_google.inject(Fault.rate_limited(retry_delay="600s"), email=limited, times=3)
    for i in range(3):
        assert pool.ask(f"status {i}").status_code == 200
    out = pool.gw.cli("status").stdout
    assert "proxy service: running" in out
    assert "last hour:     3 requests, 0 errors" in out
    assert re.search(
        rf"! {re.escape(limited)}: cooling down for gemini-3-flash, 9m\d\ds left", out
    ), out
