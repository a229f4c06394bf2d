"""The fake OpenAI, Anthropic and Gemini servers, checked with the official SDKs."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fake_providers import (
    ANTHROPIC_KEY,
    GEMINI_KEY,
    OPENAI_KEY,
    FakeAnthropic,
    FakeGeminiKey,
    FakeOpenAI,
    ProviderFault,
)
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

OTHER_KEY = "sk-fake-other-key-0123456789"
# What a client meets when a stream is cut: the SDK's own error or its HTTP library's
# (anthropic 2.x ships its own copy of httpx, `httpx2`).
_HTTP_ERRORS: list[type[Exception]] = [httpx.HTTPError]
with contextlib.suppress(ImportError):
    import httpx2

    _HTTP_ERRORS.append(httpx2.HTTPError)
STREAM_ERRORS = (*_HTTP_ERRORS, openai.APIError, anthropic.APIError, genai_errors.APIError)


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGeminiKey]:
    fake = FakeGeminiKey().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _clean(
    fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGeminiKey
) -> Iterator[None]:
    yield
    for fake, key in (
        (fake_openai, OPENAI_KEY),
        (fake_anthropic, ANTHROPIC_KEY),
        (fake_gemini, GEMINI_KEY),
    ):
        fake.reset()
        fake.keys = {key}


def oai(fake: FakeOpenAI, key: str = OPENAI_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=fake.base_url, max_retries=0)


def ant(fake: FakeAnthropic, key: str = ANTHROPIC_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=fake.base_url, max_retries=0)


_GEMINI_CLIENTS: dict[tuple[str, str], genai.Client] = {}


def gem(fake: FakeGeminiKey, key: str = GEMINI_KEY) -> genai.Client:
    """A genai client, kept: one closes its HTTP client when it is garbage collected, which
    breaks `gem(fake).models.generate_content(...)` mid-call."""
    if (fake.base_url, key) not in _GEMINI_CLIENTS:
        options = types.HttpOptions(base_url=fake.base_url, api_version="v1beta")
        _GEMINI_CLIENTS[fake.base_url, key] = genai.Client(api_key=key, http_options=options)
    return _GEMINI_CLIENTS[fake.base_url, key]


OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": "get_weather", "input_schema": {"type": "object"}},
    {"name": "get_time", "input_schema": {"type": "object"}},
]
GEMINI_TOOLS = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name="get_weather", description="weather"),
            types.FunctionDeclaration(name="get_time", description="time"),
        ]
    )
]


# -- OpenAI ------------------------------------------------------------------------------
def test_openai_text(fake_openai: FakeOpenAI) -> None:
    answer = oai(fake_openai).chat.completions.create(
        model="fake-gpt", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content == "openai answered fake-gpt: hello"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    seen = fake_openai.requests[-1]
    assert seen["path"] == "/v1/chat/completions" and seen["key"] == OPENAI_KEY
    assert seen["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen["body"]["messages"][0]["content"] == "hello"


def test_openai_stream_text(fake_openai: FakeOpenAI) -> None:
    chunks = list(
        oai(fake_openai).chat.completions.create(
            model="fake-gpt-mini",
            messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 2
    assert "".join(pieces) == "openai answered fake-gpt-mini: hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_openai_tool_call_then_result(fake_openai: FakeOpenAI) -> None:
    client = oai(fake_openai)
    messages: list[Any] = [{"role": "user", "content": "weather?"}]
    answer = client.chat.completions.create(model="fake-gpt", messages=messages, tools=OPENAI_TOOLS)
    assert answer.choices[0].finish_reason == "tool_calls"
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_") and len(call.id) == len("call_") + 8
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    messages += [
        answer.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    follow = client.chat.completions.create(model="fake-gpt", messages=messages, tools=OPENAI_TOOLS)
    assert follow.choices[0].message.content == "the tool said: sunny, 21C"
    assert follow.choices[0].message.tool_calls is None


def test_openai_tool_call_streamed(fake_openai: FakeOpenAI) -> None:
    stream = oai(fake_openai).chat.completions.create(
        model="fake-gpt",
        messages=[{"role": "user", "content": "weather?"}],
        tools=OPENAI_TOOLS,
        stream=True,
    )
    calls = [c.choices[0].delta.tool_calls[0] for c in stream if c.choices[0].delta.tool_calls]
    assert calls[0].id is not None and calls[0].id.startswith("call_")
    assert calls[0].type == "function" and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    fragments = [c.function.arguments for c in calls if c.function and c.function.arguments]
    assert len(fragments) >= 2
    assert json.loads("".join(fragments)) == {"city": "Paris"}


def test_openai_wrong_key(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        oai(fake_openai, "sk-wrong-0123456789012345").models.list()
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "authentication_error"  # type: ignore[index]


def test_openai_rate_limit_for_one_key(fake_openai: FakeOpenAI) -> None:
    fake_openai.keys.add(OTHER_KEY)
    fake_openai.inject(ProviderFault.error(429, retry_after=3), key=OPENAI_KEY)
    messages: list[Any] = [{"role": "user", "content": "x"}]
    assert oai(fake_openai, OTHER_KEY).chat.completions.create(model="m", messages=messages)
    with pytest.raises(openai.RateLimitError) as caught:
        oai(fake_openai).chat.completions.create(model="m", messages=messages)
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.body["type"] == "rate_limit_exceeded"  # type: ignore[index]
    # The fault was used up: the key works again.
    assert oai(fake_openai).chat.completions.create(model="m", messages=messages).choices


def test_openai_cut_and_empty_streams(fake_openai: FakeOpenAI) -> None:
    client = oai(fake_openai)
    messages: list[Any] = [{"role": "user", "content": "x"}]
    fake_openai.inject(ProviderFault.cut_stream(2))
    got: list[Any] = []
    with pytest.raises(STREAM_ERRORS):
        got.extend(client.chat.completions.create(model="m", messages=messages, stream=True))
    assert len(got) <= 2 and all(c.choices[0].finish_reason is None for c in got)
    fake_openai.inject(ProviderFault.empty_stream())
    assert list(client.chat.completions.create(model="m", messages=messages, stream=True)) == []


def test_openai_slow(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(ProviderFault.slow(0.3))
    started = time.monotonic()
    assert oai(fake_openai).models.list().data
    assert time.monotonic() - started >= 0.3


def test_openai_validation_and_models(fake_openai: FakeOpenAI) -> None:
    client = oai(fake_openai)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m",
            messages=[
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "call_nowhere", "content": "y"},
            ],
        )
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])
    bad_tool: Any = [{"type": "function", "function": {"parameters": {}}}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], tools=bad_tool
        )
    fake_openai.models = ["a-model", "b-model"]
    try:
        assert [m.id for m in client.models.list()] == ["a-model", "b-model"]
    finally:
        fake_openai.models = ["fake-gpt", "fake-gpt-mini"]


# -- Anthropic ---------------------------------------------------------------------------
def test_anthropic_text(fake_anthropic: FakeAnthropic) -> None:
    answer = ant(fake_anthropic).messages.create(
        model="claude-fake-1",
        max_tokens=64,
        system=[{"type": "text", "text": "be nice"}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "anthropic answered claude-fake-1: hello"
    assert answer.stop_reason == "end_turn" and answer.usage.output_tokens == 5
    seen = fake_anthropic.requests[-1]
    assert seen["path"] == "/v1/messages" and seen["key"] == ANTHROPIC_KEY
    sent = seen["headers"].get("x-api-key") or seen["headers"]["authorization"]
    assert sent in (ANTHROPIC_KEY, f"Bearer {ANTHROPIC_KEY}")


def test_anthropic_stream_text(fake_anthropic: FakeAnthropic) -> None:
    with ant(fake_anthropic).messages.stream(
        model="claude-fake-1", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 2 and "".join(pieces) == "anthropic answered claude-fake-1: hi"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5


def test_anthropic_tool_call_then_result(fake_anthropic: FakeAnthropic) -> None:
    client = ant(fake_anthropic)
    messages: list[Any] = [{"role": "user", "content": "weather?"}]
    answer = client.messages.create(
        model="claude-fake-1", max_tokens=64, messages=messages, tools=ANTHROPIC_TOOLS
    )
    assert answer.stop_reason == "tool_use"
    use = answer.content[0]
    assert use.type == "tool_use" and use.id.startswith("toolu_")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [use.model_dump()]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": [{"type": "text", "text": "sunny"}],
                }
            ],
        },
    ]
    follow = client.messages.create(
        model="claude-fake-1", max_tokens=64, messages=messages, tools=ANTHROPIC_TOOLS
    )
    assert follow.content[0].type == "text"
    assert follow.content[0].text == "the tool said: sunny"
    assert follow.stop_reason == "end_turn"


def test_anthropic_tool_call_streamed(fake_anthropic: FakeAnthropic) -> None:
    with ant(fake_anthropic).messages.stream(
        model="claude-fake-1",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=ANTHROPIC_TOOLS,
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    partials = [e for e in events if e.type == "content_block_delta"]
    assert len(partials) >= 2 and all(e.delta.type == "input_json_delta" for e in partials)
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}


def test_anthropic_wrong_key(fake_anthropic: FakeAnthropic) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        ant(fake_anthropic, "sk-ant-wrong-0123456789").messages.create(
            model="claude-fake-1", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


def test_anthropic_bearer_key_and_models(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.models = ["claude-a", "claude-b"]
    try:
        listed = httpx.get(
            f"{fake_anthropic.base_url}/v1/models",
            headers={"authorization": f"Bearer {ANTHROPIC_KEY}"},
        )
    finally:
        fake_anthropic.models = ["claude-fake-1"]
    assert listed.status_code == 200
    body = listed.json()
    assert [m["id"] for m in body["data"]] == ["claude-a", "claude-b"]
    assert body["first_id"] == "claude-a" and body["last_id"] == "claude-b"
    assert body["has_more"] is False and body["data"][0]["type"] == "model"
    assert [m.id for m in ant(fake_anthropic).models.list()] == ["claude-fake-1"]


def test_anthropic_rate_limit_for_one_key(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.keys.add(OTHER_KEY)
    fake_anthropic.inject(ProviderFault.error(429, retry_after=7), key=OTHER_KEY, times=2)
    ask: dict[str, Any] = {
        "model": "claude-fake-1",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "x"}],
    }
    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError) as caught:
            ant(fake_anthropic, OTHER_KEY).messages.create(**ask)
        assert caught.value.response.headers["retry-after"] == "7"
        assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert ant(fake_anthropic).messages.create(**ask).content
    assert ant(fake_anthropic, OTHER_KEY).messages.create(**ask).content


def test_anthropic_cut_stream(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.inject(ProviderFault.cut_stream(3))
    seen: list[Any] = []
    with pytest.raises(STREAM_ERRORS):  # noqa: SIM117
        with ant(fake_anthropic).messages.stream(
            model="claude-fake-1", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            seen.extend(stream)
    assert "message_stop" not in [e.type for e in seen]


def test_anthropic_validation(fake_anthropic: FakeAnthropic) -> None:
    url = f"{fake_anthropic.base_url}/v1/messages"
    headers = {"x-api-key": ANTHROPIC_KEY}
    user = {"role": "user", "content": "x"}
    cases: list[dict[str, Any]] = [
        {"model": "m", "messages": [user]},  # no max_tokens
        {"model": "m", "max_tokens": 8, "messages": []},
        {"model": "m", "max_tokens": 8, "messages": [{"role": "assistant", "content": "x"}]},
        {"model": "m", "max_tokens": 8, "messages": [{"role": "system", "content": "x"}]},
        {"model": "m", "max_tokens": 8, "messages": [user], "system": [{"type": "image"}]},
        {"model": "m", "max_tokens": 8, "messages": [user], "tools": [{"name": "t"}]},
        {
            "model": "m",
            "max_tokens": 8,
            "messages": [
                user,
                {"role": "assistant", "content": "no tool use here"},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "y"}],
                },
            ],
        },
    ]
    for body in cases:
        answer = httpx.post(url, headers=headers, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["type"] == "error"
        assert answer.json()["error"]["type"] == "invalid_request_error"
    counted = ant(fake_anthropic).messages.count_tokens(
        model="claude-fake-1", messages=[{"role": "user", "content": "x"}]
    )
    assert counted.input_tokens == 8


# -- Gemini ------------------------------------------------------------------------------
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
TOOL_CONFIG = types.GenerateContentConfig(tools=GEMINI_TOOLS, automatic_function_calling=NO_AFC)  # type: ignore[arg-type]


def test_gemini_text(fake_gemini: FakeGeminiKey) -> None:
    answer = gem(fake_gemini).models.generate_content(
        model="gemini-fake-pro",
        contents="hello",
        config=types.GenerateContentConfig(system_instruction="be nice"),
    )
    assert answer.text == "gemini answered gemini-fake-pro: hello"
    assert answer.candidates is not None and answer.candidates[0].finish_reason == "STOP"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.candidates_token_count == 5
    seen = fake_gemini.requests[-1]
    assert seen["path"] == "/v1beta/models/gemini-fake-pro:generateContent"
    assert seen["key"] == GEMINI_KEY and seen["headers"]["x-goog-api-key"] == GEMINI_KEY


def test_gemini_stream_text(fake_gemini: FakeGeminiKey) -> None:
    chunks = list(
        gem(fake_gemini).models.generate_content_stream(model="gemini-fake-pro", contents="hi")
    )
    assert len(chunks) >= 2
    assert "".join(c.text or "" for c in chunks) == "gemini answered gemini-fake-pro: hi"
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].candidates[0].finish_reason == "STOP"  # type: ignore[index]
    assert chunks[0].candidates[0].finish_reason is None  # type: ignore[index]
    assert fake_gemini.requests[-1]["query"]["alt"] == "sse"


def test_gemini_tool_call_then_result(fake_gemini: FakeGeminiKey) -> None:
    client = gem(fake_gemini)
    question = types.Content(role="user", parts=[types.Part(text="weather?")])
    answer = client.models.generate_content(
        model="gemini-fake-pro", contents=[question], config=TOOL_CONFIG
    )
    assert answer.function_calls is not None
    assert answer.function_calls[0].name == "get_weather"
    assert answer.function_calls[0].args == {"city": "Paris"}
    reply = types.Part.from_function_response(name="get_weather", response={"result": "sunny"})
    history = [question, answer.candidates[0].content, types.Content(role="user", parts=[reply])]  # type: ignore[index]
    follow = client.models.generate_content(
        model="gemini-fake-pro",
        contents=history,
        config=TOOL_CONFIG,
    )
    assert follow.text == "the tool said: sunny" and not follow.function_calls
    other = types.Part.from_function_response(name="get_weather", response={"temp": 21})
    history[-1] = types.Content(role="user", parts=[other])
    follow = client.models.generate_content(
        model="gemini-fake-pro",
        contents=history,
        config=TOOL_CONFIG,
    )
    assert follow.text == 'the tool said: {"temp":21}'


def test_gemini_tool_call_streamed(fake_gemini: FakeGeminiKey) -> None:
    chunks = list(
        gem(fake_gemini).models.generate_content_stream(
            model="gemini-fake-pro", contents="weather?", config=TOOL_CONFIG
        )
    )
    calls = [call for c in chunks for call in c.function_calls or []]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert chunks[-1].candidates[0].finish_reason == "STOP"  # type: ignore[index]


def test_gemini_wrong_key(fake_gemini: FakeGeminiKey) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        gem(fake_gemini, "AIzaWrongKey-0123456789012").models.generate_content(
            model="gemini-fake-pro", contents="x"
        )
    assert caught.value.code == 401 and caught.value.status == "UNAUTHENTICATED"


def test_gemini_query_key_and_models(fake_gemini: FakeGeminiKey) -> None:
    listed = httpx.get(f"{fake_gemini.base_url}/v1beta/models", params={"key": GEMINI_KEY})
    assert listed.status_code == 200
    model = listed.json()["models"][0]
    assert model["name"] == "models/gemini-fake-pro"
    assert "generateContent" in model["supportedGenerationMethods"]
    assert fake_gemini.requests[-1]["key"] == GEMINI_KEY
    missing = httpx.get(f"{fake_gemini.base_url}/v1beta/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
    assert [m.name for m in gem(fake_gemini).models.list()] == ["models/gemini-fake-pro"]


def test_gemini_rate_limit_for_one_key(fake_gemini: FakeGeminiKey) -> None:
    fake_gemini.keys.add(OTHER_KEY)
    fake_gemini.inject(ProviderFault.error(429, retry_after=3), key=GEMINI_KEY)
    assert gem(fake_gemini, OTHER_KEY).models.generate_content(model="g", contents="x").text
    with pytest.raises(genai_errors.ClientError) as caught:
        gem(fake_gemini).models.generate_content(model="g", contents="x")
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    assert caught.value.details["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
    ]
    assert caught.value.response.headers["retry-after"] == "3"
    assert gem(fake_gemini).models.generate_content(model="g", contents="x").text


def test_gemini_cut_and_empty_streams(fake_gemini: FakeGeminiKey) -> None:
    client = gem(fake_gemini)
    fake_gemini.inject(ProviderFault.cut_stream(1))
    got: list[Any] = []
    with pytest.raises(STREAM_ERRORS):
        got.extend(client.models.generate_content_stream(model="g", contents="x"))
    assert len(got) <= 1 and all(c.usage_metadata is None for c in got)
    # A plain generateContent call does not use up a stream fault.
    assert client.models.generate_content(model="g", contents="x").text
    fake_gemini.inject(ProviderFault.empty_stream())
    assert fake_gemini.requests[-1]["path"].endswith(":generateContent")
    assert list(client.models.generate_content_stream(model="g", contents="x")) == []


def test_gemini_validation(fake_gemini: FakeGeminiKey) -> None:
    url = f"{fake_gemini.base_url}/v1beta/models/gemini-fake-pro:generateContent"
    headers = {"x-goog-api-key": GEMINI_KEY}
    user = {"role": "user", "parts": [{"text": "x"}]}
    cases: list[dict[str, Any]] = [
        {},
        {"contents": []},
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        {"contents": [{"role": "user", "parts": []}]},
        {"contents": [user, {"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
        {"contents": [user], "tools": [{"functionDeclarations": [{"description": "no name"}]}]},
    ]
    for body in cases:
        answer = httpx.post(url, headers=headers, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    counted = gem(fake_gemini).models.count_tokens(model="gemini-fake-pro", contents="x")
    assert counted.total_tokens == 8
