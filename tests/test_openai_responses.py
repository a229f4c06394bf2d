"""The Responses API (Codex CLI's wire) through the gateway with the official `openai` SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from agproxy.translate.openai_chat import BadRequest
from agproxy.translate.openai_responses import responses_to_chat
from conftest import Gateway, add_accounts, google_env, spawn

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
    {"type": "web_search"},  # no upstream equivalent with functions
    {"type": "namespace", "name": "mcp", "tools": []},
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    gateway = spawn(tmp_path_factory.mktemp("responses"), **google_env(fake_google_server))
    add_accounts(gateway, fake_google_server, prefix="resp")
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw: Gateway, fake_google: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)


def test_create_with_instructions(client: openai.OpenAI, fake_google: Any) -> None:
    response = client.responses.create(
        model="gemini-3-flash", input="Hello there", instructions="Answer briefly."
    )
    assert response.output_text == "echo: Hello there"
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.usage is not None and response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )
    sent = fake_google.calls("streamGenerateContent")[-1].body["request"]
    assert sent["systemInstruction"]["parts"] == [{"text": "Answer briefly."}]


def test_stream_a_function_call_and_send_its_output(
    client: openai.OpenAI, fake_google: Any
) -> None:
    fake_google.script(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])
    with client.responses.stream(
        model="gemini-3-flash",
        tools=TOOLS,
        input=[
            {"role": "developer", "content": "You are Codex."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.function_call_arguments.done" in types
    [call] = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"city":"Paris"}'
    declared = fake_google.calls("streamGenerateContent")[-1].body["request"]["tools"]
    assert [d["name"] for d in declared[0]["functionDeclarations"]] == ["get_weather"]

    fake_google.script(parts=[{"text": "Sunny, 18°C."}])
    answer = client.responses.create(
        model="gemini-3-flash",
        tools=TOOLS,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "18°C sunny"},
        ],
    )
    assert answer.output_text == "Sunny, 18°C."
    contents = fake_google.calls("streamGenerateContent")[-1].body["request"]["contents"]
    assert contents[1]["parts"][0]["functionCall"]["args"] == {"city": "Paris"}
    assert contents[2]["parts"][0]["functionResponse"]["response"] == {"result": "18°C sunny"}


def test_stream_text_with_reasoning(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="gemini-3-flash", input="think", reasoning={"effort": "low"}
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "echo: think"
    assert [o.type for o in final.output] == ["reasoning", "message"]


def test_bad_input_is_a_400(gw: Gateway) -> None:
    response = httpx.post(
        gw.base_url + "/v1/responses", json={"model": "gemini-3-flash", "input": []}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"


@pytest.mark.parametrize(
    ("body", "roles"),
    [
        ({"input": "hi"}, ["user"]),
        (
            {
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "a"}],
                    },
                    {"type": "reasoning", "summary": []},
                ],
                "instructions": "sys",
            },
            ["system", "user"],
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "q"},
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "1"},
                    {"type": "function_call_output", "call_id": "c2", "output": "2"},
                ]
            },
            ["user", "assistant", "tool", "tool"],
        ),
    ],
)
def test_responses_to_chat(body: dict, roles: list[str]) -> None:
    chat = responses_to_chat({"model": "m", **body})
    assert [m["role"] for m in chat["messages"]] == roles


def test_responses_to_chat_refuses_unknown_roles() -> None:
    with pytest.raises(BadRequest):
        responses_to_chat({"model": "m", "input": [{"role": "robot", "content": "x"}]})


def test_web_search_becomes_google_search_when_alone(
    client: openai.OpenAI, fake_google: Any
) -> None:
    client.responses.create(model="gemini-3-flash", input="news?", tools=[{"type": "web_search"}])
    assert fake_google.calls("streamGenerateContent")[-1].body["request"]["tools"] == [
        {"googleSearch": {}}
    ]
    # With a function tool the search tool is left out (the backend refuses both).
    client.responses.create(model="gemini-3-flash", input="news?", tools=TOOLS)
    tools = fake_google.calls("streamGenerateContent")[-1].body["request"]["tools"]
    assert tools == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
