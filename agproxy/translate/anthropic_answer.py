"""Gemini answer events → Anthropic Messages stream events and the collected message: pure,
no I/O (the request side is translate/anthropic.py)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

import orjson

from agproxy.translate.anthropic_search import (
    NextRound,
    SearchDone,
    WebSearch,
    cited_spans,
    search_results,
    server_tool_id,
)

STOP_REASON = {"STOP": "end_turn", "MAX_TOKENS": "max_tokens"}


def tool_id(call: dict[str, Any]) -> str:
    if call.get("id"):
        return str(call["id"])
    alphabet = string.ascii_letters + string.digits
    return "toolu_" + "".join(secrets.choice(alphabet) for _ in range(24))


@dataclass
class _Block:
    kind: str  # text, thinking, tool_use, server_tool_use, web_search_tool_result
    index: int
    text: list[str] = field(default_factory=list)
    signature: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class MessageStream:
    """Gemini events in, Anthropic SSE events out; `message()` is the collected answer.
    `signatures` records tool_use id → thought signature for the next turn.

    With a web search tool (`search`) there are two ways:
    - `grounded` (the search tool alone, sent as Google Search grounding): the searches
      are known only from the groundingMetadata of the last chunk, after the text. Anthropic
      puts server_tool_use and web_search_tool_result before the text that cites them, and
      the citations cut the text into blocks by byte offsets of the whole answer; so the
      text is held back (thinking still streams, and a ping keeps the client's timers
      alive) and sent at the end, after the search blocks, split into cited blocks.
    - otherwise the model calls the search function: its call becomes a server_tool_use,
      and the front end feeds the result of the search it ran (SearchDone) and marks each
      further upstream call (NextRound), whose usage adds up."""

    def __init__(self, model: str, search: WebSearch | None = None, grounded: bool = False) -> None:
        self.id = "msg_" + secrets.token_hex(12)
        self.model = model
        self.blocks: list[_Block] = []
        self.open: _Block | None = None
        self.started = False
        self.stop_reason: str | None = None
        self.usage = {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
        self.signatures: dict[str, str] = {}
        self.pending_signature: str | None = None
        self.search = search
        self.grounded = grounded and search is not None
        self.held: list[str] = []  # grounded: the answer's text, sent at the end
        self.grounding: dict[str, Any] = {}
        self.searches = 0
        self._earlier: dict[str, int] = {}  # usage of the upstream calls before this one

    def _usage(self, meta: dict[str, Any]) -> None:
        cached = int(meta.get("cachedContentTokenCount") or 0)
        current = {
            "input_tokens": int(meta.get("promptTokenCount") or 0) - cached,
            "output_tokens": int(meta.get("candidatesTokenCount") or 0)
            + int(meta.get("thoughtsTokenCount") or 0),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        }
        self.usage = {key: value + self._earlier.get(key, 0) for key, value in current.items()}

    def _start(self) -> list[dict[str, Any]]:
        self.started = True
        return [
            {
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": self.model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": dict(self.usage),
                },
            }
        ]

    def _close(self) -> list[dict[str, Any]]:
        block, self.open = self.open, None
        if block is None:
            return []
        events = []
        if block.kind == "thinking":
            signature = block.signature or self.pending_signature or ""
            block.signature, self.pending_signature = signature, None
            events.append(
                {
                    "type": "content_block_delta",
                    "index": block.index,
                    "delta": {"type": "signature_delta", "signature": signature},
                }
            )
        events.append({"type": "content_block_stop", "index": block.index})
        return events

    def _open(self, kind: str, start: dict[str, Any]) -> tuple[_Block, list[dict[str, Any]]]:
        events = self._close()
        block = _Block(kind, len(self.blocks))
        self.blocks.append(block)
        self.open = block
        events.append({"type": "content_block_start", "index": block.index, "content_block": start})
        return block, events

    def feed(self, event: dict[str, Any] | SearchDone | NextRound) -> list[dict[str, Any]]:
        if isinstance(event, SearchDone):
            return self._search_result(event.tool_use_id, event.content())
        if isinstance(event, NextRound):
            self._earlier = dict(self.usage)
            return []
        if event.get("usageMetadata"):
            self._usage(event["usageMetadata"])
        out = [] if self.started else self._start()
        for candidate in (event.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                out += self._part(part)
            if isinstance(grounding := candidate.get("groundingMetadata"), dict):
                self.grounding.update({k: v for k, v in grounding.items() if v})
            if candidate.get("finishReason"):
                reason = candidate["finishReason"]
                self.stop_reason = (
                    "tool_use"
                    if any(b.kind == "tool_use" for b in self.blocks)
                    else STOP_REASON.get(reason, "end_turn")
                )
        return out

    def _part(self, part: dict[str, Any]) -> list[dict[str, Any]]:
        signature = part.get("thoughtSignature") or part.get("thought_signature")
        out: list[dict[str, Any]] = []
        if "functionCall" in part:
            return self._tool_call(part["functionCall"], signature)
        text = part.get("text")
        if part.get("thought"):
            return self._thought(text, signature)
        if signature and not text:
            self._seal(signature)  # a signature on an empty part seals the thinking before
            return out
        if "inlineData" in part:
            data = part["inlineData"]
            text = f"![image](data:{data.get('mimeType')};base64,{data.get('data')})"
        if text and self.grounded:
            self.held.append(text)
            return [{"type": "ping"}] if len(self.held) % 16 == 1 else []
        if text:
            if self.open is None or self.open.kind != "text":
                _, out = self._open("text", {"type": "text", "text": ""})
            assert self.open is not None
            self.open.text.append(text)
            out.append(_delta(self.open.index, {"type": "text_delta", "text": text}))
        return out

    def _tool_call(self, call: dict[str, Any], signature: str | None) -> list[dict[str, Any]]:
        if self.search is not None and call.get("name") == self.search.name:
            query = (call.get("args") or {}).get("query")
            return self._server_tool_use(str(call.get("id") or server_tool_id()), str(query or ""))
        ident = tool_id(call)
        if signature or self.pending_signature:
            self.signatures[ident] = signature or self.pending_signature or ""
        block, out = self._open(
            "tool_use",
            {"type": "tool_use", "id": ident, "name": call.get("name", ""), "input": {}},
        )
        block.data = {
            "id": ident,
            "name": call.get("name", ""),
            "input": call.get("args") or {},
        }
        arguments = orjson.dumps(call.get("args") or {}).decode()
        out.append(_delta(block.index, {"type": "input_json_delta", "partial_json": arguments}))
        out += self._close()
        return out

    def _thought(self, text: str | None, signature: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.open is None or self.open.kind != "thinking":
            _, out = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        assert self.open is not None
        if signature:
            self.open.signature = signature
        if text:
            self.open.text.append(text)
            out.append(_delta(self.open.index, {"type": "thinking_delta", "thinking": text}))
        return out

    def _seal(self, signature: str) -> None:
        if self.open is not None and self.open.kind == "thinking":
            self.open.signature = signature
        elif self.blocks and self.blocks[-1].kind == "thinking":
            self.blocks[-1].signature = self.blocks[-1].signature or signature
        else:
            self.pending_signature = signature

    def _server_tool_use(self, ident: str, query: str) -> list[dict[str, Any]]:
        assert self.search is not None
        self.searches += 1
        start = {"type": "server_tool_use", "id": ident, "name": self.search.name, "input": {}}
        block, out = self._open("server_tool_use", start)
        block.data = {"id": ident, "name": self.search.name, "input": {"query": query}}
        arguments = orjson.dumps({"query": query}).decode()
        out.append(_delta(block.index, {"type": "input_json_delta", "partial_json": arguments}))
        return out + self._close()

    def _search_result(
        self, ident: str, content: list[dict[str, Any]] | dict[str, Any]
    ) -> list[dict[str, Any]]:
        kind = "web_search_tool_result"
        data = {"tool_use_id": ident, "content": content}
        block, out = self._open(kind, {"type": kind, **data})
        block.data = data
        return out + self._close()

    def _cited_text(self, said: str, citations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        start: dict[str, Any] = {"type": "text", "text": ""}
        if citations:
            start["citations"] = []
        block, out = self._open("text", start)
        block.text.append(said)
        block.data = {"citations": citations} if citations else {}
        for citation in citations:
            out.append(_delta(block.index, {"type": "citations_delta", "citation": citation}))
        out.append(_delta(block.index, {"type": "text_delta", "text": said}))
        return out + self._close()

    def _grounded_end(self) -> list[dict[str, Any]]:
        """The searches grounding reports, then the held text cut into cited blocks. All
        pages go with the first query: grounding does not say which query found which."""
        assert self.search is not None
        out = self._close()
        results = search_results(self.grounding, self.search)
        queries = [str(q) for q in self.grounding.get("webSearchQueries") or [] if q]
        for k, query in enumerate(queries or ([""] if results else [])):
            ident = server_tool_id()
            out += self._server_tool_use(ident, query)
            out += self._search_result(ident, results if k == 0 else [])
        answer, self.held = "".join(self.held), []
        for said, citations in cited_spans(answer, self.grounding, self.search):
            out += self._cited_text(said, citations)
        return out

    def _final_usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = dict(self.usage)
        if self.search is not None:
            usage["server_tool_use"] = {
                "web_search_requests": self.searches,
                "web_fetch_requests": 0,
            }
        return usage

    def finish(self) -> list[dict[str, Any]]:
        out = [] if self.started else self._start()
        out += self._grounded_end() if self.grounded else self._close()
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
                "usage": self._final_usage(),
            }
        )
        out.append({"type": "message_stop"})
        return out

    def message(self) -> dict[str, Any]:
        content = []
        for block in self.blocks:
            if block.kind == "text":
                content.append({"type": "text", "text": "".join(block.text), **block.data})
            elif block.kind == "thinking":
                content.append(
                    {
                        "type": "thinking",
                        "thinking": "".join(block.text),
                        "signature": block.signature or "",
                    }
                )
            else:  # tool_use, server_tool_use, web_search_tool_result
                content.append({"type": block.kind, **block.data})
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason or "end_turn",
            "stop_sequence": None,
            "usage": self._final_usage(),
        }


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}
