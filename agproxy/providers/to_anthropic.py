"""The Gemini pivot as an Anthropic Messages request, and the answer (streamed events or
one message) back as pivot answer events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agproxy.providers import pivot as p

# max_tokens is required by the Messages API; a request that names none gets this.
DEFAULT_MAX_TOKENS = 8192
STOP_REASONS = {"max_tokens": "MAX_TOKENS", "refusal": "SAFETY"}


def messages_request(request: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    ids = p.CallIds("toolu_")
    messages: list[dict[str, Any]] = []
    for role, parts in p.contents(request):
        blocks = _blocks(role, parts, ids)
        if not blocks:
            continue
        speaker = "assistant" if role == "model" else "user"
        if messages and messages[-1]["role"] == speaker:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": speaker, "content": blocks})
    for message in messages:  # tool results come first in their turn
        message["content"].sort(key=lambda b: b["type"] != "tool_result")
    config = p.generation(request)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": config.get("maxOutputTokens") or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system := p.system_text(request):
        body["system"] = system
    for src, dst in (
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("topK", "top_k"),
        ("stopSequences", "stop_sequences"),
    ):
        if config.get(src) is not None:
            body[dst] = config[src]
    _tools(request, body)
    if stream:
        body["stream"] = True
    return body


def _blocks(role: str, parts: list[dict[str, Any]], ids: p.CallIds) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part.get("text"), str) and part["text"] and not part.get("thought"):
            blocks.append({"type": "text", "text": part["text"]})
        elif isinstance(part.get("inlineData"), dict) and role == "user":
            data = part["inlineData"]
            source = {
                "type": "base64",
                "media_type": data.get("mimeType"),
                "data": data.get("data"),
            }
            blocks.append({"type": "image", "source": source})
        elif isinstance(part.get("functionCall"), dict) and role == "model":
            call = part["functionCall"]
            blocks.append(
                {
                    "type": "tool_use",
                    "id": ids.call(call),
                    "name": str(call.get("name") or ""),
                    "input": call.get("args") if isinstance(call.get("args"), dict) else {},
                }
            )
        elif isinstance(part.get("functionResponse"), dict):
            response = part["functionResponse"]
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": ids.result(response),
                    "content": p.result_text(response.get("response")),
                }
            )
    return blocks


def _tools(request: dict[str, Any], body: dict[str, Any]) -> None:
    declared = p.declarations(request)
    if not declared:
        return
    body["tools"] = [
        {"name": name, "description": about, "input_schema": schema}
        for name, about, schema in declared
    ]
    mode, names = p.calling_mode(request)
    if mode == "NONE":
        body["tool_choice"] = {"type": "none"}
    elif mode == "ANY" and len(names) == 1:
        body["tool_choice"] = {"type": "tool", "name": names[0]}
    elif mode == "ANY":
        body["tool_choice"] = {"type": "any"}


@dataclass
class _ToolUse:
    id: str
    name: str
    json: list[str] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)


class MessagesAnswer:
    """Messages API events (or one message) in, pivot answer events out. A tool_use block
    streams its input as JSON pieces: it is handed on whole when the block stops."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.blocks: dict[int, _ToolUse] = {}
        self.input_tokens = 0
        self.cached_tokens = 0

    def feed(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict):
            return []
        kind = data.get("type")
        if kind == "message":  # one answer, not streamed
            return self._whole(data)
        if kind == "message_start":
            self._count_input(p.as_dict(data.get("message")).get("usage"))
        elif kind == "content_block_start":
            return self._block_start(data)
        elif kind == "content_block_delta":
            return self._delta(data)
        elif kind == "content_block_stop":
            block = self.blocks.pop(_int(data.get("index")), None)
            if block is not None:
                return [p.answer_event(self.model, [_call_part(block)])]
        elif kind == "message_delta":
            return [self._end(data)]
        return []

    def _count_input(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.cached_tokens = _int(usage.get("cache_read_input_tokens"))
            self.input_tokens = _int(usage.get("input_tokens")) + self.cached_tokens

    def _block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = p.as_dict(data.get("content_block"))
        if block.get("type") == "tool_use":
            self.blocks[_int(data.get("index"))] = _ToolUse(
                str(block.get("id") or ""), str(block.get("name") or "")
            )
        elif block.get("type") == "text" and _text(block.get("text")):
            return [p.answer_event(self.model, [{"text": block["text"]}])]
        return []

    def _delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = p.as_dict(data.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and _text(delta.get("text")):
            return [p.answer_event(self.model, [{"text": delta["text"]}])]
        if kind == "thinking_delta" and _text(delta.get("thinking")):
            return [p.answer_event(self.model, [{"text": delta["thinking"], "thought": True}])]
        if kind == "input_json_delta":
            block = self.blocks.get(_int(data.get("index")))
            if block is not None and isinstance(delta.get("partial_json"), str):
                block.json.append(delta["partial_json"])
        return []

    def _end(self, data: dict[str, Any]) -> dict[str, Any]:
        reason = p.as_dict(data.get("delta")).get("stop_reason")
        output = _int(p.as_dict(data.get("usage")).get("output_tokens"))
        usage = p.usage_metadata(self.input_tokens, output, self.cached_tokens)
        return p.answer_event(self.model, [], STOP_REASONS.get(str(reason), "STOP"), usage)

    def _whole(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self._count_input(message.get("usage"))
        parts: list[dict[str, Any]] = []
        for block in p.as_list(message.get("content")):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and _text(block.get("text")):
                parts.append({"text": block["text"]})
            elif block.get("type") == "thinking" and _text(block.get("thinking")):
                parts.append({"text": block["thinking"], "thought": True})
            elif block.get("type") == "tool_use":
                use = _ToolUse(str(block.get("id") or ""), str(block.get("name") or ""))
                given = block.get("input")
                use.input = given if isinstance(given, dict) else {}
                parts.append(_call_part(use))
        end = self._end({"delta": message, "usage": message.get("usage")})
        end["candidates"][0]["content"]["parts"] = parts
        return [end]


def _call_part(block: _ToolUse) -> dict[str, Any]:
    args = p.parsed_arguments("".join(block.json)) if block.json else block.input
    call: dict[str, Any] = {"name": block.name, "args": args}
    if block.id:
        call["id"] = block.id
    return {"functionCall": call}


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
