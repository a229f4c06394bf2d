"""OpenAI Responses API ⇄ Gemini (the wire Codex CLI speaks): pure functions, no I/O.

The request is first rewritten as a chat completion body (one translation to Gemini
to maintain); the answer is built from Gemini events as Responses output items, and
streamed as the Responses API's typed events.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from agproxy.translate.fields import (
    BadRequest,
    as_dict,
    as_list,
    opt_dict,
    opt_list,
    opt_str,
    text,
    wrong,
)
from agproxy.translate.openai_chat import EFFORT_BUDGET, call_id

log = logging.getLogger("agproxy.translate")


def _uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


IMAGE_URLS = ("data:", "http://", "https://")


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(as_list(content, where)):
        at = f"{where}[{i}]"
        part = as_dict(part, at)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": text(part, "text", at)})
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, dict):
                url = url.get("url")
            if url is not None and not (isinstance(url, str) and url.startswith(IMAGE_URLS)):
                raise wrong(f"{at}.image_url", "a data: or http(s) URL")
            if url:
                parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


WEB_SEARCH_TYPES = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26"})


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    """Function tools carry over; web search becomes a marker (Google Search grounding,
    added when no function tool is present); the rest is dropped with a log line."""
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        tool = as_dict(tool, where)
        kind = opt_str(tool, "type", where)
        if kind in WEB_SEARCH_TYPES:
            out.append({"type": "web_search"})
        elif kind == "function":
            name = opt_str(tool, "name", where)
            if not name:
                raise BadRequest(
                    f"{where}.name is required: function tools need a name", f"{where}.name"
                )
            parameters = opt_dict(tool, "parameters", where)
            out.append(
                {
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": text(tool, "description", where),
                        "parameters": parameters or {"type": "object", "properties": {}},
                    },
                }
            )
        else:
            log.info("dropping tool of type %r: no upstream equivalent", str(kind)[:40])
    return out


def _tool_choice(choice: Any) -> str | dict[str, Any] | None:
    if choice is None or choice in ("auto", "none", "required"):
        return str(choice) if choice else None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = opt_str(choice, "name", "tool_choice")
        return {"type": "function", "function": {"name": name}}
    if isinstance(choice, dict):
        return None  # hosted tools (file search, web search): nothing to force upstream
    raise wrong("tool_choice", "auto, none, required or an object")


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = opt_dict(opt_dict(body, "text", ""), "format", "text")
    kind = fmt.get("type")
    if kind == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {
                "name": opt_str(fmt, "name", "text.format") or "output",
                "schema": opt_dict(fmt, "schema", "text.format"),
            },
        }
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def _item(
    item: dict[str, Any],
    where: str,
    messages: list[dict[str, Any]],
    pending_calls: list[dict[str, Any]],
) -> None:
    """One input item as chat messages (function calls wait in `pending_calls` to be
    sent as one assistant message)."""
    kind = item.get("type", "message")
    if kind == "function_call":
        arguments = item.get("arguments")
        if arguments is not None and not isinstance(arguments, str | dict):
            raise wrong(f"{where}.arguments", "a JSON string")
        pending_calls.append(
            {
                "id": opt_str(item, "call_id", where),
                "type": "function",
                "function": {"name": text(item, "name", where), "arguments": arguments or "{}"},
            }
        )
        return
    if pending_calls:
        messages.append({"role": "assistant", "content": None, "tool_calls": list(pending_calls)})
        pending_calls.clear()
    if kind == "function_call_output":
        output = item.get("output")
        messages.append(
            {
                "role": "tool",
                "tool_call_id": opt_str(item, "call_id", where),
                "content": output if isinstance(output, str) else orjson.dumps(output).decode(),
            }
        )
    elif kind == "message":
        role = item.get("role", "user")
        if role not in ("user", "assistant", "system", "developer"):
            raise BadRequest(f"{where}.role: unknown role {str(role)[:40]!r}", f"{where}.role")
        messages.append({"role": role, "content": _parts(item.get("content"), f"{where}.content")})
    elif kind != "reasoning":  # our own earlier reasoning summaries: nothing to send back
        log.info("dropping input item of type %r", str(kind)[:40])


def responses_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion body equivalent to a Responses request."""
    messages: list[dict[str, Any]] = []
    if instructions := opt_str(body, "instructions", ""):
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str) and items:
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise BadRequest("input must be a string or a non-empty array of items", "input")
    pending_calls: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        _item(as_dict(item, f"input[{i}]"), f"input[{i}]", messages, pending_calls)
    if pending_calls:
        messages.append({"role": "assistant", "content": None, "tool_calls": pending_calls})
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if tools := _tools(opt_list(body, "tools", "")):
        chat["tools"] = tools
    if (choice := _tool_choice(body.get("tool_choice"))) is not None:
        chat["tool_choice"] = choice
    max_output = body.get("max_output_tokens")
    if max_output is not None:
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
            raise wrong("max_output_tokens", "a positive integer")
        chat["max_tokens"] = max_output
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            chat[key] = body[key]  # checked with the chat body's
    effort = opt_str(opt_dict(body, "reasoning", ""), "effort", "reasoning")
    if effort is not None:
        if effort not in ("none", *EFFORT_BUDGET):
            raise BadRequest(
                f"reasoning.effort must be one of none, {', '.join(EFFORT_BUDGET)}",
                "reasoning.effort",
            )
        chat["reasoning_effort"] = effort
    if fmt := _response_format(body):
        chat["response_format"] = fmt
    return chat


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


class ResponsesStream:
    """Gemini events in, Responses API events out; `response()` is the final object."""

    def __init__(self, model: str) -> None:
        self.id = _uid("resp")
        self.created_at = int(time.time())
        self.model = model
        self.sequence = 0
        self.items: list[_Item] = []
        self._open_text: _Item | None = None
        self._open_reasoning: _Item | None = None
        self.usage: dict[str, Any] | None = None
        self.incomplete: str | None = None

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
        arguments = orjson.dumps(call.get("args") or {}).decode()
        item = {
            "type": "function_call",
            "id": _uid("fc"),
            "call_id": call_id(call),
            "name": call.get("name", ""),
            "arguments": "",
            "status": "in_progress",
        }
        entry, added = self._open(item)
        out += added
        where = {"item_id": item["id"], "output_index": entry.index}
        out.append(self._event("response.function_call_arguments.delta", **where, delta=arguments))
        out.append(
            self._event("response.function_call_arguments.done", **where, arguments=arguments)
        )
        item.update(arguments=arguments, status="completed")
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
            item = {"type": "reasoning", "id": _uid("rs"), "summary": []}
        else:
            item = {
                "type": "message",
                "id": _uid("msg"),
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
        body = self.response("failed")
        body["error"] = {"code": "server_error", "message": message}
        return self._event("response.failed", response=body)
