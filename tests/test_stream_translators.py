"""Each stream translator as a table: Gemini chunk sequences in, the client protocol's
events out (projected to what a client reads: the event kind and its payload), plus the
answer the translator collects for a non-streamed call. Pure functions: no gateway."""

from __future__ import annotations

from typing import Any

import pytest

from agproxy.translate.anthropic import MessageStream
from agproxy.translate.anthropic_search import WebSearch, cited_spans, model_turn
from agproxy.translate.openai_chat import ChatStream
from agproxy.translate.openai_responses import ResponsesStream


def chunk(*parts: dict[str, Any], finish: str | None = None, usage: bool = False) -> dict:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}}
    if finish:
        candidate["finishReason"] = finish
    event: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        event["usageMetadata"] = {
            "promptTokenCount": 11,
            "candidatesTokenCount": 7,
            "thoughtsTokenCount": 3,
            "totalTokenCount": 21,
        }
    return event


TEXT = [chunk({"text": "Hel"}), chunk({"text": "lo"}, finish="STOP", usage=True)]
THINKING = [
    chunk({"text": "hmm", "thought": True}),
    chunk({"text": "", "thoughtSignature": "sig-1"}),
    chunk({"text": "Yes"}, finish="STOP", usage=True),
]
TOOL = [
    chunk(
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}},
        finish="STOP",
        usage=True,
    )
]
CUT = [chunk({"text": "Long"}, finish="MAX_TOKENS", usage=True)]


# -- OpenAI chat -------------------------------------------------------------------------


def chat_view(chunks: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for c in chunks:
        choice = c["choices"][0]
        delta = {k: v for k, v in choice["delta"].items() if k != "role"}
        if "tool_calls" in delta:
            call = delta["tool_calls"][0]
            delta = {"tool": (call["function"]["name"], call["function"]["arguments"])}
        out.append((choice["finish_reason"] or "delta", delta))
    return out


@pytest.mark.parametrize(
    ("events", "stream", "message"),
    [
        (
            TEXT,
            [("delta", {"content": "Hel"}), ("delta", {"content": "lo"}), ("stop", {})],
            {"content": "Hello", "finish": "stop"},
        ),
        (
            THINKING,
            [("delta", {"reasoning_content": "hmm"}), ("delta", {"content": "Yes"}), ("stop", {})],
            {"content": "Yes", "reasoning_content": "hmm", "finish": "stop"},
        ),
        (
            TOOL,
            [("delta", {"tool": ("get_weather", '{"city":"Paris"}')}), ("tool_calls", {})],
            {"content": None, "tool": "get_weather", "finish": "tool_calls"},
        ),
        (
            CUT,
            [("delta", {"content": "Long"}), ("length", {})],
            {"content": "Long", "finish": "length"},
        ),
    ],
    ids=["text", "thinking", "tool", "max_tokens"],
)
def test_chat_stream(events: list[dict], stream: list, message: dict) -> None:
    translator = ChatStream("m")
    produced = [c for e in events for c in translator.feed(e)]
    assert chat_view(produced) == stream
    assert produced[0]["choices"][0]["delta"]["role"] == "assistant"  # the role comes once
    assert all("role" not in c["choices"][0]["delta"] for c in produced[1:])
    collected = translator.collect()
    choice = collected["choices"][0]
    got = {"content": choice["message"]["content"], "finish": choice["finish_reason"]}
    if "reasoning_content" in choice["message"]:
        got["reasoning_content"] = choice["message"]["reasoning_content"]
    if "tool_calls" in choice["message"]:
        got["tool"] = choice["message"]["tool_calls"][0]["function"]["name"]
    assert got == message
    assert collected["usage"]["prompt_tokens"] == 11


# -- Anthropic messages ------------------------------------------------------------------


def message_view(events: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        kind = e["type"]
        if kind == "content_block_start":
            out.append(("start", e["index"], e["content_block"]["type"]))
        elif kind == "content_block_delta":
            delta = e["delta"]
            value = next(v for k, v in delta.items() if k != "type")
            out.append((delta["type"], e["index"], value))
        elif kind == "content_block_stop":
            out.append(("stop", e["index"]))
        elif kind == "message_delta":
            out.append(("message_delta", e["delta"]["stop_reason"], e["usage"]["output_tokens"]))
        else:
            out.append(kind)
    return out


@pytest.mark.parametrize(
    ("events", "expected", "content"),
    [
        (
            TEXT,
            [
                "message_start",
                ("start", 0, "text"),
                ("text_delta", 0, "Hel"),
                ("text_delta", 0, "lo"),
                ("stop", 0),
                ("message_delta", "end_turn", 10),
                "message_stop",
            ],
            [{"type": "text", "text": "Hello"}],
        ),
        (
            THINKING,
            [
                "message_start",
                ("start", 0, "thinking"),
                ("thinking_delta", 0, "hmm"),
                ("signature_delta", 0, "sig-1"),
                ("stop", 0),
                ("start", 1, "text"),
                ("text_delta", 1, "Yes"),
                ("stop", 1),
                ("message_delta", "end_turn", 10),
                "message_stop",
            ],
            [
                {"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
                {"type": "text", "text": "Yes"},
            ],
        ),
        (
            TOOL,
            [
                "message_start",
                ("start", 0, "tool_use"),
                ("input_json_delta", 0, '{"city":"Paris"}'),
                ("stop", 0),
                ("message_delta", "tool_use", 10),
                "message_stop",
            ],
            [{"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}],
        ),
        (
            CUT,
            [
                "message_start",
                ("start", 0, "text"),
                ("text_delta", 0, "Long"),
                ("stop", 0),
                ("message_delta", "max_tokens", 10),
                "message_stop",
            ],
            [{"type": "text", "text": "Long"}],
        ),
    ],
    ids=["text", "thinking", "tool", "max_tokens"],
)
def test_message_stream(events: list[dict], expected: list, content: list) -> None:
    translator = MessageStream("claude-sonnet-4-6")
    produced = [m for e in events for m in translator.feed(e)] + translator.finish()
    assert message_view(produced) == expected
    message = translator.message()
    blocks = [{k: v for k, v in b.items() if k != "id"} for b in message["content"]]
    assert blocks == content
    assert message["usage"]["input_tokens"] == 11 and message["usage"]["output_tokens"] == 10


def grounding(answer: str, *supported: tuple[str, list[int]], queries: int = 1) -> dict:
    def span(said: str) -> dict[str, Any]:
        start = len(answer[: answer.index(said)].encode())
        return {"startIndex": start, "endIndex": start + len(said.encode()), "text": said}

    return {
        "webSearchQueries": [f"q{i}" for i in range(queries)],
        "groundingChunks": [
            {"web": {"uri": f"https://r.example/{i}", "title": f"site{i}.com"}} for i in range(3)
        ],
        "groundingSupports": [
            {"segment": span(said), "groundingChunkIndices": indices} for said, indices in supported
        ],
    }


@pytest.mark.parametrize(
    ("answer", "meta", "spans"),
    [
        ("Plain.", {}, [("Plain.", [])]),
        (  # multi-byte text before the segment: offsets are UTF-8 bytes
            "Café ☕. Cited part. Tail",
            grounding("Café ☕. Cited part. Tail", ("Cited part.", [0, 2])),
            [("Café ☕. ", []), ("Cited part.", [0, 2]), (" Tail", [])],
        ),
        (  # offsets that do not hold the segment's text: found by the text
            "ab Cited. cd",
            {
                "groundingChunks": [{"web": {"uri": "https://r.example/0", "title": "t"}}],
                "groundingSupports": [
                    {"segment": {"endIndex": 2, "text": "Cited."}, "groundingChunkIndices": [0]}
                ],
            },
            [("ab ", []), ("Cited.", [0]), (" cd", [])],
        ),
        (  # a chunk index out of range cites nothing
            "One. Two.",
            grounding("One. Two.", ("Two.", [7])),
            [("One. Two.", [])],
        ),
    ],
    ids=["none", "utf8", "by-text", "bad-index"],
)
def test_cited_spans(answer: str, meta: dict, spans: list) -> None:
    got = cited_spans(answer, meta, WebSearch())
    view = [(said, [int(c["url"].rsplit("/", 1)[1]) for c in cites]) for said, cites in got]
    assert view == spans


def test_grounded_message_stream_holds_text_until_the_searches_are_known() -> None:
    answer = "Intro. Fact one."
    translator = MessageStream("claude-sonnet-4-6", WebSearch(), grounded=True)
    first = translator.feed(chunk({"text": "Intro. "}))
    assert [e["type"] for e in first] == ["message_start", "ping"]
    last = chunk({"text": "Fact one."}, finish="STOP", usage=True)
    last["candidates"][0]["groundingMetadata"] = grounding(answer, ("Fact one.", [1]), queries=2)
    assert translator.feed(last) == []
    produced = translator.finish()
    assert message_view(produced)[:8] == [
        ("start", 0, "server_tool_use"),
        ("input_json_delta", 0, '{"query":"q0"}'),
        ("stop", 0),
        ("start", 1, "web_search_tool_result"),
        ("stop", 1),
        ("start", 2, "server_tool_use"),
        ("input_json_delta", 2, '{"query":"q1"}'),
        ("stop", 2),
    ]
    content = translator.message()["content"]
    assert [b["type"] for b in content] == ["server_tool_use", "web_search_tool_result"] * 2 + [
        "text",
        "text",
    ]
    assert [r["title"] for r in content[1]["content"]] == ["site0.com", "site1.com", "site2.com"]
    assert content[3]["content"] == []
    assert content[4] == {"type": "text", "text": "Intro. "}
    assert content[5]["text"] == "Fact one." and content[5]["citations"][0]["title"] == "site1.com"
    usage = translator.message()["usage"]
    assert usage["server_tool_use"] == {"web_search_requests": 2, "web_fetch_requests": 0}


def test_grounded_message_stream_without_grounding_is_plain_text() -> None:
    translator = MessageStream("claude-sonnet-4-6", WebSearch(), grounded=True)
    for event in TEXT:
        translator.feed(event)
    translator.finish()
    message = translator.message()
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert message["usage"]["server_tool_use"]["web_search_requests"] == 0


def test_model_turn_for_the_next_call() -> None:
    parts = [
        {"text": "hm", "thought": True},
        {"text": "m", "thought": True},
        {"text": "", "thought": True, "thoughtSignature": "sig"},
        {"text": "Let "},
        {"text": "me."},
        {"functionCall": {"name": "web_search", "args": {"query": "x"}, "id": "srvtoolu_1"}},
    ]
    assert model_turn(parts, "skip")["parts"] == [
        {"text": "hmm", "thought": True, "thoughtSignature": "sig"},
        {"text": "Let me."},
        {
            "functionCall": {"name": "web_search", "args": {"query": "x"}, "id": "srvtoolu_1"},
            "thoughtSignature": "skip",
        },
    ]
    unsigned = model_turn([{"text": "hm", "thought": True}], "skip")["parts"]
    assert unsigned == [{"text": " "}]


# -- OpenAI Responses --------------------------------------------------------------------


def responses_view(events: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        kind = e["type"].removeprefix("response.")
        if kind.endswith(".delta"):
            out.append((kind, e["delta"]))
        elif kind in ("output_item.added", "output_item.done"):
            out.append((kind, e["item"]["type"]))
        else:
            out.append(kind)
    return out


@pytest.mark.parametrize(
    ("events", "expected", "status", "text"),
    [
        (
            TEXT,
            [
                "created",
                "in_progress",
                ("output_item.added", "message"),
                "content_part.added",
                ("output_text.delta", "Hel"),
                ("output_text.delta", "lo"),
                "output_text.done",
                "content_part.done",
                ("output_item.done", "message"),
                "completed",
            ],
            "completed",
            "Hello",
        ),
        (
            THINKING,
            [
                "created",
                "in_progress",
                ("output_item.added", "reasoning"),
                "reasoning_summary_part.added",
                ("reasoning_summary_text.delta", "hmm"),
                "reasoning_summary_text.done",
                "reasoning_summary_part.done",
                ("output_item.done", "reasoning"),
                ("output_item.added", "message"),
                "content_part.added",
                ("output_text.delta", "Yes"),
                "output_text.done",
                "content_part.done",
                ("output_item.done", "message"),
                "completed",
            ],
            "completed",
            "Yes",
        ),
        (
            TOOL,
            [
                "created",
                "in_progress",
                ("output_item.added", "function_call"),
                ("function_call_arguments.delta", '{"city":"Paris"}'),
                "function_call_arguments.done",
                ("output_item.done", "function_call"),
                "completed",
            ],
            "completed",
            "",
        ),
        (
            CUT,
            [
                "created",
                "in_progress",
                ("output_item.added", "message"),
                "content_part.added",
                ("output_text.delta", "Long"),
                "output_text.done",
                "content_part.done",
                ("output_item.done", "message"),
                "incomplete",
            ],
            "incomplete",
            "Long",
        ),
    ],
    ids=["text", "thinking", "tool", "max_tokens"],
)
def test_responses_stream(events: list[dict], expected: list, status: str, text: str) -> None:
    translator = ResponsesStream("m")
    produced = translator.start() + [x for e in events for x in translator.feed(e)]
    produced += translator.finish()
    assert responses_view(produced) == expected
    numbers = [e["sequence_number"] for e in produced]
    assert numbers == list(range(len(produced)))  # the SDK orders events by these
    body = translator.response(status)
    said = [
        c["text"] for item in body["output"] if item["type"] == "message" for c in item["content"]
    ]
    assert "".join(said) == text
    assert body["usage"]["input_tokens"] == 11 and body["usage"]["output_tokens"] == 10
