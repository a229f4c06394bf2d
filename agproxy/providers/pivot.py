"""What the converters to the key-based providers share: reading the Gemini pivot (the
request every front end builds) and building its answer events.

The pivot is a Gemini `generateContent` request; an answer event is a Gemini
`GenerateContentResponse` (candidates with parts, usageMetadata), which every front end's
stream translator already reads.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from typing import Any

import orjson

from agproxy.translate.gemini import SKIP_SIGNATURE

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
_ids = itertools.count(1)


def system_text(pivot: dict[str, Any]) -> str:
    instruction = pivot.get("systemInstruction")
    parts = instruction.get("parts") if isinstance(instruction, dict) else None
    return "\n\n".join(p["text"] for p in _dicts(parts) if isinstance(p.get("text"), str))


def contents(pivot: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each turn as (role, parts): role "model" or "user"."""
    turns = []
    for content in _dicts(pivot.get("contents")):
        role = "model" if content.get("role") == "model" else "user"
        turns.append((role, _dicts(content.get("parts"))))
    return turns


def declarations(pivot: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each declared function's name, description and parameters as JSON Schema (built-in
    tools such as googleSearch are the Google backend's own: no provider is asked for
    them)."""
    found = []
    for tool in _dicts(pivot.get("tools")):
        for d in _dicts(tool.get("functionDeclarations")):
            schema = json_schema(d.get("parameters") or d.get("parametersJsonSchema"))
            found.append((str(d.get("name") or ""), str(d.get("description") or ""), schema))
    return found


def json_schema(schema: Any) -> dict[str, Any]:
    """A declaration's parameters as JSON Schema: Gemini's upper-case type names lowered."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    return _lowered(schema)  # type: ignore[no-any-return]


def _lowered(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lowered(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_lowered(v) for v in node]
    return node


def calling_mode(pivot: dict[str, Any]) -> tuple[str | None, list[str]]:
    """toolConfig's mode (AUTO, ANY, NONE) and the function names it allows."""
    config = pivot.get("toolConfig")
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return None, []
    names = [n for n in calling.get("allowedFunctionNames") or [] if isinstance(n, str)]
    mode = calling.get("mode")
    return (mode if isinstance(mode, str) else None), names


def generation(pivot: dict[str, Any]) -> dict[str, Any]:
    config = pivot.get("generationConfig")
    return config if isinstance(config, dict) else {}


def result_text(response: Any) -> str:
    """A functionResponse's `response` as the text a tool result carries."""
    if isinstance(response, dict) and set(response) == {"result"}:
        response = response["result"]
    if isinstance(response, str):
        return response
    return orjson.dumps(response).decode()


class CallIds:
    """Tool call ids for providers that need them on both ends: the pivot's own when it has
    them (OpenAI and Anthropic clients give them), else made up, and a result without an
    id answers the oldest open call of its function's name."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.open: dict[str, deque[str]] = defaultdict(deque)

    def call(self, call: dict[str, Any]) -> str:
        ident = call.get("id")
        if not isinstance(ident, str) or not ident:
            ident = f"{self.prefix}{next(_ids):06d}"
        self.open[str(call.get("name"))].append(ident)
        return ident

    def result(self, response: dict[str, Any]) -> str:
        waiting = self.open[str(response.get("name"))]
        ident = response.get("id")
        if isinstance(ident, str) and ident:
            if ident in waiting:
                waiting.remove(ident)
            return ident
        return waiting.popleft() if waiting else f"{self.prefix}{next(_ids):06d}"


def answer_event(
    model: str,
    parts: list[dict[str, Any]],
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0, "content": {"role": "model", "parts": parts}}
    if finish:
        candidate["finishReason"] = finish
    event: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
    if usage:
        event["usageMetadata"] = usage
    return event


def usage_metadata(prompt: int, output: int, cached: int = 0) -> dict[str, int]:
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
    return usage


def parsed_arguments(raw: str) -> dict[str, Any]:
    """A tool call's arguments, streamed as JSON text: an object, or {} when they are not."""
    try:
        args = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {}
    return args if isinstance(args, dict) else {"value": args}


def for_gemini_api(pivot: dict[str, Any]) -> dict[str, Any]:
    """The pivot as the public Gemini API takes it: without what only the Google backend
    reads (its session id, the signature placeholder that skips its validator)."""
    request = {k: v for k, v in pivot.items() if k not in ("sessionId", "model", "labels")}
    turns = []
    for content in _dicts(pivot.get("contents")):
        parts = [
            {k: v for k, v in p.items() if not (k == "thoughtSignature" and v == SKIP_SIGNATURE)}
            for p in _dicts(content.get("parts"))
        ]
        turns.append({**content, "parts": parts})
    request["contents"] = turns
    return request


def checked_event(data: Any) -> dict[str, Any] | None:
    """A Gemini API answer event as the translators may read it: candidates that are
    objects, parts that are objects, texts that are strings; None when it is no object."""
    if not isinstance(data, dict):
        return None
    candidates = []
    for candidate in _dicts(data.get("candidates")):
        content = as_dict(candidate.get("content"))
        parts = [
            part
            for part in _dicts(content.get("parts"))
            if isinstance(part.get("text", ""), str)
            and isinstance(part.get("functionCall", {}), dict)
            and isinstance(part.get("inlineData", {}), dict)
        ]
        candidates.append({**candidate, "content": {**content, "parts": parts}})
    event = {**data, "candidates": candidates}
    if not isinstance(event.get("usageMetadata", {}), dict):
        del event["usageMetadata"]
    return event


def as_dict(value: Any) -> dict[str, Any]:
    """A field of a provider's answer that should be an object: {} when it is not."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def merged(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Answer events as one `generateContent` response: the parts in order (neighbouring
    text of one kind joined), the last finish reason and usage."""
    parts: list[dict[str, Any]] = []
    finish = None
    result: dict[str, Any] = {}
    for event in events:
        for key in ("usageMetadata", "modelVersion"):
            if key in event:
                result[key] = event[key]
        for candidate in _dicts(event.get("candidates"))[:1]:
            finish = candidate.get("finishReason") or finish
            content = candidate.get("content")
            for part in _dicts(content.get("parts") if isinstance(content, dict) else None):
                last = parts[-1] if parts else None
                if (
                    last is not None
                    and set(part) <= {"text", "thought"}
                    and set(last) <= {"text", "thought"}
                    and bool(part.get("thought")) == bool(last.get("thought"))
                ):
                    parts[-1] = {**last, "text": last.get("text", "") + part.get("text", "")}
                else:
                    parts.append(part)
    return {**answer_event(str(result.get("modelVersion") or ""), parts, finish), **result}
