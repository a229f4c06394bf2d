"""Client keys on the request path: every header form of the seed, each limit just under
and just over, key states, the model allow-list on every protocol, parallel streams
against the concurrency limit, usage in the monitor, and no secret anywhere after."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fake_google import Fault
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from agproxy.keys import KeyStore
from conftest import Gateway, data_dir_store, gateway_with


class Keys:
    """Keys made in the gateway's database, as `agproxy keys create` does; the running
    gateway picks them up within a second."""

    def __init__(self, gw: Gateway) -> None:
        self.engine = data_dir_store(gw.data_dir)
        self.store = KeyStore(self.engine)
        self.gw = gw

    def create(self, name: str, **limits: Any) -> str:
        _, secret = self.store.create(name, **limits)
        self.wait_loaded()
        return secret

    def wait_loaded(self) -> None:
        time.sleep(1.3)  # the gateway polls the keys revision every second


@pytest.fixture
def gw(gateway_factory: Any, fake_google: Any) -> Iterator[tuple[Gateway, Keys]]:
    gateway, _ = gateway_with(
        gateway_factory, fake_google, 2, AGPROXY_AUTH_MODE="strict",
        AGPROXY_MONITOR_CAPTURE_BODIES="true",
    )  # fmt: skip
    keys = Keys(gateway)
    yield gateway, keys
    keys.engine.dispose()


def chat(gw: Gateway, secret: str, model: str = "gemini-3-flash", **kw: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json=body,
        timeout=30,
    )


def test_a_client_key_works_in_every_header_form(gw: tuple[Gateway, Keys]) -> None:
    gateway, keys = gw
    secret = keys.create("laptop")
    oa = openai.OpenAI(api_key=secret, base_url=gateway.base_url + "/v1", max_retries=0)
    said = oa.chat.completions.create(
        model="gemini-3-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert said.choices[0].message.content == "echo: hi"
    an = anthropic.Anthropic(api_key=secret, base_url=gateway.base_url, max_retries=0)
    assert (
        an.messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
        .content[0]
        .text
        == "echo: hi"
    )  # type: ignore[union-attr]
    ge = genai.Client(api_key=secret, http_options=types.HttpOptions(base_url=gateway.base_url))
    assert ge.models.generate_content(model="gemini-3-flash", contents="hi").text == "echo: hi"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    url = gateway.base_url + "/v1beta/models/gemini-3-flash:generateContent"
    assert httpx.post(url, params={"key": secret}, json=body, timeout=30).status_code == 200
    bare = httpx.post(url, headers={"Authorization": secret}, json=body, timeout=30)
    assert bare.status_code == 200
    # The monitor knows the key by name, and holds its secret nowhere (bodies captured).
    logs = gateway.admin("GET", "/api/logs").json()["logs"]
    assert {r["key_name"] for r in logs} == {"laptop"}
    for record in logs:
        full = gateway.admin("GET", f"/api/logs/{record['id']}").text
        assert secret not in full
    assert secret not in "".join(gateway.output) + gateway.cli("accounts", "list").stdout
    # The owner's key is unchanged, and not a client key.
    owner = chat(gateway, gateway.api_key)
    assert owner.status_code == 200
    assert gateway.admin("GET", "/api/logs").json()["logs"][0]["key_name"] is None


def test_rpm_just_under_and_just_over(gw: tuple[Gateway, Keys]) -> None:
    gateway, keys = gw
    secret = keys.create("ci", rpm=3)
    assert [chat(gateway, secret).status_code for _ in range(3)] == [200] * 3
    over = chat(gateway, secret)
    assert over.status_code == 429 and 50 <= int(over.headers["retry-after"]) <= 60
    message = over.json()["error"]["message"]
    assert "'ci'" in message and "3 requests per minute" in message and "resets in" in message
    assert chat(gateway, gateway.api_key).status_code == 200  # the owner is not limited


def test_token_limits_just_under_and_just_over(gw: tuple[Gateway, Keys]) -> None:
    gateway, keys = gw
    used = chat(gateway, gateway.api_key).json()["usage"]["total_tokens"]  # what one costs
    # A request is let in while the key's tokens are under its limit.
    secret = keys.create("small", tpm=2 * used)
    assert chat(gateway, secret).status_code == 200
    assert chat(gateway, secret).status_code == 200  # used of 2 × used: just under
    over = chat(gateway, secret)  # 2 × used of 2 × used: just over
    assert over.status_code == 429
    assert f"{2 * used} tokens per minute ({2 * used} used" in over.json()["error"]["message"]
    daily = keys.create("daily", daily_tokens=used + 1)
    assert chat(gateway, daily).status_code == 200
    assert chat(gateway, daily).status_code == 200  # used of used + 1: just under
    day_over = chat(gateway, daily)  # 2 × used: just over
    assert day_over.status_code == 429
    assert "tokens a day" in day_over.json()["error"]["message"]
    assert "00:00 UTC" in day_over.json()["error"]["message"]


def test_key_states_expired_disabled_rotated(gw: tuple[Gateway, Keys]) -> None:
    gateway, keys = gw
    expired = keys.create("old", expires_at=time.time() + 1.5)
    assert chat(gateway, expired).status_code == 200
    time.sleep(1.6)
    refused = chat(gateway, expired)
    assert refused.status_code == 401 and "expired on" in refused.json()["error"]["message"]
    secret = keys.create("tool")
    key = keys.store.find("tool")
    keys.store.update(key.id, enabled=False)
    keys.wait_loaded()
    with pytest.raises(anthropic.AuthenticationError, match="disabled"):
        anthropic.Anthropic(
            api_key=secret, base_url=gateway.base_url, max_retries=0
        ).messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
    keys.store.update(key.id, enabled=True)
    new = keys.store.rotate(key.id)
    keys.wait_loaded()
    old = chat(gateway, secret)
    assert old.status_code == 401 and secret not in old.text  # the old secret: unknown now
    assert chat(gateway, new).status_code == 200


def test_models_outside_the_allow_list_are_refused_on_every_protocol(
    gw: tuple[Gateway, Keys],
) -> None:
    gateway, keys = gw
    secret = keys.create("flash-only", models=("gemini-*-flash", "gemini-3-flash"))
    assert chat(gateway, secret, "gemini-3-flash").status_code == 200
    refused = chat(gateway, secret, "claude-sonnet-4-6")
    assert refused.status_code == 403
    assert "may use: gemini-*-flash, gemini-3-flash" in refused.json()["error"]["message"]
    with pytest.raises(anthropic.PermissionDeniedError, match="flash-only"):
        anthropic.Anthropic(
            api_key=secret, base_url=gateway.base_url, max_retries=0
        ).messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
    ge = genai.Client(api_key=secret, http_options=types.HttpOptions(base_url=gateway.base_url))
    with pytest.raises(genai_errors.ClientError) as denied:
        ge.models.generate_content(model="gemini-3-pro-high", contents="x")
    assert denied.value.code == 403


def test_concurrency_holds_with_parallel_streams(
    gw: tuple[Gateway, Keys], fake_google: Any
) -> None:
    gateway, keys = gw
    secret = keys.create("two-at-once", concurrency=2)
    fake_google.inject(Fault.slow(1.5), times=2)  # two streams that take a while
    results: list[int] = []

    def stream() -> None:
        with httpx.stream(
            "POST",
            gateway.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={"model": "gemini-3-flash", "stream": True,
                  "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        ) as response:  # fmt: skip
            response.read()
            results.append(response.status_code)

    workers = [threading.Thread(target=stream) for _ in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)  # both are in flight now
    third = chat(gateway, secret, stream=True)
    assert third.status_code == 429 and "2 requests at once" in third.text
    for worker in workers:
        worker.join(30)
    assert results == [200, 200]
    assert chat(gateway, secret).status_code == 200  # the slots came back


def test_quota_share_just_under_and_just_over(gw: tuple[Gateway, Keys]) -> None:
    """The share is the key's part of the tokens the pool served for a model group in the
    last 5 hours (everyone's, the owner's too), judged once the group served 20,000."""
    gateway, keys = gw
    secret = keys.create("shared", quota_share=40)
    big = "word " * 20_000  # the fake counts characters / 4: about 25,000 tokens
    owner = chat(gateway, gateway.api_key, messages=[{"role": "user", "content": big}])
    assert owner.status_code == 200  # the pool's Gemini use: ~25k tokens, all the owner's
    half = "word " * 12_000  # ~15k tokens: the key will hold 15k of ~40k = 37.5%
    first = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": half}]},
        timeout=30,
    )
    assert first.status_code == 200  # 0% before it: just under
    assert chat(gateway, secret).status_code == 200  # 37.5% of 40%: still under
    second = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": half}]},
        timeout=30,
    )
    assert second.status_code == 200
    over = chat(gateway, secret)  # ~55% of the pool's Gemini tokens now: just over
    assert over.status_code == 429
    message = over.json()["error"]["message"]
    assert "'shared'" in message and "its share is 40%" in message
    assert chat(gateway, secret, "claude-sonnet-4-6").status_code == 200  # another group


def test_the_daily_allowance_survives_a_restart(gw: tuple[Gateway, Keys], fake_google: Any) -> None:
    from conftest import google_env, spawn

    gateway, keys = gw
    used = chat(gateway, gateway.api_key).json()["usage"]["total_tokens"]
    secret = keys.create("daily", daily_tokens=used + 1)
    assert chat(gateway, secret).status_code == 200
    assert chat(gateway, secret).status_code == 200  # just under
    time.sleep(1.5)  # the monitor has written both records
    assert gateway.stop() == 0
    again = spawn(gateway.data_dir, gateway.port, AGPROXY_AUTH_MODE="strict",
                  **google_env(fake_google))  # fmt: skip
    try:
        over = chat(again, secret)
        assert over.status_code == 429 and "tokens a day" in over.json()["error"]["message"]
    finally:
        again.stop()
