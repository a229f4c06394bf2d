"""The converters between the Gemini pivot and the providers' protocols, on their own:
what a request becomes, and answers a provider should never send (wrong types anywhere)
read without an exception, every text handed on a string."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from agproxy.providers.pivot import CallIds, checked_event, for_gemini_api, merged
from agproxy.providers.to_anthropic import MessagesAnswer, messages_request
from agproxy.providers.to_openai import ChatAnswer, chat_request
from agproxy.translate.gemini import SKIP_SIGNATURE

PIVOT: dict[str, Any] = {
    "systemInstruction": {"role": "user", "parts": [{"text": "be brief"}]},
    "contents": [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "thinking", "thought": True},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": SKIP_SIGNATURE},
            ],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
    ],
    "tools": [
        {"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]},
        {"googleSearch": {}},
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {"temperature": 0.2, "maxOutputTokens": 99, "stopSequences": ["END"]},
    "sessionId": "-123",
}  # fmt: skip


def test_the_pivot_as_a_chat_request() -> None:
    body = chat_request(PIVOT, "m", stream=True)
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assistant, tool = body["messages"][2], body["messages"][3]
    call = assistant["tool_calls"][0]
    assert assistant["content"] is None  # the thought is not carried
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert tool == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert len(body["tools"]) == 1  # googleSearch is the Google backend's own
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["max_tokens"], body["temperature"], body["stop"]) == (99, 0.2, ["END"])
    assert body["stream_options"] == {"include_usage": True}


def test_the_pivot_as_a_messages_request() -> None:
    body = messages_request(PIVOT, "m", stream=False)
    assert body["system"] == "be brief" and body["max_tokens"] == 99
    use = body["messages"][1]["content"][0]
    result = body["messages"][2]["content"][0]
    assert use["type"] == "tool_use" and use["input"] == {"city": "Paris"}
    assert result == {"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert "stream" not in body


def test_the_pivot_for_the_gemini_api_loses_the_backends_own_fields() -> None:
    body = for_gemini_api(PIVOT)
    assert "sessionId" not in body
    assert "thoughtSignature" not in body["contents"][1]["parts"][1]
    assert body["contents"][1]["parts"][1]["functionCall"]["name"] == "get_weather"


def test_results_answer_the_oldest_open_call_of_their_name() -> None:
    ids = CallIds("c_")
    first, second = ids.call({"name": "f"}), ids.call({"name": "f"})
    assert ids.result({"name": "f"}) == first and ids.result({"name": "f"}) == second
    assert ids.call({"name": "g", "id": "given"}) == "given"
    assert ids.result({"name": "g", "id": "given"}) == "given"


def test_a_streamed_tool_call_is_handed_on_whole() -> None:
    reader = ChatAnswer("m")
    events = [
        *reader.feed({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}}]}),
        *reader.feed({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]}),
        *reader.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        *reader.feed({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ]  # fmt: skip
    whole = merged(events)
    assert whole["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "f", "args": {"a": 1}, "id": "call_1"}}
    ]
    assert whole["usageMetadata"]["totalTokenCount"] == 5


HOSTILE_VALUES: list[Any] = [None, 7, "text", [1, "x"], {"x": 1}, True, 1.5, [{"x": None}]]


def _hostile_openai() -> list[Any]:
    shapes: list[Any] = list(HOSTILE_VALUES)
    for value in HOSTILE_VALUES:
        shapes += [
            {"choices": value},
            {"choices": [value]},
            {"choices": [{"delta": value, "finish_reason": "stop"}]},
            {"choices": [{"delta": {"content": value, "tool_calls": value, "reasoning": value}}]},
            {"choices": [{"delta": {"tool_calls": [{"index": value, "id": value, "function": value}]}}]},
            {"choices": [{"delta": {"tool_calls": [{"function": {"name": value, "arguments": value}}]}, "finish_reason": value}]},
            {"usage": value},
            {"usage": {"prompt_tokens": value, "completion_tokens": value, "prompt_tokens_details": value}},
        ]  # fmt: skip
    return shapes


def _hostile_anthropic() -> list[Any]:
    shapes: list[Any] = list(HOSTILE_VALUES)
    for value, kind in itertools.product(HOSTILE_VALUES, ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message"]):  # fmt: skip
        shapes += [
            {"type": kind, "message": value, "content_block": value, "delta": value, "usage": value, "index": value, "content": value},
            {"type": kind, "content_block": {"type": "tool_use", "id": value, "name": value}, "index": 0},
            {"type": kind, "delta": {"type": "input_json_delta", "partial_json": value}, "index": 0},
            {"type": kind, "delta": {"type": "text_delta", "text": value}},
            {"type": kind, "content": [{"type": "text", "text": value}, {"type": "tool_use", "input": value}]},
        ]  # fmt: skip
    return shapes


def _texts(events: list[dict[str, Any]]) -> list[Any]:
    return [
        part["text"]
        for event in events
        for candidate in event["candidates"]
        for part in candidate["content"]["parts"]
        if "text" in part
    ]


class GeminiEvents:
    """The Gemini API's events go through checked_event alone."""

    def __init__(self, _model: str) -> None:
        pass

    def feed(self, data: Any) -> list[dict[str, Any]]:
        event = checked_event(data)
        return [event] if event is not None and event["candidates"] else []


def _hostile_gemini() -> list[Any]:
    shapes: list[Any] = list(HOSTILE_VALUES)
    for value in HOSTILE_VALUES:
        shapes += [
            {"candidates": value, "usageMetadata": value},
            {"candidates": [value]},
            {"candidates": [{"content": value}]},
            {"candidates": [{"content": {"parts": value}}]},
            {"candidates": [{"content": {"parts": [value, {"text": value}, {"functionCall": value}]}}]},
        ]  # fmt: skip
    return shapes


@pytest.mark.parametrize(
    ("reader", "shapes"),
    [
        (ChatAnswer, _hostile_openai()),
        (MessagesAnswer, _hostile_anthropic()),
        (GeminiEvents, _hostile_gemini()),
    ],
    ids=["openai", "anthropic", "gemini"],
)
def test_answers_of_the_wrong_shape_are_read_without_an_exception(
    reader: Any, shapes: list[Any]
) -> None:
    answer = reader("m")
    events = [event for shape in shapes for event in answer.feed(shape)]
    events += answer.feed({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    whole = merged(events)
    assert all(isinstance(text, str) for text in _texts([*events, whole]))
    for event in events:
        assert isinstance(event["candidates"][0]["content"]["parts"], list)
