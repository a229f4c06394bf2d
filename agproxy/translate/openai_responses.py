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

from agproxy.translate.openai_chat import BadRequest, call_id

log = logging.getLogger("agproxy.translate")


def _uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _parts(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, dict):
                url = url.get("url")
            if isinstance(url, str):
                parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


WEB_SEARCH_TYPES = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26"})


def _tools(tools: Any) -> list[dict[str, Any]]:
    """Function tools carry over; web search becomes a marker (Google Search grounding,
    added when no function tool is present); the rest is dropped with a log line."""
    out: list[dict[str, Any]] = []
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") in WEB_SEARCH_TYPES:
            out.append({"type": "web_search"})
        elif tool.get("type") == "function" and tool.get("name"):
            out.append({"type": "function", "function": {
                "name": tool["name"], "description": tool.get("description", ""),
                "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}})
        else:
            log.info("dropping tool of type %r: no upstream equivalent", tool.get("type"))
    return out


def responses_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion body equivalent to a Responses request."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise BadRequest("input must be a string or a non-empty array of items", "input")
    pending_calls: list[dict[str, Any]] = []

    def flush_calls() -> None:
        if pending_calls:
            messages.append({"role": "assistant", "content": None,
                             "tool_calls": list(pending_calls)})
            pending_calls.clear()

    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest("each input item must be an object", f"input[{i}]")
        kind = item.get("type", "message")
        if kind == "function_call":
            pending_calls.append({"id": item.get("call_id"), "type": "function", "function": {
                "name": item.get("name"), "arguments": item.get("arguments") or "{}"}})
            continue
        flush_calls()
        if kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": output if isinstance(output, str)
                             else orjson.dumps(output).decode()})
        elif kind == "message":
            role = item.get("role", "user")
            if role not in ("user", "assistant", "system", "developer"):
                raise BadRequest(f"unknown role {role!r}", f"input[{i}].role")
            messages.append({"role": role, "content": _parts(item.get("content"))})
        elif kind == "reasoning":
            continue  # our own earlier reasoning summaries: nothing to send back
        else:
            log.info("dropping input item of type %r", kind)
    flush_calls()
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
        if not chat["tools"]:
            del chat["tools"]
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    for src, dst in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"),
                     ("top_p", "top_p")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    fmt = ((body.get("text") or {}).get("format") or {})
    if fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            "name": fmt.get("name", "output"), "schema": fmt.get("schema") or {}}}
    elif fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat


@dataclass
class _Item:
    item: dict[str, Any]
    index: int
    text: list[str] = field(default_factory=list)


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
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "model": self.model, "output": [i.item for i in self.items],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "error": None, "incomplete_details": None, "instructions": None,
            "metadata": {}, "temperature": None, "top_p": None, "text": {
                "format": {"type": "text"}},
            "usage": self.usage,
        }
        if status == "incomplete":
            body["incomplete_details"] = {"reason": self.incomplete or "max_output_tokens"}
        return body

    def start(self) -> list[dict[str, Any]]:
        started = self.response("in_progress")
        return [self._event("response.created", response=started),
                self._event("response.in_progress", response=started)]

    def _close_text(self) -> list[dict[str, Any]]:
        events = []
        for attr in ("_open_reasoning", "_open_text"):
            open_item: _Item | None = getattr(self, attr)
            if open_item is None:
                continue
            text = "".join(open_item.text)
            item = open_item.item
            if item["type"] == "message":
                part = {"type": "output_text", "text": text, "annotations": []}
                item["content"] = [part]
                events += [self._event("response.output_text.done", item_id=item["id"],
                                       output_index=open_item.index, content_index=0,
                                       text=text),
                           self._event("response.content_part.done", item_id=item["id"],
                                       output_index=open_item.index, content_index=0,
                                       part=part)]
            else:
                summary = {"type": "summary_text", "text": text}
                item["summary"] = [summary]
                events += [self._event("response.reasoning_summary_text.done",
                                       item_id=item["id"], output_index=open_item.index,
                                       summary_index=0, text=text),
                           self._event("response.reasoning_summary_part.done",
                                       item_id=item["id"], output_index=open_item.index,
                                       summary_index=0, part=summary)]
            item["status"] = "completed"
            events.append(self._event("response.output_item.done",
                                      output_index=open_item.index, item=item))
            setattr(self, attr, None)
        return events

    def _open(self, item: dict[str, Any]) -> tuple[_Item, list[dict[str, Any]]]:
        entry = _Item(item, len(self.items))
        self.items.append(entry)
        return entry, [self._event("response.output_item.added", output_index=entry.index,
                                   item=dict(item))]

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if event.get("usageMetadata"):
            meta = event["usageMetadata"]
            prompt = int(meta.get("promptTokenCount") or 0)
            output = int(meta.get("candidatesTokenCount") or 0)
            thoughts = int(meta.get("thoughtsTokenCount") or 0)
            self.usage = {
                "input_tokens": prompt, "output_tokens": output + thoughts,
                "total_tokens": int(meta.get("totalTokenCount") or prompt + output + thoughts),
                "input_tokens_details": {"cached_tokens": int(
                    meta.get("cachedContentTokenCount") or 0)},
                "output_tokens_details": {"reasoning_tokens": thoughts}}
        for candidate in (event.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if "functionCall" in part:
                    out += self._close_text()
                    call = part["functionCall"]
                    arguments = orjson.dumps(call.get("args") or {}).decode()
                    item = {"type": "function_call", "id": _uid("fc"),
                            "call_id": call_id(call), "name": call.get("name", ""),
                            "arguments": "", "status": "in_progress"}
                    entry, added = self._open(item)
                    out += added
                    out.append(self._event("response.function_call_arguments.delta",
                                           item_id=item["id"], output_index=entry.index,
                                           delta=arguments))
                    out.append(self._event("response.function_call_arguments.done",
                                           item_id=item["id"], output_index=entry.index,
                                           arguments=arguments))
                    item.update(arguments=arguments, status="completed")
                    out.append(self._event("response.output_item.done",
                                           output_index=entry.index, item=item))
                elif isinstance(part.get("text"), str) and part["text"]:
                    out += self._text(part["text"], bool(part.get("thought")))
            reason = candidate.get("finishReason")
            if reason == "MAX_TOKENS":
                self.incomplete = "max_output_tokens"
            elif reason in ("SAFETY", "RECITATION", "PROHIBITED_CONTENT"):
                self.incomplete = "content_filter"
        return out

    def _text(self, text: str, thought: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        attr = "_open_reasoning" if thought else "_open_text"
        entry: _Item | None = getattr(self, attr)
        if entry is None:
            if not thought and self._open_reasoning is not None:
                out += self._close_text()
            if thought:
                item = {"type": "reasoning", "id": _uid("rs"), "summary": []}
            else:
                item = {"type": "message", "id": _uid("msg"), "status": "in_progress",
                        "role": "assistant", "content": []}
            entry, added = self._open(item)
            setattr(self, attr, entry)
            out += added
            if thought:
                out.append(self._event("response.reasoning_summary_part.added",
                                       item_id=item["id"], output_index=entry.index,
                                       summary_index=0,
                                       part={"type": "summary_text", "text": ""}))
            else:
                out.append(self._event("response.content_part.added", item_id=item["id"],
                                       output_index=entry.index, content_index=0,
                                       part={"type": "output_text", "text": "",
                                             "annotations": []}))
        entry.text.append(text)
        if thought:
            out.append(self._event("response.reasoning_summary_text.delta",
                                   item_id=entry.item["id"], output_index=entry.index,
                                   summary_index=0, delta=text))
        else:
            out.append(self._event("response.output_text.delta", item_id=entry.item["id"],
                                   output_index=entry.index, content_index=0, delta=text,
                                   logprobs=[]))
        return out

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
