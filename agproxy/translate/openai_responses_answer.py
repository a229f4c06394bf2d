"""Gemini events in, OpenAI Responses API events out (the answer half of
openai_responses.py): output items, the typed stream events and the final response
object. Pure: no I/O."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from agproxy.translate.openai_chat import call_id


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class _Item:
    item: dict[str, Any]
    index: int
    text: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _TextKind:
    """A text item's events: the answer's message, or the reasoning summary."""

    field: str  # where the item keeps its parts
    index: str  # how its events number the part
    part_type: str
    delta: str
    text_done: str
    part_added: str
    part_done: str

    def part(self, text: str) -> dict[str, Any]:
        if self is MESSAGE:
            return {"type": self.part_type, "text": text, "annotations": []}
        return {"type": self.part_type, "text": text}


MESSAGE = _TextKind(
    "content",
    "content_index",
    "output_text",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.added",
    "response.content_part.done",
)
REASONING = _TextKind(
    "summary",
    "summary_index",
    "summary_text",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
)


@dataclass(frozen=True, slots=True)
class _CallKind:
    """A tool call item's events: a function's JSON arguments or a custom tool's text."""

    field: str
    delta: str
    done: str


FUNCTION_CALL = _CallKind(
    "arguments",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
)
CUSTOM_CALL = _CallKind(
    "input", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done"
)


class ResponsesStream:
    """Gemini events in, Responses API events out; `response()` is the final object."""

    def __init__(
        self,
        model: str,
        custom: frozenset[str] = frozenset(),
        echo: dict[str, Any] | None = None,
    ) -> None:
        self.custom = custom  # custom tools: their calls are custom_tool_call items
        self.echo = echo or {}  # request fields the response object repeats
        self.id = uid("resp")
        self.created_at = int(time.time())
        self.model = model
        self.sequence = 0
        self.items: list[_Item] = []
        self._open_text: _Item | None = None
        self._open_reasoning: _Item | None = None
        self.usage: dict[str, Any] | None = None
        self.incomplete: str | None = None
        self.failed_message: str | None = None

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return event

    def response(self, status: str = "completed") -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": [i.item for i in self.items],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "temperature": None,
            "top_p": None,
            "text": {"format": {"type": "text"}},
            "usage": self.usage,
        }
        body.update(self.echo)
        if status == "incomplete":
            body["incomplete_details"] = {"reason": self.incomplete or "max_output_tokens"}
        return body

    def start(self) -> list[dict[str, Any]]:
        started = self.response("in_progress")
        return [
            self._event("response.created", response=started),
            self._event("response.in_progress", response=started),
        ]

    def _close_text(self) -> list[dict[str, Any]]:
        events = []
        for attr in ("_open_reasoning", "_open_text"):
            open_item: _Item | None = getattr(self, attr)
            if open_item is None:
                continue
            text = "".join(open_item.text)
            item = open_item.item
            kind = MESSAGE if item["type"] == "message" else REASONING
            part = kind.part(text)
            item[kind.field] = [part]
            where = {"item_id": item["id"], "output_index": open_item.index, kind.index: 0}
            events += [
                self._event(kind.text_done, **where, text=text),
                self._event(kind.part_done, **where, part=part),
            ]
            item["status"] = "completed"
            events.append(
                self._event("response.output_item.done", output_index=open_item.index, item=item)
            )
            setattr(self, attr, None)
        return events

    def _open(self, item: dict[str, Any]) -> tuple[_Item, list[dict[str, Any]]]:
        entry = _Item(item, len(self.items))
        self.items.append(entry)
        return entry, [
            self._event("response.output_item.added", output_index=entry.index, item=dict(item))
        ]

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if event.get("usageMetadata"):
            meta = event["usageMetadata"]
            prompt = int(meta.get("promptTokenCount") or 0)
            output = int(meta.get("candidatesTokenCount") or 0)
            thoughts = int(meta.get("thoughtsTokenCount") or 0)
            self.usage = {
                "input_tokens": prompt,
                "output_tokens": output + thoughts,
                "total_tokens": int(meta.get("totalTokenCount") or prompt + output + thoughts),
                "input_tokens_details": {
                    "cached_tokens": int(meta.get("cachedContentTokenCount") or 0)
                },
                "output_tokens_details": {"reasoning_tokens": thoughts},
            }
        for candidate in (event.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if "functionCall" in part:
                    out += self._function_call(part["functionCall"])
                elif isinstance(part.get("text"), str) and part["text"]:
                    out += self._text(part["text"], bool(part.get("thought")))
            reason = candidate.get("finishReason")
            if reason == "MAX_TOKENS":
                self.incomplete = "max_output_tokens"
            elif reason in ("SAFETY", "RECITATION", "PROHIBITED_CONTENT"):
                self.incomplete = "content_filter"
        return out

    def _function_call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close_text()
        name = call.get("name", "")
        args = call.get("args") or {}
        if name in self.custom:
            value = args.get("input") if isinstance(args, dict) else None
            kind = CUSTOM_CALL
            item = {"type": "custom_tool_call", "id": uid("ctc"), "input": ""}
            payload = value if isinstance(value, str) else orjson.dumps(args).decode()
        else:
            kind = FUNCTION_CALL
            item = {"type": "function_call", "id": uid("fc"), "arguments": ""}
            payload = orjson.dumps(args).decode()
        item.update(call_id=call_id(call), name=name, status="in_progress")
        entry, added = self._open(item)
        out += added
        where = {"item_id": item["id"], "output_index": entry.index}
        out.append(self._event(kind.delta, **where, delta=payload))
        out.append(self._event(kind.done, **where, **{kind.field: payload}))
        item.update({kind.field: payload, "status": "completed"})
        out.append(self._event("response.output_item.done", output_index=entry.index, item=item))
        return out

    def _text(self, text: str, thought: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        attr = "_open_reasoning" if thought else "_open_text"
        entry: _Item | None = getattr(self, attr)
        if entry is None:
            entry, out = self._open_text_item(attr, thought)
        entry.text.append(text)
        kind = REASONING if thought else MESSAGE
        where = {"item_id": entry.item["id"], "output_index": entry.index, kind.index: 0}
        if thought:
            out.append(self._event(kind.delta, **where, delta=text))
        else:
            out.append(self._event(kind.delta, **where, delta=text, logprobs=[]))
        return out

    def _open_text_item(self, attr: str, thought: bool) -> tuple[_Item, list[dict[str, Any]]]:
        out: list[dict[str, Any]] = []
        if not thought and self._open_reasoning is not None:
            out += self._close_text()
        if thought:
            item = {"type": "reasoning", "id": uid("rs"), "summary": []}
        else:
            item = {
                "type": "message",
                "id": uid("msg"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
        entry, added = self._open(item)
        setattr(self, attr, entry)
        out += added
        kind = REASONING if thought else MESSAGE
        where = {"item_id": item["id"], "output_index": entry.index, kind.index: 0}
        out.append(self._event(kind.part_added, **where, part=kind.part("")))
        return entry, out

    def finish(self) -> list[dict[str, Any]]:
        out = self._close_text()
        status = "incomplete" if self.incomplete else "completed"
        kind = "response.incomplete" if self.incomplete else "response.completed"
        out.append(self._event(kind, response=self.response(status)))
        return out

    def failed(self, message: str) -> dict[str, Any]:
        self.failed_message = message
        body = self.response("failed")
        body["error"] = {"code": "server_error", "message": message}
        return self._event("response.failed", response=body)
