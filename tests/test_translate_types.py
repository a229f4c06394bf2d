"""The translators on wrong JSON types, as pure functions (issue 11, defect 6): each case
of the issue, and the neighbours the mutation suite found, is a BadRequest naming the
field — before, each was a TypeError or AttributeError and a 500."""

from __future__ import annotations

from typing import Any

import pytest

from agproxy.translate.anthropic import messages_to_gemini
from agproxy.translate.fields import MAX_NESTING, BadRequest, check_nesting
from agproxy.translate.gemini import check_contents, count_request
from agproxy.translate.openai_chat import chat_to_gemini
from agproxy.translate.openai_responses import responses_to_chat
from agproxy.translate.schema import clean_schema

USER = {"role": "user", "content": "hi"}
CHAT = {"model": "m", "messages": [USER]}
MESSAGES = {"model": "m", "max_tokens": 64, "messages": [USER]}
RESPONSES = {"model": "m", "input": "hi"}


def chat(**fields: Any) -> dict[str, Any]:
    return {**CHAT, **fields}


def anthropic(**fields: Any) -> dict[str, Any]:
    return {**MESSAGES, **fields}


def responses(**fields: Any) -> dict[str, Any]:
    return {**RESPONSES, **fields}


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


CASES = [
    # chat completions
    (
        chat_to_gemini,
        chat(messages=[USER, {"role": "assistant", "tool_calls": True}]),
        "messages[1].tool_calls",
    ),
    (
        chat_to_gemini,
        chat(messages=[USER, {"role": "assistant", "tool_calls": ["x"]}]),
        "messages[1].tool_calls[0]",
    ),
    (
        chat_to_gemini,
        chat(messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": "x"}]}]),
        "messages[1].tool_calls[0].function",
    ),
    (
        chat_to_gemini,
        chat(
            messages=[
                USER,
                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": 5}}]},
            ]
        ),
        "messages[1].tool_calls[0].function.name",
    ),
    (
        chat_to_gemini,
        chat(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "function": {"name": "f", "arguments": "[" * 300 + "]" * 300}}
                    ],
                },
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        chat_to_gemini,
        chat(messages=[{"role": "system", "content": [{"type": "text", "text": None}]}, USER]),
        None,
    ),  # null text is empty text: no error
    (
        chat_to_gemini,
        chat(messages=[{"role": "system", "content": [{"type": "text", "text": 5}]}, USER]),
        "messages[0].content[0].text",
    ),
    (chat_to_gemini, chat(messages=[{"role": "tool", "content": 5}]), "messages[0].content"),
    (chat_to_gemini, chat(tools=True), "tools"),
    (chat_to_gemini, chat(tools=[{"type": [], "function": {"name": "f"}}]), "tools[0].type"),
    (chat_to_gemini, chat(tools=[{"type": "function", "function": "x"}]), "tools[0].function"),
    (chat_to_gemini, chat(tool_choice={"function": "x"}), "tool_choice.function"),
    (chat_to_gemini, chat(stop=[1]), "stop"),
    (
        chat_to_gemini,
        chat(response_format={"type": "json_schema", "json_schema": "x"}),
        "response_format.json_schema",
    ),
    (chat_to_gemini, chat(reasoning_effort=5), "reasoning_effort"),
    (chat_to_gemini, chat(max_completion_tokens="x"), "max_completion_tokens"),
    # responses
    (responses_to_chat, responses(reasoning="x"), "reasoning"),
    (responses_to_chat, responses(text="x"), "text"),
    (responses_to_chat, responses(text={"format": "x"}), "text.format"),
    (responses_to_chat, responses(tools=[{"type": []}]), "tools[0].type"),
    (responses_to_chat, responses(tools=True), "tools"),
    (responses_to_chat, responses(tools=[{"type": "function", "name": ["f"]}]), "tools[0].name"),
    (responses_to_chat, responses(input=[{"role": "user", "content": 5}]), "input[0].content"),
    (
        responses_to_chat,
        responses(input=[{"role": "user", "content": [{"type": "input_text", "text": []}]}]),
        "input[0].content[0].text",
    ),
    (
        responses_to_chat,
        responses(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": 5}]),
        "input[0].arguments",
    ),
    (responses_to_chat, responses(max_output_tokens="x"), "max_output_tokens"),
    (responses_to_chat, responses(reasoning={"effort": "x"}), "reasoning.effort"),
    (responses_to_chat, responses(input=""), "input"),
    # messages
    (
        messages_to_gemini,
        anthropic(messages=[{"role": "user", "content": [{"type": "image", "source": "x"}]}]),
        "messages[0].content[0].source",
    ),
    (
        messages_to_gemini,
        anthropic(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}],
                }
            ]
        ),
        "messages[0].content[0].content",
    ),
    (
        messages_to_gemini,
        anthropic(messages=[{"role": "user", "content": [5]}]),
        "messages[0].content[0]",
    ),
    (
        messages_to_gemini,
        anthropic(
            messages=[
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}],
                }
            ]
        ),
        "messages[0].content[0].input",
    ),
    (
        messages_to_gemini,
        anthropic(messages=[{"role": "system", "content": [{"type": "text", "text": 5}]}, USER]),
        "messages[0].content[0].text",
    ),
    (messages_to_gemini, anthropic(tools=True), "tools"),
    (
        messages_to_gemini,
        anthropic(tools=[{"name": "f", "input_schema": {}}], tool_choice=5),
        "tool_choice",
    ),
    (messages_to_gemini, anthropic(system=5), "system"),
    (messages_to_gemini, anthropic(thinking="x"), "thinking"),
    (messages_to_gemini, anthropic(stop_sequences=[[]]), "stop_sequences"),
]


@pytest.mark.parametrize(("translate", "body", "field"), CASES)
def test_wrong_types_name_the_field(
    translate: Any, body: dict[str, Any], field: str | None
) -> None:
    if field is None:
        translate(body, "m") if translate is not responses_to_chat else translate(body)
        return
    with pytest.raises(BadRequest) as caught:
        translate(body, "m") if translate is not responses_to_chat else translate(body)
    assert caught.value.param == field
    assert field in caught.value.message


@pytest.mark.parametrize(
    ("contents", "field"),
    [
        (True, "contents"),
        ([], "contents"),
        (["x"], "contents[0]"),
        ([{"role": "user", "parts": True}], "contents[0].parts"),
        ([{"role": "user", "parts": [5]}], "contents[0].parts[0]"),
        ([{"role": ["user"], "parts": []}], "contents[0].role"),
    ],
)
def test_gemini_contents(contents: Any, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_contents(contents)
    assert caught.value.param == field


def test_gemini_count_reads_the_inner_request_when_contents_are_absent() -> None:
    with pytest.raises(BadRequest) as caught:
        count_request({"generateContentRequest": {"contents": [{"parts": True}]}}, "m")
    assert caught.value.param == "generateContentRequest.contents[0].parts"
    with pytest.raises(BadRequest) as caught:
        count_request({"generateContentRequest": "x"}, "m")
    assert caught.value.param == "generateContentRequest"


def test_nesting_limit_names_the_field() -> None:
    check_nesting({"a": nested(MAX_NESTING - 1)})
    with pytest.raises(BadRequest) as caught:
        check_nesting({"messages": [{"content": nested(300)}]})
    assert caught.value.param is not None
    assert caught.value.param.startswith("messages[0].content")
    assert "nested too deeply" in caught.value.message


def test_schemas_with_wrong_keyword_types_are_cleaned_not_crashed() -> None:
    schema = {
        "type": "object",
        "required": True,
        "anyOf": 5,
        "allOf": [{"properties": "x", "required": 1}],
        "properties": {"a": {"type": "string"}},
    }
    assert clean_schema(schema) == {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}
    assert schema["allOf"] == [{"properties": "x", "required": 1}]  # not modified
