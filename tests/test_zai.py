"""z.ai as a provider: each dispatch mode, byte-exact streaming, fallback from Google."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from fake_google import Fault
from fake_zai import KEY, STREAM, FakeZai

from conftest import add_accounts, google_env


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


def test_streaming_is_passed_through_byte_exact(gateway_factory: Any, zai: FakeZai) -> None:
    gw = gateway_factory(**zai_env(zai, "exclusive"))
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


def test_count_tokens_goes_to_zai_in_exclusive_mode(gateway_factory: Any, zai: FakeZai) -> None:
    gw = gateway_factory(**zai_env(zai, "exclusive"))
    client = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    assert (
        client.messages.count_tokens(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}]
        ).input_tokens
        == 42
    )


def _with_google(gateway_factory: Any, fake_google: Any, zai: FakeZai, mode: str) -> Any:
    gw = gateway_factory(**google_env(fake_google), **zai_env(zai, mode))
    [acct] = add_accounts(gw, fake_google, prefix="z")
    return gw, acct


def test_pooled_gives_zai_one_slot(gateway_factory: Any, fake_google: Any, zai: FakeZai) -> None:
    gw, acct = _with_google(gateway_factory, fake_google, zai, "pooled")
    before = len(zai.requests)
    providers = [ask(gw).headers.get("x-agproxy-provider", "google") for _ in range(6)]
    assert providers.count("zai") == 3 and providers.count("google") == 3  # 1 account + z.ai
    assert len(zai.requests) - before == 3
    assert len(fake_google.calls("streamGenerateContent", email=acct.email)) == 3


def test_fallback_only_when_google_cannot_serve(
    gateway_factory: Any, fake_google: Any, zai: FakeZai
) -> None:
    gw, acct = _with_google(gateway_factory, fake_google, zai, "fallback")
    assert "x-agproxy-provider" not in ask(gw).headers  # Google serves
    fake_google.inject(Fault.rate_limited(retry_delay="30s"), email=acct.email, times=5)
    limited = ask(gw)  # the one account gets 429 during this request: cooled down
    assert limited.status_code == 429
    rescued = ask(gw)
    assert rescued.status_code == 200 and rescued.headers["x-agproxy-provider"] == "zai"


def test_off_never_uses_zai(gateway_factory: Any, fake_google: Any, zai: FakeZai) -> None:
    gw, _ = _with_google(gateway_factory, fake_google, zai, "off")
    before = len(zai.requests)
    assert all("x-agproxy-provider" not in ask(gw).headers for _ in range(3))
    assert len(zai.requests) == before
