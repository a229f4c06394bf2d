"""Keep-alives on every protocol's streams: an upstream that goes silent mid-answer (a model
thinking) must not trip a client's idle timeout. Each client below gives up after 1.5 s of
silence, the fake upstream is silent for 3 s, and the gateway pings every 0.3 s: the
official SDK must parse the whole answer all the same."""

from __future__ import annotations

import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from conftest import Gateway, gateway_with

SILENCE = 3.0
PATIENCE = httpx.Timeout(30.0, read=1.5)  # a client (or proxy) idle timeout under the silence


@pytest.fixture
def gw(gateway_factory: Any, fake_google: Any) -> Gateway:
    gateway, accounts = gateway_with(
        gateway_factory, fake_google, 1, AGPROXY_STREAM_PING_SECONDS="0.3"
    )
    from fake_google import Fault

    fake_google.inject(Fault.stall(SILENCE), email=accounts[0].email, times=10)
    return gateway


def test_openai_chat_stream_survives_a_silent_upstream(gw: Gateway) -> None:
    client = openai.OpenAI(
        api_key=gw.api_key, base_url=gw.base_url + "/v1", timeout=PATIENCE, max_retries=0
    )
    stream = client.chat.completions.create(
        model="gemini-3-flash", stream=True, messages=[{"role": "user", "content": "think slowly"}]
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: think slowly"


def test_openai_responses_stream_survives_a_silent_upstream(gw: Gateway) -> None:
    client = openai.OpenAI(
        api_key=gw.api_key, base_url=gw.base_url + "/v1", timeout=PATIENCE, max_retries=0
    )
    events = list(
        client.responses.create(model="gemini-3-flash", input="think slowly", stream=True)
    )
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "echo: think slowly"


def test_anthropic_stream_survives_a_silent_upstream(gw: Gateway) -> None:
    client = anthropic.Anthropic(
        api_key=gw.api_key,
        base_url=gw.base_url,
        timeout=anthropic.Timeout(30.0, read=1.5),
        max_retries=0,
    )
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "think slowly"}],
    ) as s:
        assert s.get_final_text() == "echo: think slowly"


def test_gemini_stream_survives_a_silent_upstream(gw: Gateway) -> None:
    # google-genai's timeout (ms) goes to httpx as one number: a limit on each read.
    client = genai.Client(
        api_key=gw.api_key, http_options=types.HttpOptions(base_url=gw.base_url, timeout=1500)
    )
    chunks = client.models.generate_content_stream(model="gemini-3-flash", contents="think slowly")
    assert "".join(c.text or "" for c in chunks) == "echo: think slowly"


def test_gemini_json_array_stream_survives_a_silent_upstream(gw: Gateway) -> None:
    # Without alt=sse the stream is one JSON array: the filler is whitespace between elements.
    with httpx.Client(timeout=PATIENCE) as client:
        answer = client.post(
            gw.base_url + "/v1beta/models/gemini-3-flash:streamGenerateContent",
            headers={"x-goog-api-key": gw.api_key},
            json={"contents": [{"role": "user", "parts": [{"text": "think slowly"}]}]},
        )
    parts = [
        p["text"] for chunk in answer.json() for p in chunk["candidates"][0]["content"]["parts"]
    ]
    assert "".join(parts) == "echo: think slowly"


def test_without_pings_the_same_client_gives_up(gateway_factory: Any, fake_google: Any) -> None:
    """The control: with pings rarer than the client's patience, it times out. This is what
    every test above would do without the keep-alives."""
    gateway, accounts = gateway_with(
        gateway_factory, fake_google, 1, AGPROXY_STREAM_PING_SECONDS="60"
    )
    from fake_google import Fault

    fake_google.inject(Fault.stall(SILENCE), email=accounts[0].email, times=10)
    client = openai.OpenAI(
        api_key=gateway.api_key, base_url=gateway.base_url + "/v1", timeout=PATIENCE, max_retries=0
    )
    with pytest.raises((openai.APITimeoutError, httpx.ReadTimeout)):
        stream = client.chat.completions.create(
            model="gemini-3-flash",
            stream=True,
            messages=[{"role": "user", "content": "think slowly"}],
        )
        list(stream)
    with pytest.raises(openai.APITimeoutError):  # and a non-streamed call
        client.chat.completions.create(
            model="gemini-3-flash", messages=[{"role": "user", "content": "think slowly"}]
        )
    # The gateway saw both clients leave (499), and the calls they waited for ended too.
    time.sleep(SILENCE)
    records = gateway.admin("GET", "/api/logs").json()["logs"][:2]
    assert [r["status"] for r in records] == [499, 499]


# -- before the answer starts: non-streamed calls, and streams slow to begin ---------------


@pytest.fixture
def slow(gateway_factory: Any, fake_google: Any) -> tuple[Gateway, Any]:
    """The upstream says nothing for SILENCE seconds before it answers at all."""
    from fake_google import Fault

    gateway, accounts = gateway_with(
        gateway_factory, fake_google, 1, AGPROXY_STREAM_PING_SECONDS="0.3"
    )
    fake_google.inject(Fault.slow(2.0), email=accounts[0].email, times=20)
    return gateway, accounts[0]


def test_non_streamed_calls_survive_a_silent_upstream(slow: tuple[Gateway, Any]) -> None:
    gw, _ = slow
    openai_client = openai.OpenAI(
        api_key=gw.api_key, base_url=gw.base_url + "/v1", timeout=PATIENCE, max_retries=0
    )
    chat = openai_client.chat.completions.create(
        model="gemini-3-flash", messages=[{"role": "user", "content": "think slowly"}]
    )
    assert chat.choices[0].message.content == "echo: think slowly"
    response = openai_client.responses.create(model="gemini-3-flash", input="think slowly")
    assert response.output_text == "echo: think slowly"
    message = anthropic.Anthropic(
        api_key=gw.api_key,
        base_url=gw.base_url,
        timeout=anthropic.Timeout(30.0, read=1.5),
        max_retries=0,
    ).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "think slowly"}],
    )
    assert message.content[0].text == "echo: think slowly"  # type: ignore[union-attr]
    gemini = genai.Client(
        api_key=gw.api_key, http_options=types.HttpOptions(base_url=gw.base_url, timeout=1500)
    )
    answer = gemini.models.generate_content(model="gemini-3-flash", contents="think slowly")
    assert answer.text == "echo: think slowly"
    # The whitespace came first: the body is still one JSON document.
    raw = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert raw.content.startswith(b"\n") and raw.json()["object"] == "chat.completion"


def test_streams_slow_to_begin_survive(slow: tuple[Gateway, Any]) -> None:
    gw, _ = slow
    client = openai.OpenAI(
        api_key=gw.api_key, base_url=gw.base_url + "/v1", timeout=PATIENCE, max_retries=0
    )
    stream = client.chat.completions.create(
        model="gemini-3-flash", stream=True, messages=[{"role": "user", "content": "think slowly"}]
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "echo: think slowly"
    )
    with anthropic.Anthropic(
        api_key=gw.api_key,
        base_url=gw.base_url,
        timeout=anthropic.Timeout(30.0, read=1.5),
        max_retries=0,
    ).messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "think slowly"}],
    ) as s:
        assert s.get_final_text() == "echo: think slowly"
    gemini = genai.Client(
        api_key=gw.api_key, http_options=types.HttpOptions(base_url=gw.base_url, timeout=1500)
    )
    chunks = gemini.models.generate_content_stream(model="gemini-3-flash", contents="think slowly")
    assert "".join(c.text or "" for c in chunks) == "echo: think slowly"


def test_a_failure_after_the_headers_is_the_protocols_error_in_the_body(
    gateway_factory: Any, fake_google: Any
) -> None:
    from fake_google import Fault

    gw, [acct] = gateway_with(gateway_factory, fake_google, 1, AGPROXY_STREAM_PING_SECONDS="0.3")
    refusal = Fault.error(400, "Request contains an invalid argument.").late(1.0)
    fake_google.inject(refusal, email=acct.email, times=2)
    late = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi"}]},
        timeout=PATIENCE,
    )
    assert late.status_code == 200  # the headers had to go out before the refusal came
    assert late.content.startswith(b"\n")
    assert "invalid argument" in late.json()["error"]["message"]
    # The monitor records what happened, not the 200 the headers said.
    record = gw.admin("GET", "/api/logs").json()["logs"][0]
    assert record["status"] == 400 and "invalid argument" in record["error"]
    # A stream: the SDK raises the error event.
    client = openai.OpenAI(
        api_key=gw.api_key, base_url=gw.base_url + "/v1", timeout=PATIENCE, max_retries=0
    )
    with pytest.raises(openai.APIError, match="invalid argument"):
        list(
            client.chat.completions.create(
                model="gemini-3-flash", stream=True, messages=[{"role": "user", "content": "hi"}]
            )
        )
    # A quick refusal is still an honest status.
    fake_google.inject(Fault.error(400, "Request contains an invalid argument."), email=acct.email)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gemini-3-flash", messages=[{"role": "user", "content": "hi"}]
        )


def test_a_client_that_leaves_while_kept_waiting_ends_the_call(
    slow: tuple[Gateway, Any],
) -> None:
    gw, _ = slow
    body = b'{"model":"gemini-3-flash","messages":[{"role":"user","content":"hi"}]}'
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {gw.api_key}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        seen = b""
        while b"\r\n\r\n1\r\n\n" not in seen:  # the headers, then the first filler (chunked)
            seen += sock.recv(4096)
        assert seen.startswith(b"HTTP/1.1 200") and b"content-length" not in seen.lower()
    time.sleep(2.5)  # past the upstream's silence: had the call gone on, it would be done
    record = gw.admin("GET", "/api/logs").json()["logs"][0]
    assert record["status"] == 499 and record["output_tokens"] is None
    ok = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}", "Content-Type": "application/json"},
        content=body,
        timeout=30,
    )
    assert ok.json()["choices"][0]["message"]["content"] == "echo: hi"
