"""Broken tool histories (an interrupted tool run, a trimmed conversation) are repaired
before they reach the backend, which refuses them: unit tests of the repair, and the
same histories through the Anthropic and OpenAI SDKs to a Claude model on the fake,
which enforces tool_use/tool_result pairing as Anthropic does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from agproxy.translate.gemini import INTERRUPTED, repair_tool_turns
from conftest import Gateway, add_accounts, google_env, spawn


def call(call_id: str, name: str = "read") -> dict[str, Any]:
    return {
        "functionCall": {"name": name, "args": {}, "id": call_id},
        "thoughtSignature": "skip_thought_signature_validator",
    }


def result(call_id: str, text: str, name: str = "read") -> dict[str, Any]:
    return {"functionResponse": {"name": name, "id": call_id, "response": {"result": text}}}


def test_an_unanswered_call_gets_an_interrupted_result_first() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [call("a"), call("b", "grep")]},
        {
            "role": "user",
            "parts": [{"text": "stop, do something else"}, result("b", "found", "grep")],
        },
    ]
    repaired = repair_tool_turns(contents)
    assert repaired[2]["parts"] == [
        {"functionResponse": {"name": "read", "id": "a", "response": {"result": INTERRUPTED}}},
        result("b", "found", "grep"),  # in call order, before the text
        {"text": "stop, do something else"},
    ]
    assert contents[2]["parts"][0] == {"text": "stop, do something else"}  # input untouched


def test_a_result_without_its_call_becomes_text() -> None:
    contents = [
        {"role": "user", "parts": [result("gone", "42 lines"), {"text": "and?"}]},
        {"role": "model", "parts": [{"text": "ok"}]},
        {"role": "user", "parts": [result("also-gone", "x")]},
    ]
    repaired = repair_tool_turns(contents)
    assert repaired[0]["parts"] == [
        {"text": "[result of tool read (gone)]: 42 lines"},
        {"text": "and?"},
    ]
    assert repaired[2]["parts"] == [{"text": "[result of tool read (also-gone)]: x"}]


def test_a_well_formed_history_is_left_as_it_is() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [call("a")]},
        {"role": "user", "parts": [result("a", "done")]},
        {"role": "model", "parts": [{"text": "finished"}]},
    ]
    assert repair_tool_turns(contents) == contents


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    gw = spawn(tmp_path_factory.mktemp("tools") / "gw", **google_env(fake_google_server))
    add_accounts(gw, fake_google_server, prefix="tools")
    yield gw
    gw.stop()


@pytest.fixture
def gw(gateway: Gateway, fake_google: Any) -> Gateway:
    """The module's gateway, with the fake's request log cleared."""
    return gateway


TOOLS: list[Any] = [
    {
        "name": "read",
        "description": "Read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    }
]


def test_anthropic_interrupted_tool_run_reaches_claude(gw: Any, fake_google: Any) -> None:
    client = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    history: list[Any] = [
        {"role": "user", "content": "read two files"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_a", "name": "read", "input": {"path": "a"}},
                {"type": "tool_use", "id": "toolu_b", "name": "read", "input": {"path": "b"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "A"},
                {"type": "text", "text": "never mind b"},
            ],
        },
    ]
    answer = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=500, tools=TOOLS, messages=history
    )
    assert answer.content[-1].text.startswith("echo:")  # type: ignore[union-attr]
    turn = fake_google.calls("streamGenerateContent")[-1].body["request"]["contents"][2]
    assert [p.get("functionResponse", {}).get("id") for p in turn["parts"]] == [
        "toolu_a",
        "toolu_b",
        None,
    ]
    assert turn["parts"][1]["functionResponse"]["response"] == {"result": INTERRUPTED}


def test_openai_trimmed_history_reaches_claude(gw: Any, fake_google: Any) -> None:
    client = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    reply = client.chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            # The assistant turn that made call_1 was trimmed away; its result remains.
            {"role": "tool", "tool_call_id": "call_1", "content": "file contents"},
            {"role": "user", "content": "summarize"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "read", "arguments": '{"path": "x"}'},
                    }
                ],
            },
            {"role": "user", "content": "skip that, just answer"},
        ],
    )
    assert (reply.choices[0].message.content or "").startswith("echo:")
    contents = fake_google.calls("streamGenerateContent")[-1].body["request"]["contents"]
    assert contents[0]["parts"][0] == {"text": "[result of tool unknown (call_1)]: file contents"}
    assert contents[-1]["parts"][0]["functionResponse"]["id"] == "call_2"
