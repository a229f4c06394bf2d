"""A 429 caused by a request's content (Google's bare RESOURCE_EXHAUSTED: no quota reason,
no reset time) must not freeze the pool: it is told from a rate limit, the client gets a
clear error it will not retry, no account cools down, and a prompt rewrite defuses it."""

from __future__ import annotations

import threading
import time
from typing import Any

import anthropic
import openai
import pytest
from fake_google import Fault

from conftest import Gateway, gateway_with

TRIGGER = "You are Claude Code, Anthropic's official CLI for Claude."
BARE = "Resource has been exhausted (e.g. check quota)."


def ask(gw: Gateway, system: str, text: str = "hello") -> Any:
    client = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    return client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        system=system,
        messages=[{"role": "user", "content": text}],
    )


def chat(gw: Gateway, text: str) -> str:
    client = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    answer = client.chat.completions.create(
        model="gemini-3-flash", messages=[{"role": "user", "content": text}]
    )
    return str(answer.choices[0].message.content)


def cooling(gw: Gateway) -> list[dict[str, Any]]:
    board = gw.admin("GET", "/api/dashboard").json()
    return [item for item in board["attention"] if item["state"] == "cooling_down"]


@pytest.fixture
def pool(gateway_factory: Any, fake_google: Any) -> tuple[Gateway, list[Any]]:
    gw, accounts = gateway_with(gateway_factory, fake_google, 3)
    for i in range(6):  # every account serves something: they are known to work
        assert chat(gw, f"warm up {i}") == f"echo: warm up {i}"
    served = {r.account_email for r in fake_google.calls("streamGenerateContent")}
    assert served == {a.email for a in accounts}
    return gw, accounts


def test_refused_content_is_told_apart_and_cools_nothing(
    pool: tuple[Gateway, list[Any]], fake_google: Any
) -> None:
    gw, accounts = pool
    fake_google.block_content(TRIGGER)
    others: list[str] = []

    def meanwhile() -> None:
        for i in range(5):
            others.append(chat(gw, f"other {i}"))

    worker = threading.Thread(target=meanwhile)
    worker.start()
    began = time.monotonic()
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(gw, TRIGGER)
    assert time.monotonic() - began < 5
    worker.join(30)
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert "content refused" in message and "prompt_rewrites" in message
    assert others == [f"echo: other {i}" for i in range(5)]  # the pool kept serving
    assert cooling(gw) == []  # and no account was cooled down for it
    record = next(r for r in gw.admin("GET", "/api/logs").json()["logs"] if r["status"] == 400)
    outcomes = [a["outcome"] for a in record["attempts"]]
    assert outcomes == ["429 bare", "429 bare", "content_blocked"]
    # Every account still serves: three more conversations land on all three.
    before = len(fake_google.calls("streamGenerateContent"))
    assert [chat(gw, f"after {i}") for i in range(3)] == [f"echo: after {i}" for i in range(3)]
    after = fake_google.calls("streamGenerateContent")[before:]
    assert {r.account_email for r in after} == {a.email for a in accounts}

    # A rewrite rule defuses the sentence: the same request now succeeds, and the
    # upstream saw the rewritten system prompt.
    rule = {"find": "Anthropic's official CLI for Claude", "replace": "a coding assistant"}
    saved = gw.admin("PUT", "/api/config", json={"prompt_rewrites": [rule]})
    assert saved.status_code == 200, saved.text
    answer = ask(gw, TRIGGER, "hello again")
    assert answer.content[0].text == "echo: hello again"  # type: ignore[union-attr]
    sent = fake_google.calls("streamGenerateContent")[-1].body["request"]["systemInstruction"]
    said = " ".join(p["text"] for p in sent["parts"])
    assert "a coding assistant" in said and "official CLI" not in said


def test_a_bare_429_that_a_probe_confirms_is_a_rate_limit_cools_the_account(
    gateway_factory: Any, fake_google: Any
) -> None:
    """One account, never used yet: a bare 429 is judged by a tiny probe. The probe gets a
    429 too, so the account is rate limited: it cools down and the client is told so."""
    gw, [acct] = gateway_with(gateway_factory, fake_google, 1)
    fake_google.inject(Fault.error(429, BARE), email=acct.email, times=2)
    client = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gemini-3-flash", messages=[{"role": "user", "content": "hi"}]
        )
    assert [c["email"] for c in cooling(gw)] == [acct.email]
    probes = fake_google.calls("generateContent", email=acct.email)
    assert len(probes) == 1  # the probe is one tiny non-streamed call
    assert probes[0].body["request"]["generationConfig"]["maxOutputTokens"] == 8


def test_a_bare_429_that_a_probe_contradicts_is_refused_content(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google, 1)
    fake_google.block_content(TRIGGER)
    with pytest.raises(anthropic.BadRequestError, match="content refused"):
        ask(gw, TRIGGER)
    assert cooling(gw) == []
    assert len(fake_google.calls("generateContent", email=acct.email)) == 1  # the probe


def test_a_bare_429_on_one_account_then_success_on_another_cools_the_first(
    pool: tuple[Gateway, list[Any]], fake_google: Any
) -> None:
    """The same request served by the next account: the first one's 429 was its own."""
    gw, accounts = pool
    fake_google.inject(Fault.error(429, BARE), times=1)
    assert chat(gw, "one more") == "echo: one more"
    limited = [c["email"] for c in cooling(gw)]
    assert len(limited) == 1 and limited[0] in {a.email for a in accounts}
