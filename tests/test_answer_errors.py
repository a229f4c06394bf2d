"""Errors the backend sends as answers (200 OK, the error sentence as the model's text) are
failures: retried on another account or returned as a clear error, never passed on as a
success, streamed and not."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from conftest import Gateway, gateway_with

OUTDATED = (
    "This version of Antigravity is no longer supported. Please update to receive the "
    "latest features!"
)
RETIRED = "gemini-3-flash is no longer available. Please switch to gemini-3.5-flash."


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)


def ask(gw: Gateway, stream: bool, text: str = "hello") -> str:
    messages: Any = [{"role": "user", "content": text}]
    if stream:
        chunks = client(gw).chat.completions.create(
            model="gemini-3-flash", messages=messages, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = client(gw).chat.completions.create(model="gemini-3-flash", messages=messages)
    return str(answer.choices[0].message.content)


@pytest.fixture
def pair(gateway_factory: Any, fake_google: Any) -> tuple[Gateway, list[Any]]:
    return gateway_with(gateway_factory, fake_google, 2)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_error_answer_on_one_account_is_retried_on_another(
    pair: tuple[Gateway, list[Any]], fake_google: Any, stream: bool
) -> None:
    gw, accounts = pair
    fake_google.script(email=accounts[0].email, parts=[{"text": RETIRED}], times=5)
    answers = [ask(gw, stream, f"q{i}") for i in range(3)]
    assert answers == [f"echo: q{i}" for i in range(3)]  # never the error sentence
    records = gw.admin("GET", "/api/logs").json()["logs"]
    retried = [r for r in records if len(r["attempts"]) == 2]
    assert retried, "the account that answered with an error was asked at least once"
    assert retried[0]["attempts"][0]["outcome"] == "200 answer_was_error (not_found)"
    assert all(r["status"] == 200 for r in records)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_retired_model_everywhere_is_a_404_naming_its_successor(
    pair: tuple[Gateway, list[Any]], fake_google: Any, stream: bool
) -> None:
    gw, _ = pair
    fake_google.script(parts=[{"text": RETIRED}], times=10)
    with pytest.raises(openai.NotFoundError) as refused:
        ask(gw, stream)
    message = str(refused.value)
    assert "no longer available" in message and "gemini-3.5-flash" in message
    assert "model_mapping" in message
    # The Anthropic SDK gets the same, in its protocol.
    fake_google.script(parts=[{"text": RETIRED}], times=10)
    with pytest.raises(anthropic.NotFoundError, match="gemini-3.5-flash"):
        anthropic.Anthropic(
            api_key=gw.api_key, base_url=gw.base_url, max_retries=0
        ).messages.create(
            model="gemini-3-flash", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_outdated_client_is_returned_at_once_naming_the_setting(
    pair: tuple[Gateway, list[Any]], fake_google: Any, stream: bool
) -> None:
    gw, _ = pair
    fake_google.script(parts=[{"text": OUTDATED}], times=10)
    before = len(fake_google.calls("streamGenerateContent"))
    with pytest.raises(openai.APIStatusError) as refused:
        ask(gw, stream)
    assert refused.value.status_code == 502
    assert "upstream_client_version" in str(refused.value)
    assert len(fake_google.calls("streamGenerateContent")) - before == 1  # not retried
    [record] = [r for r in gw.admin("GET", "/api/logs").json()["logs"] if r["status"] == 502]
    assert record["attempts"][0]["outcome"] == "200 answer_was_error (outdated_client)"


def test_the_gemini_native_route_checks_its_answers_too(
    pair: tuple[Gateway, list[Any]], fake_google: Any
) -> None:
    from google import genai
    from google.genai import errors, types

    gw, _ = pair
    fake_google.script(parts=[{"text": OUTDATED}], times=10)
    gemini = genai.Client(api_key=gw.api_key, http_options=types.HttpOptions(base_url=gw.base_url))
    with pytest.raises(errors.APIError) as refused:
        gemini.models.generate_content(model="gemini-3-flash", contents="hi")
    assert refused.value.code == 502 and "upstream_client_version" in str(refused.value)


def test_patterns_are_a_setting(pair: tuple[Gateway, list[Any]], fake_google: Any) -> None:
    gw, _ = pair
    saved = gw.admin("PUT", "/api/config", json={"answer_error_patterns": ["quota panic"]})
    assert saved.status_code == 200, saved.text
    fake_google.script(parts=[{"text": "Quota panic: try later"}], times=10)
    with pytest.raises(openai.APIStatusError) as refused:
        ask(gw, False)
    assert refused.value.status_code == 502 and "Quota panic" in str(refused.value)
    fake_google.reset()  # the default sentences are no longer patterns: passed on as text
    fake_google.script(parts=[{"text": OUTDATED}], times=1)
    assert ask(gw, False) == OUTDATED
    bad = gw.admin("PUT", "/api/config", json={"answer_error_patterns": ["no"]})
    assert bad.status_code == 400 and "4 to 500 characters" in bad.text
