"""The Gemini pivot as an OpenAI-compatible Chat Completions request, and the answer
(streamed chunks or one completion) back as pivot answer events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from agproxy.providers import pivot as p


def chat_request(request: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    ids = p.CallIds("call_")
    messages: list[dict[str, Any]] = []
    if system := p.system_text(request):
        messages.append({"role": "system", "content": system})
    for role, parts in p.contents(request):
        if role == "model":
            messages.append(_assistant(parts, ids))
            continue
        for part in parts:
            response = part.get("functionResponse")
            if isinstance(response, dict):
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": ids.result(response),
                        "content": p.result_text(response.get("response")),
                    }
                )
        if said := _user_content(parts):
            messages.append({"role": "user", "content": said})
    body: dict[str, Any] = {"model": model, "messages": messages}
    _tools(request, body)
    _options(p.generation(request), body)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _assistant(parts: list[dict[str, Any]], ids: p.CallIds) -> dict[str, Any]:
    text = "".join(
        x["text"] for x in parts if isinstance(x.get("text"), str) and not x.get("thought")
    )
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    calls = [
        {
            "id": ids.call(call),
            "type": "function",
            "function": {
                "name": str(call.get("name") or ""),
                "arguments": orjson.dumps(call.get("args") or {}).decode(),
            },
        }
        for call in (x.get("functionCall") for x in parts)
        if isinstance(call, dict)
    ]
    if calls:
        message["tool_calls"] = calls
    elif not text:
        message["content"] = ""
    return message


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text alone as a string; with images, the list of content parts."""
    items: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part.get("text"), str) and not part.get("thought"):
            items.append({"type": "text", "text": part["text"]})
        elif isinstance(part.get("inlineData"), dict):
            data = part["inlineData"]
            url = f"data:{data.get('mimeType')};base64,{data.get('data')}"
            items.append({"type": "image_url", "image_url": {"url": url}})
    if all(item["type"] == "text" for item in items):
        return "".join(item["text"] for item in items)
    return items


def _tools(request: dict[str, Any], body: dict[str, Any]) -> None:
    declared = p.declarations(request)
    if not declared:
        return
    body["tools"] = [
        {
            "type": "function",
            "function": {"name": name, "description": about, "parameters": schema},
        }
        for name, about, schema in declared
    ]
    mode, names = p.calling_mode(request)
    if mode == "NONE":
        body["tool_choice"] = "none"
    elif mode == "ANY" and len(names) == 1:
        body["tool_choice"] = {"type": "function", "function": {"name": names[0]}}
    elif mode == "ANY":
        body["tool_choice"] = "required"


def _options(config: dict[str, Any], body: dict[str, Any]) -> None:
    for src, dst in (
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("maxOutputTokens", "max_tokens"),
        ("seed", "seed"),
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
        ("stopSequences", "stop"),
    ):
        if config.get(src) is not None:
            body[dst] = config[src]
    if config.get("responseMimeType") == "application/json":
        body["response_format"] = {"type": "json_object"}


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatAnswer:
    """Chat completion chunks (or one completion) in, pivot answer events out. Tool calls
    stream their arguments in pieces: each is handed on whole, when its choice finishes."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.calls: dict[int, _Call] = {}

    def feed(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict):
            return []
        events = []
        for choice in p.as_list(data.get("choices")):
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events.extend(self._choice(choice))
        usage = data.get("usage")
        if isinstance(usage, dict):
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else 0
            metadata = p.usage_metadata(
                _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), _int(cached)
            )
            if events:
                events[-1]["usageMetadata"] = metadata
            else:
                events.append(p.answer_event(self.model, [], usage=metadata))
        return events

    def _choice(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        delta = p.as_dict(choice.get("delta") or choice.get("message"))
        parts: list[dict[str, Any]] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append({"text": reasoning, "thought": True})
        if isinstance(delta.get("content"), str) and delta["content"]:
            parts.append({"text": delta["content"]})
        for position, piece in enumerate(p.as_list(delta.get("tool_calls"))):
            if isinstance(piece, dict):
                self._call_piece(piece, position)
        finish = choice.get("finish_reason")
        if finish:
            parts.extend(self._finished_calls())
        if not parts and not finish:
            return []
        reason = p.FINISH_REASONS.get(str(finish), "STOP") if finish else None
        return [p.answer_event(self.model, parts, reason)]

    def _call_piece(self, piece: dict[str, Any], position: int) -> None:
        index = piece.get("index", position)
        call = self.calls.setdefault(index if isinstance(index, int) else position, _Call())
        call.id = piece["id"] if isinstance(piece.get("id"), str) else call.id
        function = p.as_dict(piece.get("function"))
        call.name = function["name"] if isinstance(function.get("name"), str) else call.name
        if isinstance(function.get("arguments"), str):
            call.arguments.append(function["arguments"])

    def _finished_calls(self) -> list[dict[str, Any]]:
        parts = []
        for _, call in sorted(self.calls.items()):
            function_call: dict[str, Any] = {
                "name": call.name,
                "args": p.parsed_arguments("".join(call.arguments)),
            }
            if call.id:
                function_call["id"] = call.id
            parts.append({"functionCall": function_call})
        self.calls.clear()
        return parts


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
