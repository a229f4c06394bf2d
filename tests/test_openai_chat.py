"""OpenAI chat completions through the gateway with the official `openai` SDK, and the
pure translation functions behind them."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fake_google import count_tokens

from agproxy.translate.openai_chat import BadRequest, ChatStream, chat_to_gemini
from agproxy.translate.schema import clean_schema
from conftest import Borrowed, Gateway, ImageServer, add_to, borrow, google_env, spawn

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any
) -> Iterator[tuple[Gateway, Any]]:
    fake = fake_google_server
    acct = fake.add_account(email=f"chat-{uuid.uuid4().hex[:6]}@example.com")
    gw = spawn(tmp_path_factory.mktemp("chat"), **google_env(fake))
    assert add_to(gw, acct)["running"]
    yield gw, acct
    gw.stop()


@pytest.fixture
def client(served: tuple[Gateway, Any], fake_google: Any) -> openai.OpenAI:
    gw, _ = served
    return openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)


@pytest.fixture
def shared(served: tuple[Gateway, Any], fake_google: Any) -> Iterator[Borrowed]:
    """The module's gateway with settings of the test's own, set back afterwards."""
    with borrow(served[0], fake_google) as turn:
        yield turn


def last_request(fake: Any) -> dict[str, Any]:
    return fake.calls("streamGenerateContent")[-1].body


def test_the_seed_snippet(client: openai.OpenAI, fake_google: Any) -> None:
    resp = client.chat.completions.create(
        model="gemini-3-flash",
        messages=[{"role": "user", "content": "Hello, please introduce yourself"}],
    )
    assert resp.choices[0].message.content == "echo: Hello, please introduce yourself"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "gemini-3-flash" and resp.id.startswith("chatcmpl-")
    prompt = count_tokens(last_request(fake_google)["request"]["contents"])
    assert resp.usage is not None and resp.usage.prompt_tokens == prompt


def test_stream_with_usage(client: openai.OpenAI, fake_google: Any) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gemini-3-flash",
            messages=[{"role": "user", "content": "stream this please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream this please"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == (
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    )
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_ends_with_done(served: tuple[Gateway, Any], fake_google: Any) -> None:
    gw, _ = served
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/chat/completions",
        json={
            "model": "gemini-3-flash",
            "stream": True,
            "messages": [{"role": "user", "content": "raw"}],
        },
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_two_step_tool_calling(client: openai.OpenAI, fake_google: Any) -> None:
    fake_google.script(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    first = client.chat.completions.create(
        model="gemini-3-flash", messages=messages, tools=[WEATHER_TOOL]
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"Paris"}'
    sent = last_request(fake_google)["request"]
    declaration = sent["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"] == {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}},
        "required": ["city"],
    }  # additionalProperties cleaned
    assert sent["systemInstruction"] == {"role": "user", "parts": [{"text": "Be brief."}]}

    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18°C, sunny"},
    ]
    fake_google.script(parts=[{"text": "It is 18°C and sunny."}])
    second = client.chat.completions.create(
        model="gemini-3-flash", messages=messages, tools=[WEATHER_TOOL]
    )
    assert second.choices[0].message.content == "It is 18°C and sunny."
    contents = last_request(fake_google)["request"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert contents[2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "id": call.id,
        "response": {"result": "18°C, sunny"},
    }


def test_parallel_tool_calls_stream(client: openai.OpenAI, fake_google: Any) -> None:
    fake_google.script(
        parts=[
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
        ]
    )
    chunks = list(
        client.chat.completions.create(
            model="gemini-3-flash",
            messages=[{"role": "user", "content": "Paris and Rome?"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [tc.index for tc in calls] == [0, 1]
    assert [tc.function.arguments for tc in calls] == ['{"city":"Paris"}', '{"city":"Rome"}']
    assert calls[0].id != calls[1].id
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_reasoning_content_from_a_thinking_request(client: openai.OpenAI, fake_google: Any) -> None:
    resp = client.chat.completions.create(
        model="gemini-3-flash",
        reasoning_effort="low",
        messages=[{"role": "user", "content": "think first"}],
    )
    message = resp.choices[0].message
    assert message.content == "echo: think first"
    assert getattr(message, "reasoning_content", None)
    config = last_request(fake_google)["request"]["generationConfig"]
    assert config["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2048}


def test_json_schema_and_image_input(client: openai.OpenAI, fake_google: Any) -> None:
    client.chat.completions.create(
        model="gemini-3-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"}},
                ],
            }
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {
                    "type": "object",
                    "properties": {"color": {"type": "string", "minLength": 1}},
                    "required": ["color"],
                    "$schema": "http://json-schema.org/draft-07/schema#",
                },
            },
        },
    )
    sent = last_request(fake_google)["request"]
    assert sent["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": PNG_1X1}
    }
    config = sent["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "OBJECT",
        "properties": {"color": {"type": "STRING", "description": "[Constraint: minLen: 1]"}},
        "required": ["color"],
    }


@pytest.mark.parametrize(
    ("body", "status", "param", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "model", "model is required"),
        ({"model": "gemini-3-flash"}, 400, "messages", "messages must be a non-empty array"),
        (
            {"model": "gemini-3-flash", "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "messages[0].role",
            "unknown role",
        ),
        (
            {
                "model": "gemini-3-flash",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": "hot",
            },
            400,
            "temperature",
            "temperature must be a number",
        ),
        (
            {
                "model": "gemini-3-flash",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 0,
            },
            400,
            "max_tokens",
            "positive integer",
        ),
        (
            {
                "model": "gemini-3-flash",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/a.png"}}
                        ],
                    }
                ],
            },
            400,
            "messages",
            "private or local address",
        ),
        (
            {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
            404,
            None,
            "does not exist",
        ),
    ],
)
def test_malformed_requests_get_openai_errors(
    served: tuple[Gateway, Any], body: dict, status: int, param: str | None, fragment: str
) -> None:
    gw, _ = served
    response = httpx.post(gw.base_url + "/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param


def test_bad_json_body(served: tuple[Gateway, Any]) -> None:
    gw, _ = served
    response = httpx.post(
        gw.base_url + "/v1/chat/completions",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


# -- pure translation ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("messages", "expected_roles"),
    [
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], ["user"]),
        (
            [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "b"}],
            ["user", "model", "user"],
        ),
        (
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "b"},
            ],
            ["user"],
        ),
    ],
)
def test_roles_alternate(messages: list[dict], expected_roles: list[str]) -> None:
    request = chat_to_gemini({"messages": messages}, "gemini-3-flash")
    assert [c["role"] for c in request["contents"]] == expected_roles


def test_developer_role_and_stop_and_n() -> None:
    request = chat_to_gemini(
        {
            "messages": [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}],
            "stop": "END",
            "n": 2,
            "seed": 7,
            "top_p": 0.5,
        },
        "gemini-3-flash",
    )
    assert request["systemInstruction"]["parts"] == [{"text": "d"}]
    assert request["generationConfig"] == {
        "stopSequences": ["END"],
        "candidateCount": 2,
        "seed": 7,
        "topP": 0.5,
    }


def test_invalid_reasoning_effort() -> None:
    with pytest.raises(BadRequest) as caught:
        chat_to_gemini(
            {"messages": [{"role": "user", "content": "u"}], "reasoning_effort": "extreme"},
            "gemini-3-flash",
        )
    assert caught.value.param == "reasoning_effort"


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
    ],
)
def test_finish_reasons(finish: str, expected: str) -> None:
    stream = ChatStream("m")
    chunks = stream.feed(
        {
            "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": finish}],
            "usageMetadata": {
                "promptTokenCount": 3,
                "candidatesTokenCount": 1,
                "thoughtsTokenCount": 2,
                "totalTokenCount": 6,
            },
        }
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == expected
    done = stream.collect()
    assert done["choices"][0]["finish_reason"] == expected
    assert done["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
        "completion_tokens_details": {"reasoning_tokens": 2},
    }


def test_schema_cleaning_table() -> None:
    schema = {
        "type": "object",
        "$defs": {"Tag": {"type": "string", "enum": ["a", None]}},
        "properties": {
            "tag": {"$ref": "#/$defs/Tag"},
            "n": {"type": ["integer", "null"], "maximum": 5},
            "x": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {}}]},
        },
        "required": ["tag", "missing"],
        "additionalProperties": False,
    }
    cleaned = clean_schema(schema)
    assert cleaned["required"] == ["tag"]
    assert cleaned["properties"]["tag"] == {"type": "STRING", "enum": ["a", "null"]}
    assert cleaned["properties"]["n"] == {
        "type": "INTEGER",
        "description": "[Constraint: max: 5] (nullable)",
    }
    assert cleaned["properties"]["x"]["type"] == "OBJECT"
    assert "additionalProperties" not in cleaned


def test_legacy_completions(client: openai.OpenAI, fake_google: Any) -> None:
    done = client.completions.create(model="gemini-3-flash", prompt="Say hi")
    assert done.object == "text_completion" and done.id.startswith("cmpl-")
    assert done.choices[0].text == "echo: Say hi" and done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens > 0
    streamed = list(
        client.completions.create(
            model="gemini-3-flash", prompt=["line one", "line two"], stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == ("echo: line one\nline two")


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1beta/models/gemini-3-flash:generateContent", "google"),
    ],
)
def test_body_over_the_limit_is_413(shared: Borrowed, path: str, shape: str) -> None:
    gw = shared.gw
    shared.configure(max_body_bytes=1000)
    big = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": "x" * 5000}]}
    response = httpx.post(gw.base_url + path, json=big)
    assert response.status_code == 413
    body = response.json()
    message = body["error"]["message"]
    assert "limit is 1000 bytes" in message
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "request_too_large"
    if shape == "google":
        assert body["error"]["code"] == 413
    if shape != "anthropic":  # no /v1/messages route yet reads a body
        # Chunked bodies (no Content-Length) are counted as they arrive.
        chunked = httpx.post(
            gw.base_url + path,
            content=iter([b"{" + b" " * 3000 + b"}"]),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413


def test_model_mapping_builtin_and_user_rules(
    served: tuple[Gateway, Any], fake_google: Any
) -> None:
    gw, _ = served
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    builtin = httpx.post(gw.base_url + "/v1/chat/completions", json={"model": "gpt-4o", **ask})
    assert builtin.status_code == 200
    assert builtin.headers["x-agproxy-model"] == "gemini-3-flash"  # gpt-4o → 2.5 flash → flash
    assert builtin.json()["model"] == "gpt-4o"  # the client sees the id it asked for
    rules = {"gpt-4*": "gemini-3-pro-high", "gpt-4o-mini": "gemini-3-flash"}
    assert gw.admin("PUT", "/api/config", json={"model_mapping": rules}).status_code == 200
    try:
        for model, served_by in (
            ("gpt-4o", "gemini-3-pro-high"),
            ("gpt-4o-mini", "gemini-3-flash"),
            ("gpt-4-turbo", "gemini-3-pro-high"),
        ):
            r = httpx.post(gw.base_url + "/v1/chat/completions", json={"model": model, **ask})
            assert r.headers["x-agproxy-model"] == served_by, model
        assert fake_google.calls("streamGenerateContent")[-1].body["model"] == "gemini-3-pro-high"
    finally:
        gw.admin("PUT", "/api/config", json={"model_mapping": None})
    unknown = httpx.post(
        gw.base_url + "/v1/chat/completions", json={"model": "gemini-3-flsh", **ask}
    )
    assert unknown.status_code == 404
    assert "Close matches: gemini-3-flash" in unknown.json()["error"]["message"]


@pytest.mark.parametrize(
    ("model", "rules", "expected"),
    [
        ("gpt-4-turbo", {"gpt*": "A", "gpt-4*": "B"}, "B"),
        ("gpt-3.5", {"gpt*": "A", "gpt-4*": "B"}, "A"),
        ("claude-x", {"*-x": "C"}, "C"),
        ("exact", {"exact": "E", "ex*": "W"}, "E"),
        ("other", {"gpt*": "A"}, None),
    ],
)
def test_mapping_rules(model: str, rules: dict, expected: str | None) -> None:
    from agproxy.router.mapping import apply_rules

    assert apply_rules(model, rules) == expected


def test_models_list_has_the_pool_and_routable_aliases(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:4] == [
        "claude-sonnet-4-6",
        "gemini-3-flash",
        "gemini-3-pro-high",
        "gemini-3.1-flash-image",
    ]
    assert "gpt-4o" in ids and "claude-sonnet-4-5" in ids
    assert len(ids) == len(set(ids))


def test_http_image_urls_are_fetched_only_when_allowed(shared: Borrowed, fake_google: Any) -> None:
    images = ImageServer(base64.b64decode(PNG_1X1))
    gw = shared.gw

    def ask(gw: Gateway, path: str) -> httpx.Response:
        return httpx.post(
            gw.base_url + "/v1/chat/completions",
            timeout=30,
            json={
                "model": "gemini-3-flash",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is it?"},
                            {"type": "image_url", "image_url": {"url": images.url + path}},
                        ],
                    }
                ],
            },
        )

    refused = ask(gw, "/fox.png")  # the default: no private addresses
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "private or local address" in message and "127.0.0.1" not in message

    shared.configure(allow_private_image_urls=True, image_fetch_max_bytes=40)
    too_big = ask(gw, "/fox.png")  # the PNG is 70 bytes, the cap 40
    assert too_big.status_code == 400 and "larger than 40 bytes" in too_big.text
    not_image = ask(gw, "/page")
    assert not_image.status_code == 400 and "not an image" in not_image.text

    shared.configure(image_fetch_max_bytes=None)  # back to the default cap
    assert ask(gw, "/moved").status_code == 200  # follows the redirect
    part = last_request(fake_google)["request"]["contents"][0]["parts"][1]
    assert part == {"inlineData": {"mimeType": "image/png", "data": PNG_1X1}}
    images.server.shutdown()


def test_reasoning_sent_back_in_history_is_not_replayed_as_unsigned_thinking(
    client: openai.OpenAI, fake_google: Any
) -> None:
    # Clients echo reasoning_content back; Claude refuses thinking without its signature,
    # and the chat API carries none: the earlier reasoning stays out of the request.
    resp = client.chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "user", "content": "first"},
            {
                "role": "assistant",
                "content": "answer one",
                "reasoning_content": "I thought about it",
            },  # type: ignore[misc]
            {"role": "user", "content": "second"},
        ],
    )
    assert resp.choices[0].message.content == "echo: second"
    model_turn = last_request(fake_google)["request"]["contents"][1]
    assert model_turn["parts"] == [{"text": "answer one"}]
