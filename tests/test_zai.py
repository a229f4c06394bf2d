"""z.ai as a provider: each dispatch mode, byte-exact streaming, fallback from Google."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from fake_google import Fault
from fake_zai import KEY, STREAM, FakeZai, zai_error

from conftest import Borrowed, Gateway, borrow, google_env, spawn


@pytest.fixture(scope="module")
def zai() -> Iterator[FakeZai]:
    server = FakeZai().start()
    yield server
    server.stop()


def zai_env(zai: FakeZai, mode: str) -> dict[str, str]:
    return {
        "AGPROXY_ZAI_BASE_URL": zai.base_url,
        "AGPROXY_ZAI_API_KEY": KEY,
        "AGPROXY_ZAI_DISPATCH_MODE": mode,
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway for the tests that need no start-up of their own: each sets the z.ai
    settings it wants (`with_zai`) and has them removed afterwards."""
    gw = spawn(tmp_path_factory.mktemp("zai") / "gw", **google_env(fake_google_server))
    yield gw
    gw.stop()


@pytest.fixture
def shared(gateway: Gateway, fake_google: Any, zai: FakeZai) -> Iterator[Borrowed]:
    """The module's gateway with an empty monitor and a fake z.ai without faults."""
    zai.reset()
    with borrow(gateway, fake_google) as turn:
        assert gateway.admin("POST", "/api/logs/clear").status_code == 200
        yield turn
    zai.reset()


def with_zai(shared: Borrowed, zai: FakeZai, mode: str) -> Gateway:
    """The z.ai settings of zai_env() through the admin API, with a key of the test's own
    (the gateway keeps a key's cooldowns and refusals while it knows the key); in exclusive
    mode serving at once (z.ai alone can), else once an account is added."""
    key = f"{KEY}-{uuid.uuid4().hex[:8]}"
    zai.keys.add(key)
    shared.configure(zai_base_url=zai.base_url, zai_api_key=key, zai_dispatch_mode=mode)
    if mode == "exclusive":
        started = shared.gw.admin("POST", "/api/proxy/start")
        assert started.status_code == 200 and started.json()["running"] is True, started.text
    return shared.gw


def ask(gw: Any, model: str = "claude-sonnet-4-6", **extra: Any) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/messages",
        timeout=30,
        headers={"x-api-key": gw.api_key, "anthropic-version": "2023-06-01"},
        json={
            "model": model,
            "max_tokens": 64,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
                    ],
                }
            ],
            **extra,
        },
    )


def test_exclusive_without_google_accounts(gateway_factory: Any, zai: FakeZai) -> None:
    gw = gateway_factory(**zai_env(zai, "exclusive"))
    assert gw.admin("GET", "/api/proxy/status").json()["running"] is True  # z.ai alone
    before = len(zai.requests)
    for model, glm in (
        ("claude-sonnet-4-6", "glm-4.7"),
        ("claude-opus-4-9", "glm-4.7"),
        ("claude-haiku-4-5-20251001", "glm-4.5-air"),
        ("glm-4.6", "glm-4.6"),
    ):
        response = ask(gw, model)
        assert response.status_code == 200
        assert response.json()["content"][0]["text"] == f"z.ai answered as {glm}"
    forwarded = zai.requests[before]
    assert forwarded["headers"]["x-api-key"] == KEY
    assert gw.api_key not in str(forwarded["headers"])  # the client's key is not passed on
    assert "cache_control" not in str(forwarded["body"])


def test_streaming_is_passed_through_byte_exact(shared: Borrowed, zai: FakeZai) -> None:
    gw = with_zai(shared, zai, "exclusive")
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/messages",
        headers={"x-api-key": gw.api_key},
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    ) as response:
        received = b"".join(response.iter_raw())
    assert received == STREAM
    assert response.headers["content-type"].startswith("text/event-stream")
    # The monitor read the token counts from the stream it passed through untouched.
    [record] = gw.admin("GET", "/api/logs").json()["logs"]
    assert (record["provider"], record["requested_model"], record["routed_model"]) == (
        "zai",
        "claude-sonnet-4-6",
        "glm-4.7",
    )
    assert (record["input_tokens"], record["output_tokens"], record["status"]) == (3, 4, 200)
    ask(gw)  # and from a JSON answer
    newest = gw.admin("GET", "/api/logs").json()["logs"][0]
    assert (newest["input_tokens"], newest["output_tokens"]) == (3, 5)
    client = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert stream.get_final_text() == "hello from z.ai"


def test_count_tokens_goes_to_zai_in_exclusive_mode(shared: Borrowed, zai: FakeZai) -> None:
    gw = with_zai(shared, zai, "exclusive")
    client = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    assert (
        client.messages.count_tokens(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}]
        ).input_tokens
        == 42
    )


def _with_google(shared: Borrowed, zai: FakeZai, mode: str) -> Any:
    gw = with_zai(shared, zai, mode)
    [acct] = shared.add_accounts(prefix="z")
    return gw, acct


def test_pooled_gives_zai_one_slot(shared: Borrowed, fake_google: Any, zai: FakeZai) -> None:
    gw, acct = _with_google(shared, zai, "pooled")
    before = len(zai.requests)
    providers = [ask(gw).headers.get("x-agproxy-provider", "google") for _ in range(6)]
    assert providers.count("zai") == 3 and providers.count("google") == 3  # 1 account + z.ai
    assert len(zai.requests) - before == 3
    assert len(fake_google.calls("streamGenerateContent", email=acct.email)) == 3


def test_fallback_only_when_google_cannot_serve(
    shared: Borrowed, fake_google: Any, zai: FakeZai
) -> None:
    gw, acct = _with_google(shared, zai, "fallback")
    assert "x-agproxy-provider" not in ask(gw).headers  # Google serves
    fake_google.inject(Fault.rate_limited(retry_delay="30s"), email=acct.email, times=5)
    # The one account gets a 429 during this request and cools down: the same request
    # fails over to z.ai, and the client never sees the 429.
    rescued = ask(gw)
    assert rescued.status_code == 200 and rescued.headers["x-agproxy-provider"] == "zai"
    record = gw.admin("GET", "/api/logs").json()["logs"][0]
    assert [a["outcome"] for a in record["attempts"]] == ["429 rate_limited", "ok"]
    assert record["attempts"][1]["account"] == "z.ai" and record["provider"] == "zai"
    # While the account cools down, z.ai serves at once (Google is not asked).
    google_calls = len(fake_google.calls("streamGenerateContent", email=acct.email))
    assert ask(gw).headers["x-agproxy-provider"] == "zai"
    assert len(fake_google.calls("streamGenerateContent", email=acct.email)) == google_calls


def test_off_never_uses_zai(shared: Borrowed, zai: FakeZai) -> None:
    gw, _ = _with_google(shared, zai, "off")
    before = len(zai.requests)
    assert all("x-agproxy-provider" not in ask(gw).headers for _ in range(3))
    assert len(zai.requests) == before


# -- z.ai under the same resilience policy as the Google pool ------------------------------


@pytest.fixture
def exclusive(shared: Borrowed, zai: FakeZai) -> Gateway:
    return with_zai(shared, zai, "exclusive")


def test_a_zai_5xx_is_retried_and_the_monitor_shows_each_attempt(
    exclusive: Any, zai: FakeZai
) -> None:
    zai.inject(529, zai_error(529, "overloaded_error", "Overloaded"))
    before = len(zai.requests)
    client = anthropic.Anthropic(
        api_key=exclusive.api_key, base_url=exclusive.base_url, max_retries=0
    )
    answer = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.content[0].text == "z.ai answered as glm-4.7"
    assert len(zai.requests) - before == 2
    [record] = exclusive.admin("GET", "/api/logs").json()["logs"]
    assert [(a["account"], a["outcome"]) for a in record["attempts"]] == [
        ("z.ai", "529 capacity"),
        ("z.ai", "ok"),
    ]
    # Failing on every attempt: the client gets the upstream's failure, not a 429.
    zai.inject(503, zai_error(503, "api_error", "down"), times=10)
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert failed.value.status_code == 503 and "down" in str(failed.value)


def test_a_bad_request_is_zais_answer_as_it_is(exclusive: Any, zai: FakeZai) -> None:
    body = zai_error(400, "invalid_request_error", "max_tokens: must be positive")
    zai.inject(400, body)
    before = len(zai.requests)
    response = ask(exclusive)
    assert (response.status_code, response.content) == (400, body)
    assert len(zai.requests) - before == 1  # the request's fault: not retried


def test_a_rate_limited_key_cools_down_and_the_client_is_told_when(
    exclusive: Any, zai: FakeZai
) -> None:
    zai.inject(429, zai_error(429, "rate_limit_error", "slow down"), {"retry-after": "40"})
    first = ask(exclusive)
    assert first.status_code == 429 and 35 <= int(first.headers["retry-after"]) <= 40
    assert first.json()["type"] == "error"
    before = len(zai.requests)
    again = ask(exclusive)  # the key is cooling down: z.ai is not asked
    assert again.status_code == 429 and "z.ai" in again.json()["error"]["message"]
    assert len(zai.requests) == before


def test_pooled_fails_over_to_google_when_zai_refuses_its_key(
    shared: Borrowed, zai: FakeZai
) -> None:
    gw, acct = _with_google(shared, zai, "pooled")
    zai.inject(401, zai_error(401, "authentication_error", "invalid x-api-key"), times=5)
    served = [ask(gw) for _ in range(4)]  # z.ai's turn comes in the first two
    assert all(r.status_code == 200 for r in served)
    assert all("x-agproxy-provider" not in r.headers for r in served)  # Google answered all
    refused = [r for r in gw.admin("GET", "/api/logs").json()["logs"] if len(r["attempts"]) == 2]
    assert [(a["account"], a["outcome"]) for a in refused[0]["attempts"]] == [
        ("z.ai", "401 auth_expired"),
        (
            acct.email[0] + "***" + acct.email.split("@")[0][-1] + "@" + acct.email.split("@")[1],
            "ok",
        ),
    ]
    assert len(refused) == 1  # the refused key is set aside: z.ai's next turn skips it
