"""A provider's keys under the pool's rules (a 429 on one key moves to the next), a provider
as the Google pool's fallback, and the provider and key names in statistics and /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fake_google import Fault
from fake_providers import OPENAI_KEY, FakeOpenAI, ProviderFault

from conftest import Borrowed, Gateway, borrow, google_env, spawn

SPARE_KEY = "sk-fake-openai-spare-987654321"
PLAIN_KEY = "plainproviderkey0123456789"  # of no shape the monitor's patterns know
GOOGLE_MODEL = "gemini-3-flash"  # one the fake Google serves


@pytest.fixture(scope="module")
def router() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(keys={OPENAI_KEY, SPARE_KEY, PLAIN_KEY}).start()
    server.models = ["fake-gpt", "fake-gpt-mini", "fake-gpt-nano", GOOGLE_MODEL]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any, router: FakeOpenAI
) -> Iterator[Gateway]:
    providers = [
        {
            "name": "router",
            "kind": "openai_compatible",
            "base_url": router.base_url,
            "keys": [{"key": OPENAI_KEY, "name": "first"}, {"key": SPARE_KEY, "name": "spare"}],
            # fake-gpt is the router's alone; the Google model is the router's too, as the
            # pool's fallback.
            "models": ["fake-gpt", "fake-gpt-mini", "fake-gpt-nano", GOOGLE_MODEL],
        },
        {
            "name": "plain",
            "kind": "openai_compatible",
            "base_url": router.base_url,
            "keys": [PLAIN_KEY],
        },
    ]
    gw = spawn(
        tmp_path_factory.mktemp("resilience") / "gw",
        **google_env(fake_google_server),
        AGPROXY_PROVIDERS=json.dumps(providers),
        AGPROXY_RETRY_MAX_ATTEMPTS="4",
    )
    yield gw
    gw.stop()


@pytest.fixture
def shared(gateway: Gateway, fake_google: Any, router: FakeOpenAI) -> Iterator[Borrowed]:
    router.reset()
    with borrow(gateway, fake_google) as turn:
        assert gateway.admin("POST", "/api/logs/clear").status_code == 200
        yield turn
    router.reset()


def chat(gw: Gateway, model: str) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
        timeout=30,
    )


def last_record(gw: Gateway) -> dict[str, Any]:
    logs = gw.admin("GET", "/api/logs").json()["logs"]
    return next(r for r in logs if r.get("protocol") == "openai")


def test_a_429_on_one_key_moves_to_the_next_key(shared: Borrowed, router: FakeOpenAI) -> None:
    gw = shared.gw
    shared.add_accounts(1)  # the service runs; the router serves fake-gpt alone
    router.inject(ProviderFault.error(429, retry_after=30), key=OPENAI_KEY, times=5)
    answers = [chat(gw, "router/fake-gpt") for _ in range(3)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert all(
        "openai answered fake-gpt" in a.json()["choices"][0]["message"]["content"] for a in answers
    )
    keys_used = [r["key"] for r in router.requests]
    # The first key was asked once, refused, and then left to cool down: every other
    # request went to the spare.
    assert keys_used.count(OPENAI_KEY) == 1, keys_used
    assert keys_used.count(SPARE_KEY) == 3, keys_used
    logs = gw.admin("GET", "/api/logs").json()["logs"]
    attempts = [
        [(a["account"], a["outcome"]) for a in r["attempts"]]
        for r in logs
        if r.get("protocol") == "openai"
    ]
    # One request met the refusal and moved on; the others asked the spare alone.
    assert sorted(attempts) == [
        [("first", "429 rate_limited"), ("spare", "ok")],
        [("spare", "ok")],
        [("spare", "ok")],
    ]


def test_every_key_cooling_down_is_a_429_with_retry_after(
    shared: Borrowed, router: FakeOpenAI
) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    for key in (OPENAI_KEY, SPARE_KEY):
        router.inject(ProviderFault.error(429, retry_after=45), key=key)
    refused = chat(gw, "router/fake-gpt-mini")  # a model of its own: no cooldown before
    assert refused.status_code == 429, refused.text
    assert 40 <= int(refused.headers["retry-after"]) <= 45
    assert refused.json()["error"]["message"]
    assert OPENAI_KEY not in refused.text and SPARE_KEY not in refused.text


def test_the_provider_serves_when_every_google_account_cools_down(
    shared: Borrowed, fake_google: Any, router: FakeOpenAI
) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    served = chat(gw, GOOGLE_MODEL)
    assert served.status_code == 200 and not router.requests  # Google first
    fake_google.inject(Fault.rate_limited(retry_delay="120s"), times=10)
    rescued = chat(gw, GOOGLE_MODEL)
    assert rescued.status_code == 200, rescued.text
    assert f"openai answered {GOOGLE_MODEL}" in rescued.json()["choices"][0]["message"]["content"]
    record = last_record(gw)
    assert record["provider"] == "router"
    assert [a["outcome"] for a in record["attempts"]][-1] == "ok"
    assert any(a["outcome"].startswith("429") for a in record["attempts"])
    again = chat(gw, GOOGLE_MODEL)  # the account is cooling down: straight to the router
    assert again.status_code == 200 and len(router.requests) == 2


def test_statistics_and_metrics_name_the_provider_and_the_key(
    shared: Borrowed, router: FakeOpenAI
) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    assert chat(gw, "router/fake-gpt-nano").status_code == 200
    rows = gw.admin("GET", "/api/stats/breakdown?by=provider&hours=1").json()["rows"]
    assert any(r["provider"] == "router" and r["requests"] >= 1 for r in rows), rows
    metrics = gw.admin("GET", "/metrics").text
    assert 'agproxy_provider_requests_total{provider="router",provider_key="' in metrics
    assert OPENAI_KEY not in metrics and SPARE_KEY not in metrics
    out = gw.cli("stats", "--by", "provider", "--hours", "1").stdout
    assert "router" in out


def test_an_empty_answer_is_asked_again_and_a_cut_stream_ends_in_an_error_event(
    shared: Borrowed, router: FakeOpenAI
) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    router.inject(ProviderFault.empty_stream())
    answered = httpx.post(  # translated (Gemini to OpenAI): the provider is asked streamed
        gw.base_url + "/v1beta/models/fake-gpt-nano:generateContent",
        headers={"x-goog-api-key": gw.api_key},
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        timeout=30,
    )
    assert answered.status_code == 200, answered.text
    parts = answered.json()["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "openai answered fake-gpt-nano: hi"}]
    assert len(router.requests) == 2  # the empty answer, then a real one
    router.inject(ProviderFault.cut_stream(after_events=2))
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={
            "model": "router/fake-gpt-nano",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=30,
    ) as streamed:
        assert streamed.status_code == 200
        text = "".join(streamed.iter_text())
    # The client's stream is passed through as the provider sent it, up to the cut; then
    # an error event in OpenAI's shape ends it (no [DONE]), and the gateway stays well.
    assert text.startswith("data: ") and "data: [DONE]" not in text
    last = json.loads(text.strip().rsplit("data: ", 1)[1])
    assert "router: the answer broke off" in last["error"]["message"]
    assert "Traceback" not in gw.log()
    assert chat(gw, "router/fake-gpt-nano").status_code == 200


def test_captured_bodies_never_hold_a_providers_key(shared: Borrowed, router: FakeOpenAI) -> None:
    """A key of no known shape is scrubbed by its value: the monitor knows every
    provider's keys."""
    gw = shared.gw
    shared.add_accounts(1)
    shared.configure(monitor_capture_bodies=True)
    answered = httpx.post(  # the fake echoes the text: the key is in both bodies
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={
            "model": "plain/fake-gpt",
            "messages": [{"role": "user", "content": f"my key {PLAIN_KEY}"}],
        },
        timeout=30,
    )
    assert answered.status_code == 200 and PLAIN_KEY in answered.text
    assert router.requests[-1]["key"] == PLAIN_KEY
    logs = gw.admin("GET", "/api/logs").json()["logs"]
    record = next(r for r in logs if r.get("protocol") == "openai")
    assert record["provider"] == "plain"
    detail = gw.admin("GET", f"/api/logs/{record['id']}").text
    assert "my key" in detail and PLAIN_KEY not in detail


def test_any_id_goes_to_a_provider_listing_none_but_not_a_huge_one(
    shared: Borrowed, router: FakeOpenAI
) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    assert chat(gw, "plain/fake-gpt").status_code == 200
    before = len(router.requests)
    huge = chat(gw, "plain/" + "x" * 20_000)
    assert huge.status_code == 404 and huge.json()["error"]["message"]
    assert len(router.requests) == before  # nothing was sent upstream
