"""Generate replies: deterministic echoes or scripts, shaped as Google sends them whole,
as SSE events or as a JSON array (UPSTREAM.md §3.2, §3.3)."""

from __future__ import annotations

import asyncio
import copy
import secrets
from dataclasses import dataclass
from typing import Any

from ._faults import Fault
from ._http import dumps
from ._state import Script
from ._validate import get

# A 1×1 transparent PNG: the "generated image" of image models.
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
    "60e6kgAAAABJRU5ErkJggg=="
)
FAKE_SIGNATURE = "RmFrZVRob3VnaHRTaWduYXR1cmU="  # base64 of "FakeThoughtSignature"


def _chars(parts: list[Any]) -> int:
    total = 0
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "text":
                total += len(str(value))
            elif key not in ("thought", "thoughtSignature", "thought_signature"):
                total += len(dumps(value))
    return total


def count_tokens(contents: list[Any]) -> int:
    """The fake's token count: characters of all parts (text as is, other data as compact
    JSON) // 4 + 1. Used for countTokens and promptTokenCount."""
    parts = [p for c in contents if isinstance(c, dict) for p in (c.get("parts") or [])]
    return _chars(parts) // 4 + 1


def usage_for(contents: list[Any], parts: list[dict[str, Any]]) -> dict[str, int]:
    prompt = count_tokens(contents)
    thoughts = [p for p in parts if p.get("thought")]
    answer = _chars([p for p in parts if not p.get("thought")]) // 4 + 1
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": answer}
    if thoughts:
        usage["thoughtsTokenCount"] = _chars(thoughts) // 4 + 1
    usage["totalTokenCount"] = sum(usage.values())
    return usage


def last_user_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        if content.get("role") != "user":
            continue
        parts = content.get("parts") or []
        text = "".join(str(p["text"]) for p in parts if "text" in p and not p.get("thought"))
        if text:
            return text
        return " ".join(_describe(p) for p in parts)
    return ""


def _describe(part: dict[str, Any]) -> str:
    """`[functionResponse get_weather]`, `[inlineData image/png]`: what a non-text part is."""
    for kind in ("functionResponse", "functionCall", "inlineData", "fileData"):
        value = get(part, kind)
        if value is not None:
            label = get(value, "name") or get(value, "mimeType") or ""
            return f"[{kind} {label}]" if label else f"[{kind}]"
    return "[part]"


@dataclass
class Reply:
    model: str
    parts: list[dict[str, Any]]  # the whole reply (non-streamed)
    chunks: list[list[dict[str, Any]]]  # the same parts as streamed, one list per event
    finish_reason: str | None
    usage: dict[str, Any]
    raw: list[dict[str, Any]] | None = None
    response_id: str = ""
    grounding: dict[str, Any] | None = None  # groundingMetadata, on the final candidate

    def events(self) -> list[dict[str, Any]]:
        """The inner `response` object of every streamed event."""
        if self.raw is not None:
            return copy.deepcopy(self.raw)
        chunks = self.chunks or [[]]
        out = []
        for i, chunk in enumerate(chunks):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": chunk}}
            event: dict[str, Any] = {"candidates": [candidate]}
            if i == 0 and "promptTokenCount" in self.usage:
                event["usageMetadata"] = {"promptTokenCount": self.usage["promptTokenCount"]}
            if i == len(chunks) - 1:
                if self.finish_reason:
                    candidate["finishReason"] = self.finish_reason
                if self.grounding is not None:
                    candidate["groundingMetadata"] = copy.deepcopy(self.grounding)
                event["usageMetadata"] = self.usage
            event.update(modelVersion=self.model, responseId=self.response_id)
            out.append(event)
        return out

    def whole(self) -> dict[str, Any]:
        if self.raw is not None:
            return merge_events(self.raw)
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": self.parts}}
        if self.finish_reason:
            candidate["finishReason"] = self.finish_reason
        if self.grounding is not None:
            candidate["groundingMetadata"] = copy.deepcopy(self.grounding)
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": self.usage,
            "modelVersion": self.model,
            "responseId": self.response_id,
        }


def merge_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Scripted raw events folded into one response: parts concatenated, later keys win."""
    merged: dict[str, Any] = {}
    parts: list[Any] = []
    candidate: dict[str, Any] = {}
    for event in copy.deepcopy(events):
        for c in event.pop("candidates", None) or []:
            parts += (c.pop("content", None) or {}).get("parts") or []
            candidate.update(c)
            candidate["content"] = {"role": "model", "parts": parts}
        merged.update(event)
    if candidate:
        merged["candidates"] = [candidate]
    return merged


def build_reply(script: Script | None, model: str, request: dict[str, Any]) -> Reply:
    contents = get(request, "contents")
    if script is not None:
        chunks = script.chunks or [[p] for p in script.parts]
        parts = script.parts or [p for chunk in chunks for p in chunk]
        return Reply(
            model,
            copy.deepcopy(parts),
            copy.deepcopy(chunks),
            script.finish_reason,
            script.usage or usage_for(contents, parts),
            copy.deepcopy(script.raw),
            _response_id(),
        )
    text = last_user_text(contents)
    thinking = get(get(request, "generationConfig"), "thinkingConfig")
    head: list[list[dict[str, Any]]] = []
    if get(thinking, "includeThoughts"):
        head = [
            [{"text": f"Thinking about: {text}", "thought": True}],
            [{"text": "", "thought": True, "thoughtSignature": FAKE_SIGNATURE}],
        ]
    if _searches(request):
        return _grounded_reply(model, contents, text, head)
    answer = f"echo: {text}"
    half = len(text) // 2
    pieces = [p for p in ("echo: ", text[:half], text[half:]) if p]
    tail = (
        [[{"inlineData": {"mimeType": "image/png", "data": PNG_1X1}}]] if "-image" in model else []
    )
    parts = [p for chunk in head for p in chunk] + [{"text": answer}] + [t[0] for t in tail]
    chunks = head + [[{"text": piece}] for piece in pieces] + tail
    return Reply(model, parts, chunks, "STOP", usage_for(contents, parts), None, _response_id())


def _searches(request: dict[str, Any]) -> bool:
    tools = get(request, "tools")
    return isinstance(tools, list) and any(get(t, "googleSearch") is not None for t in tools)


# The titles of what a grounded answer cites: the real API gives a vertexaisearch redirect
# as the uri and the site's domain as the title.
SEARCH_SOURCES = ("example.com", "example.org", "example.net")
GROUNDED_SENTENCES = (
    ("The first source reports the answer.", [0]),
    ("Two more sources agree with it.", [1, 2]),
)


def search_queries(text: str) -> list[str]:
    """The queries a grounded call "runs" for the last user text: two, deterministic."""
    query = " ".join(text.split())[:80] or "search"
    return [query, f"{query} latest"]


def search_uri(index: int) -> str:
    return f"https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-{index}"


def grounding_for(text: str, answer: str) -> dict[str, Any]:
    """groundingMetadata as the real API sends it: the queries, the sources (redirect uri,
    domain as title), and for each supported sentence its UTF-8 byte span in the answer
    and the sources that support it."""
    supports = []
    for sentence, indices in GROUNDED_SENTENCES:
        start = len(answer[: answer.index(sentence)].encode())
        end = start + len(sentence.encode())
        supports.append(
            {
                "segment": {"startIndex": start, "endIndex": end, "text": sentence},
                "groundingChunkIndices": indices,
                "confidenceScores": [0.9] * len(indices),
            }
        )
    queries = search_queries(text)
    return {
        "webSearchQueries": queries,
        "searchEntryPoint": {
            "renderedContent": '<style>.container{}</style><div class="container">'
            + "".join(f'<a class="chip">{q}</a>' for q in queries)
            + "</div>"
        },
        "groundingChunks": [
            {"web": {"uri": search_uri(i), "title": title}}
            for i, title in enumerate(SEARCH_SOURCES)
        ],
        "groundingSupports": supports,
        "retrievalMetadata": {},
    }


def _grounded_reply(
    model: str, contents: list[Any], text: str, head: list[list[dict[str, Any]]]
) -> Reply:
    """A googleSearch call: `echo: <text>` and two grounded sentences, streamed in pieces,
    with groundingMetadata on the final chunk (as the real API puts it)."""
    sentences = [s for s, _ in GROUNDED_SENTENCES]
    answer = f"echo: {text}\n" + " ".join(sentences)
    pieces = [f"echo: {text}\n", sentences[0], " " + sentences[1]]
    parts = [p for chunk in head for p in chunk] + [{"text": answer}]
    chunks = head + [[{"text": piece}] for piece in pieces]
    return Reply(
        model,
        parts,
        chunks,
        "STOP",
        usage_for(contents, parts),
        None,
        _response_id(),
        grounding_for(text, answer),
    )


def _response_id() -> str:
    return secrets.token_urlsafe(12)


# -- streaming --------------------------------------------------------------------------
class StreamCut(Exception):
    """Raised inside the response to drop the connection mid-body (uvicorn closes it)."""


class EventStream:
    """An ASGI response sending events as SSE (`data: ...\\n\\n`) or as a JSON array, with
    the stream faults applied."""

    def __init__(
        self,
        events: list[dict[str, Any]],
        sse: bool,
        headers: dict[str, str],
        fault: Fault | None,
        on_disconnect: Any = None,
    ) -> None:
        self.on_disconnect = on_disconnect  # called when the client leaves mid-stream
        if fault is not None and fault.kind == "cut_stream":
            for event in events:
                for candidate in event.get("response", event).get("candidates") or []:
                    candidate.pop("finishReason", None)
        if fault is not None and fault.kind == "empty_stream":
            events = []
        self.events = events
        self.sse = sse
        self.fault = fault
        media = "text/event-stream" if sse else "application/json; charset=UTF-8"
        self.headers = [(b"content-type", media.encode())] + [
            (k.encode(), v.encode()) for k, v in headers.items()
        ]

    def _frame(self, i: int, event: dict[str, Any]) -> bytes:
        if self.sse:
            return f"data: {dumps(event)}\n\n".encode()
        return (("[" if i == 0 else ",\r\n") + dumps(event)).encode()

    async def _client_left(self, receive: Any, seconds: float) -> bool:
        """Wait `seconds`, or until the client disconnects (then report it: True)."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(disconnected(), seconds)
        except TimeoutError:
            return False
        if self.on_disconnect is not None:
            self.on_disconnect()
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        fault = self.fault
        cut_at = fault.after_events if fault and fault.kind == "cut_stream" else None
        try:
            for i, event in enumerate(self.events):
                if cut_at is not None and i >= cut_at:
                    break
                await send(
                    {"type": "http.response.body", "body": self._frame(i, event), "more_body": True}
                )
                stalled = i == 0 and fault is not None and fault.kind == "stall"
                if stalled and await self._client_left(receive, fault.seconds):  # type: ignore[union-attr]
                    return
            if cut_at is not None:
                raise StreamCut()
            tail = b"" if self.sse else (b"]" if self.events else b"[]")
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except OSError:  # the client went away meanwhile
            return


class CutBody:
    """An ASGI response: 200 and the first half of a JSON reply, then the connection drops
    (a generateContent answer broken mid-body)."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        raw = dumps(body).encode()
        self.half = raw[: len(raw) // 2]
        self.headers = [(b"content-type", b"application/json; charset=UTF-8")] + [
            (k.encode(), v.encode()) for k, v in headers.items()
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        try:
            await send({"type": "http.response.body", "body": self.half, "more_body": True})
        except OSError:
            return
        raise StreamCut()
