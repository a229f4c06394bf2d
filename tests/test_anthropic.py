"""Anthropic Messages through the gateway with the official `anthropic` SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from fake_google import Fault, count_tokens

from conftest import Borrowed, Gateway, add_accounts, borrow, google_env, spawn

SIGNATURE = "sig-" + "a1b2c3" * 12
TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1}},
            "required": ["city"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }
]
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAA"
    "ABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    gateway = spawn(tmp_path_factory.mktemp("anthropic"), **google_env(fake_google_server))
    add_accounts(gateway, fake_google_server, prefix="claude")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """A second gateway for the tests that bring their own account and settings."""
    gateway = spawn(tmp_path_factory.mktemp("anthropic-spare"), **google_env(fake_google_server))
    yield gateway
    gateway.stop()


@pytest.fixture
def shared(spare: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    with borrow(spare, fake_google) as turn:
        yield turn


@pytest.fixture
def client(gw: Gateway, fake_google: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)


def sent(fake: Any) -> dict[str, Any]:
    return fake.calls("streamGenerateContent")[-1].body


def test_create(client: anthropic.Anthropic, fake_google: Any) -> None:
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=256,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: Hello"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_")
    body = sent(fake_google)
    assert body["model"] == "claude-sonnet-4-6"  # dated/older ids routed by the table
    assert body["request"]["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert message.usage.input_tokens == count_tokens(body["request"]["contents"])


def test_stream_event_order_with_thinking(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Think"}],
    ) as stream:
        events = [
            e.type
            for e in stream
            if e.type
            in (
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            )
        ]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    starts = [i for i, e in enumerate(events) if e == "content_block_start"]
    stops = [i for i, e in enumerate(events) if e == "content_block_stop"]
    assert len(starts) == len(stops) == 2 and all(a < b for a, b in zip(starts, stops, strict=True))
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.signature  # type: ignore[union-attr]
    assert text.type == "text" and text.text == "echo: Think"  # type: ignore[union-attr]


def test_tool_use_with_thinking_carries_the_signature_back(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    fake_google.script(
        parts=[
            {"text": "I should look it up.", "thought": True},
            {"text": "", "thoughtSignature": SIGNATURE},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        ]
    )
    thinking = {"type": "enabled", "budget_tokens": 2048}
    first = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=8000,
        thinking=thinking,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    block_thinking, block_tool = first.content
    assert block_thinking.signature == SIGNATURE  # type: ignore[union-attr]
    assert block_tool.type == "tool_use" and block_tool.input == {"city": "Paris"}  # type: ignore[union-attr]
    declared = sent(fake_google)["request"]["tools"][0]["functionDeclarations"][0]
    assert declared["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "[Constraint: minLen: 1]"}},
        "required": ["city"],
    }

    second = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=8000,
        thinking=thinking,  # type: ignore[arg-type]
        tools=TOOLS,
        messages=[  # type: ignore[arg-type]
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": block_tool.id,  # type: ignore[union-attr]
                        "content": "18°C",
                    }
                ],
            },
        ],
    )
    assert second.content[-1].text.startswith("echo:")  # type: ignore[union-attr]
    model_turn = sent(fake_google)["request"]["contents"][1]
    assert model_turn["parts"][0] == {
        "text": "I should look it up.",
        "thought": True,
        "thoughtSignature": SIGNATURE,
    }
    assert model_turn["parts"][1]["thoughtSignature"] == SIGNATURE
    result = sent(fake_google)["request"]["contents"][2]["parts"][0]["functionResponse"]
    assert result == {
        "name": "get_weather",
        "id": block_tool.id,  # type: ignore[union-attr]
        "response": {"result": "18°C"},
    }


def test_parallel_tool_use_and_image_input(client: anthropic.Anthropic, fake_google: Any) -> None:
    fake_google.script(
        parts=[
            {"functionCall": {"name": "get_weather", "args": {"city": "A"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "B"}}},
        ]
    )
    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=512,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1},
                    },
                    {"type": "text", "text": "Weather in A and B?"},
                ],
            }
        ],
    )
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "A"}, {"city": "B"}]  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2  # type: ignore[union-attr]
    parts = sent(fake_google)["request"]["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "image/png", "data": PNG_1X1}}


def test_count_tokens(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "count these words please"}],
    )
    assert counted.input_tokens == count_tokens(
        [{"role": "user", "parts": [{"text": "count these words please"}]}]
    )


def test_claude_code_request_shape(gw: Gateway, fake_google: Any) -> None:
    """What Claude Code 2.x sends: ?beta=true, beta headers, adaptive thinking, unknown
    fields, a newer model id, a system message inside messages."""
    response = httpx.post(
        gw.base_url + "/v1/messages?beta=true",
        headers={
            "x-api-key": gw.api_key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        },
        json={
            "model": "claude-sonnet-4-9-20270101",
            "max_tokens": 64000,
            "stream": False,
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "context_management": {"edits": []},
            "metadata": {"user_id": "user_abc"},
            "system": [
                {
                    "type": "text",
                    "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "messages": [
                {"role": "system", "content": "Extra rules."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
                    ],
                },
            ],
            "tools": TOOLS,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-agproxy-model"] == "claude-sonnet-4-6"
    assert response.headers["request-id"].startswith("req_")
    system = sent(fake_google)["request"]["systemInstruction"]["parts"][0]["text"]
    assert system == "You are Claude Code.\n\nExtra rules."


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (
            {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "x"}]},
            400,
            "invalid_request_error",
        ),  # max_tokens missing
        (
            {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            400,
            "invalid_request_error",
        ),
        (
            {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": []},
            400,
            "invalid_request_error",
        ),
        (
            {
                "model": "gpt-unknown-9",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
            404,
            "not_found_error",
        ),
    ],
)
def test_errors_in_anthropic_shape(gw: Gateway, body: dict, status: int, kind: str) -> None:
    response = httpx.post(
        gw.base_url + "/v1/messages", json=body, headers={"x-api-key": gw.api_key}
    )
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == kind


def test_rate_limited_everywhere_is_a_429_with_retry_after(
    shared: Borrowed, fake_google: Any
) -> None:
    from fake_google import Fault

    gw = shared.gw
    [acct] = shared.add_accounts(prefix="limited")
    fake_google.inject(Fault.rate_limited(retry_delay="7s"), email=acct.email, times=20)
    response = httpx.post(
        gw.base_url + "/v1/messages",
        headers={"x-api-key": gw.api_key},
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "limited?"}],
        },
    )
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 6 <= int(response.headers["retry-after"]) <= 8


def test_background_requests_go_to_the_background_model(shared: Borrowed) -> None:
    gw = shared.gw
    shared.configure(background_model="gemini-3-flash")
    shared.add_accounts(prefix="bg")

    def served(model: str, text: str) -> str:
        response = httpx.post(
            gw.base_url + "/v1/messages",
            headers={"x-api-key": gw.api_key},
            json={
                "model": model,
                "max_tokens": 50,
                "messages": [{"role": "user", "content": text}],
            },
        )
        assert response.status_code == 200, response.text
        return response.headers["x-agproxy-model"]

    assert served("claude-haiku-4-5-20251001", "hello") == "gemini-3-flash"
    assert served("claude-sonnet-4-6", "Please write a 5-10 word title for this chat") == (
        "gemini-3-flash"
    )
    assert served("claude-sonnet-4-6", "Refactor this function") == "claude-sonnet-4-6"


def test_slow_streams_get_ping_events(shared: Borrowed, fake_google: Any) -> None:
    from fake_google import Fault

    gw = shared.gw
    shared.configure(stream_ping_seconds=0.3)
    [acct] = shared.add_accounts(prefix="ping")
    fake_google.inject(Fault.stall(1.5), email=acct.email)
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/messages",
        timeout=30,
        headers={"x-api-key": gw.api_key},
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "slow one please"}],
        },
    ) as r:
        kinds = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
    assert kinds.count("ping") >= 2
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
    "fine-grained-tool-streaming-2025-05-14",
    "user-agent": "claude-cli/2.0.14 (external, cli)",
    "x-app": "cli",
}


def test_claude_code_replay_every_tool_schema_is_accepted(gw: Gateway, fake_google: Any) -> None:
    """A Claude Code request (tests/fixtures/claude_code_request.json: 24 tools with the
    schema features Claude Code and MCP servers use, a long cached system prompt, thinking,
    streaming). The fake refuses any schema keyword Gemini rejects, so a 200 means every
    declaration was cleaned into what the backend takes."""
    import json
    from pathlib import Path

    body = json.loads((Path(__file__).parent / "fixtures" / "claude_code_request.json").read_text())
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/messages?beta=true",
        json=body,
        timeout=60,
        headers={"x-api-key": gw.api_key, **CLAUDE_CODE_HEADERS},
    ) as response:
        kinds = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert response.status_code == 200
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    sent_body = sent(fake_google)
    declarations = sent_body["request"]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == [t["name"] for t in body["tools"]]
    query = next(d for d in declarations if d["name"] == "mcp__db__query")
    assert query["parameters"]["properties"]["options"]["properties"]["timeout_ms"] == {
        "type": "integer",
        "description": "[Constraint: exclMin: 0]",
    }  # $ref inlined
    assert "cache_control" not in json.dumps(sent_body)
    thinking = sent_body["request"]["generationConfig"]["thinkingConfig"]
    assert thinking == {"includeThoughts": True, "thinkingBudget": 31999}


def test_a_refused_signature_is_retried_without_signatures(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    history: list[Any] = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "forged-" + "x" * 60},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "a"},
            ],
        },
        {"role": "user", "content": "again"},
    ]
    calls = len(fake_google.calls("streamGenerateContent"))
    answer = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=4000,
        messages=history,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert answer.content[-1].text.startswith("echo:")  # type: ignore[union-attr]
    refused, retried = fake_google.calls("streamGenerateContent")[calls:]
    assert refused.body["request"]["contents"][1]["parts"][0]["thoughtSignature"].startswith(
        "forged-"
    )
    contents = retried.body["request"]["contents"]
    # The thinking went back as plain text, thinking was off, and the model was told why.
    assert contents[1]["parts"] == [{"text": "hmm"}, {"text": "a"}]
    assert "thinkingConfig" not in retried.body["request"]["generationConfig"]
    assert contents[2]["parts"][-1]["text"].startswith("again\n\n[System Recovery]")
    # Unsigned thinking (a client that lost it) goes back as plain text at once.
    history[1]["content"][0].pop("signature")
    ok = client.messages.create(model="claude-sonnet-4-6", max_tokens=4000, messages=history)
    assert ok.content[-1].text.startswith("echo:")  # type: ignore[union-attr]
    assert sent(fake_google)["request"]["contents"][1]["parts"][0] == {"text": "hmm"}


def test_a_prompt_over_the_context_limit_says_prompt_is_too_long(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    fake_google.inject(
        Fault.invalid_argument(
            "The input token count (1200000) exceeds the maximum number of tokens allowed "
            "(1048576)."
        )
    )
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=[{"role": "user", "content": "long " * 10}],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("Prompt is too long") and "1200000" in message


@pytest.mark.parametrize(
    "content",
    [
        "Warmup",
        [{"type": "text", "text": "Warmup"}],
        [{"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": "Warmup"}],
    ],
)
def test_claude_code_warmup_is_answered_locally(
    gw: Gateway, fake_google: Any, content: Any
) -> None:
    before = len(fake_google.calls("streamGenerateContent"))
    body = {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": content}],
    }
    headers = {"x-api-key": gw.api_key, "anthropic-version": "2023-06-01"}
    reply = httpx.post(gw.base_url + "/v1/messages", headers=headers, json=body, timeout=10)
    assert reply.status_code == 200 and reply.headers["x-warmup-intercepted"] == "true"
    assert reply.json()["content"] == [{"type": "text", "text": "OK"}]
    assert reply.json()["stop_reason"] == "end_turn"
    client = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    with client.messages.stream(**body) as stream:  # type: ignore[arg-type]
        assert stream.get_final_text() == "OK"
    assert len(fake_google.calls("streamGenerateContent")) == before  # no quota spent
    # A real question that mentions warm-ups is not one.
    body["messages"] = [{"role": "user", "content": "Warmup exercises " + "x" * 100}]
    assert (
        httpx.post(gw.base_url + "/v1/messages", headers=headers, json=body, timeout=30)
        .json()["content"][0]["text"]
        .startswith("echo:")
    )


def test_claude_code_telemetry_is_accepted_and_not_recorded(gw: Gateway) -> None:
    for path in ("/v1/api/event_logging/batch", "/v1/api/event_logging"):
        reply = httpx.post(
            gw.base_url + path,
            json={"events": [{"name": "tengu_start"}]},
            headers={"x-api-key": gw.api_key},
            timeout=10,
        )
        assert reply.status_code == 200 and reply.content == b""
    recorded = gw.admin("GET", "/api/logs", params={"q": "event_logging"}).json()["logs"]
    assert recorded == []


def test_url_image_sources_are_fetched(shared: Borrowed, fake_google: Any) -> None:
    import base64

    from conftest import ImageServer

    images = ImageServer(base64.b64decode(PNG_1X1))
    gw = shared.gw
    shared.configure(allow_private_image_urls=True)
    shared.add_accounts(prefix="url")
    response = httpx.post(
        gw.base_url + "/v1/messages",
        headers={"x-api-key": gw.api_key},
        timeout=30,
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "url", "url": images.url + "/fox.png"},
                        },
                        {"type": "text", "text": "what?"},
                    ],
                }
            ],
        },
    )
    assert response.status_code == 200, response.text
    part = sent(fake_google)["request"]["contents"][0]["parts"][0]
    assert part == {"inlineData": {"mimeType": "image/png", "data": PNG_1X1}}
    images.server.shutdown()


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [
        ("server_error_500", 502, "api_error"),  # the upstream's 500 is a bad gateway
        ("server_error_503", 503, "overloaded_error"),
        ("forbidden", 503, "overloaded_error"),  # the only account is out: nobody can serve
        ("invalid", 400, "invalid_request_error"),
    ],
)
def test_every_upstream_error_class(
    shared: Borrowed, fake_google: Any, fault: str, status: int, kind: str
) -> None:
    from fake_google import Fault

    gw = shared.gw
    [acct] = shared.add_accounts(prefix="err")
    injected = {
        "server_error_500": Fault.server_error(500),
        "server_error_503": Fault.server_error(503),
        "forbidden": Fault.forbidden(),
        "invalid": Fault.invalid_argument("bad input"),
    }
    fake_google.inject(injected[fault], email=acct.email, times=10)
    response = httpx.post(
        gw.base_url + "/v1/messages",
        headers={"x-api-key": gw.api_key},
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["error"]["message"]
