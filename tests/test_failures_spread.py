"""Failures that spread (issue 11, defects 5, 9 and 20), end to end: a real `agproxy serve`
on the fake Google upstream, faults injected per request body, the fake's request log and
the admin API as witnesses.

- A failure that follows one request (a 5xx for its body, a broken or empty stream) is
  retried on another account and cools nothing: the next request is served at once, and
  the failing one gets what happened (502/5xx), never a 429.
- After a 401 and a successful refresh, the same account is retried.
- A non-streamed request whose upstream stream breaks mid-way is retried.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fake_google import Fault

from conftest import Borrowed, Gateway, add_accounts, borrow, free_port, google_config, spawn

GEMINI = "gemini-3-flash"
CLAUDE = "claude-sonnet-4-6"
GENERATE_RPCS = ("generateContent", "streamGenerateContent")


@dataclass(frozen=True)
class Route:
    """One client-facing route: how to ask it, where its answer's text is."""

    name: str
    path: str
    model: str
    body: Callable[[str], dict[str, Any]]
    text: Callable[[dict[str, Any]], str]


ROUTES = {
    "chat": Route(
        "chat",
        "/v1/chat/completions",
        GEMINI,
        lambda t: {"model": GEMINI, "messages": [{"role": "user", "content": t}]},
        lambda r: r["choices"][0]["message"]["content"],
    ),
    "responses": Route(
        "responses",
        "/v1/responses",
        GEMINI,
        lambda t: {"model": GEMINI, "input": t},
        lambda r: "".join(
            c["text"]
            for o in r["output"]
            if o["type"] == "message"
            for c in o["content"]
            if c["type"] == "output_text"
        ),
    ),
    "messages": Route(
        "messages",
        "/v1/messages",
        CLAUDE,
        lambda t: {
            "model": CLAUDE,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": t}],
        },
        lambda r: "".join(b["text"] for b in r["content"] if b["type"] == "text"),
    ),
    "generateContent": Route(
        "generateContent",
        f"/v1beta/models/{GEMINI}:generateContent",
        GEMINI,
        lambda t: {"contents": [{"role": "user", "parts": [{"text": t}]}]},
        lambda r: "".join(p.get("text", "") for p in r["candidates"][0]["content"]["parts"]),
    ),
}


def ask(gw: Gateway, route: Route, text: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gw.api_key}", "anthropic-version": "2023-06-01"}
    return httpx.post(gw.base_url + route.path, json=route.body(text), headers=headers, timeout=60)


def generate_calls(fake: Any) -> list[Any]:
    return [c for c in fake.calls() if c.rpc in GENERATE_RPCS]


def cooldowns(gw: Gateway) -> list[dict[str, Any]]:
    """What the Dashboard lists as cooling down, checked against /metrics."""
    attention = gw.admin("GET", "/api/dashboard").json()["attention"]
    cooling = [a for a in attention if a["state"] == "cooling_down"]
    metrics = gw.admin("GET", "/metrics").text
    assert f"agproxy_cooldowns {len(cooling)}" in metrics.splitlines()
    return cooling


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any
) -> Iterator[tuple[Gateway, list[Any]]]:
    """Two accounts, default scheduling and retry budget (4 attempts)."""
    fake = fake_google_server
    gw = spawn(tmp_path_factory.mktemp("spread") / "gw", config=google_config(fake))
    accounts = add_accounts(gw, fake, 2, prefix="spread")
    try:
        yield gw, accounts
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """A second gateway for the tests that bring their own accounts and settings."""
    gw = spawn(
        tmp_path_factory.mktemp("spread") / "spare", config=google_config(fake_google_server)
    )
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def shared(spare: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    with borrow(spare, fake_google) as turn:
        yield turn


# -- defect 5: a failure of one request cools nothing ------------------------------------------
FAULTS = {
    "500": (Fault.server_error(500), 502, "Internal error"),
    "503": (Fault.server_error(503), 503, "No capacity"),
    "capacity": (Fault.rate_limited(reason="MODEL_CAPACITY_EXHAUSTED"), 503, "No capacity"),
    "broken": (Fault.cut_stream(after_events=1), 502, "broke off mid-stream"),
    "empty": (Fault.empty_stream(), 502, "empty stream"),
    "cut-body": (Fault.cut_body(), 502, "closed before the answer"),
}
CASES = [
    ("chat", "500"),
    ("chat", "broken"),
    ("chat", "empty"),
    ("responses", "503"),
    ("responses", "broken"),
    ("messages", "500"),
    ("messages", "capacity"),
    ("messages", "broken"),
    ("generateContent", "500"),
    ("generateContent", "capacity"),
    ("generateContent", "cut-body"),
]


@pytest.mark.parametrize(("route_name", "fault_name"), CASES, ids=[f"{r}-{f}" for r, f in CASES])
def test_a_request_failing_everywhere_cools_no_account(
    pool: tuple[Gateway, list[Any]], fake_google: Any, route_name: str, fault_name: str
) -> None:
    gw, accounts = pool
    route = ROUTES[route_name]
    fault, status, said = FAULTS[fault_name]
    poison = f"poison-{uuid.uuid4().hex}"
    fake_google.inject(fault, contains=poison, times=100)  # this body fails on every account

    failed = ask(gw, route, f"this request always fails upstream {poison}")
    assert failed.status_code == status, failed.text
    message = failed.json()["error"]["message"]
    assert "rate limited" not in message and "upstream" in message
    assert said in message, message
    assert "retry-after" not in failed.headers
    calls = generate_calls(fake_google)

    # Every other client is served at once: nothing was cooled down.
    for i in range(3):
        fine = ask(gw, route, f"an ordinary request number {i} {uuid.uuid4().hex}")
        assert fine.status_code == 200, fine.text
        assert route.text(fine.json()).startswith("echo: an ordinary request")
    assert cooldowns(gw) == []

    # Retried on the other account, then once more on each: the budget (4), not the pool.
    assert Counter(c.account_email for c in calls) == {a.email: 2 for a in accounts}
    assert calls[0].account_email != calls[1].account_email


def test_a_streamed_request_failing_everywhere_cools_no_account(
    pool: tuple[Gateway, list[Any]], fake_google: Any
) -> None:
    gw, accounts = pool
    poison = f"poison-{uuid.uuid4().hex}"
    fake_google.inject(Fault.server_error(503), contains=poison, times=100)
    path = f"/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse"
    body = {"contents": [{"role": "user", "parts": [{"text": f"streamed {poison}"}]}]}
    failed = httpx.post(gw.base_url + path, json=body, timeout=60)
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["status"] == "UNAVAILABLE"
    assert len(generate_calls(fake_google)) == 4
    assert cooldowns(gw) == []
    body = {"contents": [{"role": "user", "parts": [{"text": "an ordinary stream please"}]}]}
    assert httpx.post(gw.base_url + path, json=body, timeout=60).status_code == 200


# -- defect 20: a non-streamed answer broken mid-way is retried --------------------------------
@pytest.mark.parametrize("route_name", ["chat", "responses", "messages", "generateContent"])
def test_a_non_streamed_answer_broken_mid_way_is_retried(
    pool: tuple[Gateway, list[Any]], fake_google: Any, route_name: str
) -> None:
    gw, _ = pool
    route = ROUTES[route_name]
    text = f"a long answer that breaks once {uuid.uuid4().hex}"
    fault = Fault.cut_body() if route_name == "generateContent" else Fault.cut_stream(1)
    fake_google.inject(fault, contains=text)
    response = ask(gw, route, text)
    assert response.status_code == 200, response.text
    assert route.text(response.json()) == f"echo: {text}"  # whole, not the broken half
    first, second = generate_calls(fake_google)
    assert first.account_email != second.account_email  # moved on, nothing cooled
    assert cooldowns(gw) == []


def test_a_break_on_the_only_account_is_retried_there(shared: Borrowed, fake_google: Any) -> None:
    gw = shared.gw
    [account] = shared.add_accounts(1)
    text = f"the only account breaks once {uuid.uuid4().hex}"
    fake_google.inject(Fault.cut_stream(after_events=1), contains=text)
    response = ask(gw, ROUTES["chat"], text)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == f"echo: {text}"
    assert [c.account_email for c in generate_calls(fake_google)] == [account.email] * 2
    assert cooldowns(gw) == []


# -- defect 9: after a refresh, the same account ------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "prompt"),
    [("round_robin", "a conversation about {i} {u}"), ("balance", "q{i}")],
    ids=["round-robin", "no-session"],
)
def test_after_a_refresh_the_same_account_is_retried(
    shared: Borrowed, fake_google: Any, mode: str, prompt: str
) -> None:
    gw = shared.gw
    shared.configure(scheduling_mode=mode)
    accounts = shared.add_accounts(6)
    before = {a.email: fake_google.token_refresh_count(a.refresh_token) for a in accounts}
    fake_google.expire_access_tokens()  # every access token the gateway holds is now stale
    fake_google.reset()
    route = ROUTES["generateContent"]
    for i in range(len(accounts)):
        response = ask(gw, route, prompt.format(i=i, u=uuid.uuid4().hex))
        assert response.status_code == 200, (i, response.text)
    calls = generate_calls(fake_google)
    assert len(calls) == 2 * len(accounts)  # per request: the 401, then the retry
    by_email = {a.email: a for a in accounts}
    for refused, served in zip(calls[::2], calls[1::2], strict=True):
        # The fake names no account for a stale token: the token itself tells whose it was.
        account = by_email[served.account_email]
        stale = refused.headers["authorization"].removeprefix("Bearer ")
        assert refused.account_email is None and stale in account.access_tokens[:-1]
        assert served.headers["authorization"] == f"Bearer {account.access_tokens[-1]}"
    refreshed = {
        a.email: fake_google.token_refresh_count(a.refresh_token) - before[a.email]
        for a in accounts
    }
    assert refreshed == dict.fromkeys(by_email, 1)  # each stale account once, none wasted


# -- 502 messages name no internal upstream URL ------------------------------------------------
def test_a_transport_failure_says_what_happened_without_the_upstream_url(
    shared: Borrowed,
) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    dead_port = free_port()
    dead = f"http://127.0.0.1:{dead_port}/internal-upstream/v1internal"
    shared.configure(upstream_base_urls=[dead])
    for route in ROUTES.values():
        response = ask(gw, route, f"nobody is listening {uuid.uuid4().hex}")
        assert response.status_code == 502, (route.name, response.text)
        message = response.json()["error"]["message"]
        assert "could not connect" in message and "Connection refused" in message
        for secret in (str(dead_port), "127.0.0.1", "internal-upstream", "v1internal"):
            assert secret not in response.text, (route.name, message)
    assert cooldowns(gw) == []
