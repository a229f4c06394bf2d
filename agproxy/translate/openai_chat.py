"""OpenAI chat completions ⇄ Gemini: pure functions, no I/O.

Request: messages → contents + systemInstruction, tools → functionDeclarations,
sampling options → generationConfig. Response: Gemini candidates → a chat
completion, or a stream of chat.completion.chunk objects (ChatStream).
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from agproxy.translate.fields import (
    BadRequest,
    as_dict,
    as_list,
    check_nesting,
    opt_dict,
    opt_list,
    opt_str,
    strings,
    text,
    wrong,
)
from agproxy.translate.gemini import SKIP_SIGNATURE, repair_tool_turns
from agproxy.translate.schema import clean_schema

EFFORT_BUDGET = {"minimal": 512, "low": 2048, "medium": 8192, "high": 24576}
FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}


# -- request ----------------------------------------------------------------------
def _text_of(content: Any, where: str) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for i, part in enumerate(as_list(content, where)):
        part = as_dict(part, f"{where}[{i}]")
        if part.get("type") in ("text", "input_text"):
            texts.append(text(part, "text", f"{where}[{i}]"))
    return "".join(texts)


def _image_part(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[5:].split(";")[0] or "image/png"
        if ";base64" not in header or not data:
            raise BadRequest(f"{where}: image data URLs must be base64 encoded", where)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("http://", "https://")):
        # The front end fetches http(s) images into data URLs before translating.
        raise BadRequest(f"{where}: this image URL was not fetched; send it as a data: URL", where)
    raise BadRequest(f"{where}: unsupported image URL {url[:40]!r}", where)


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise wrong(where, "a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise wrong(f"{where}[{i}]", "an object")
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if value := text(part, "text", f"{where}[{i}]"):
                parts.append({"text": value})
        elif kind in ("image_url", "input_image"):
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise BadRequest(
                    f"{where}[{i}].image_url.url is required (a string)",
                    f"{where}[{i}].image_url.url",
                )
            parts.append(_image_part(url, f"{where}[{i}]"))
        elif kind == "file":
            parts.append(file_part(opt_dict(part, "file", f"{where}[{i}]"), f"{where}[{i}].file"))
    return parts


def file_part(file: dict[str, Any], where: str) -> dict[str, Any]:
    """A file sent inline (`file_data`: a base64 data URL, or bare base64 with a
    `filename` that tells its type) as Gemini inline data."""
    if file.get("file_id") is not None:
        raise BadRequest(
            f"{where}.file_id: this gateway has no Files API; send the file's content "
            "as file_data (a base64 data: URL)",
            f"{where}.file_id",
        )
    data = opt_str(file, "file_data", where)
    if not data:
        raise BadRequest(
            f"{where}.file_data is required (a base64 data: URL)", f"{where}.file_data"
        )
    mime = None
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise BadRequest(f"{where}.file_data: data URLs must be base64 encoded", where)
        mime = header[5:].split(";")[0] or None
    filename = opt_str(file, "filename", where)
    if mime is None and filename:
        mime = mimetypes.guess_type(filename, strict=False)[0]
    if not mime or not data:
        raise BadRequest(
            f"{where}: cannot tell the file's type; send file_data as a data: URL "
            "(data:application/pdf;base64,…) or give a filename with an extension",
            f"{where}.file_data",
        )
    return {"inlineData": {"mimeType": mime, "data": data}}


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip():
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"_raw": raw}
        check_nesting(value, where)  # parsed here, so the body's check did not see it
        return value if isinstance(value, dict) else {"value": value}
    if raw is None or isinstance(raw, str):
        return {}
    raise BadRequest(f"{where} must be a JSON string or an object", where)


def _merge_roles(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The backend wants user/model strictly alternating: merge neighbours, drop empties."""
    merged: list[dict[str, Any]] = []
    for content in contents:
        if not content["parts"]:
            continue
        if merged and merged[-1]["role"] == content["role"]:
            merged[-1]["parts"].extend(content["parts"])
        else:
            merged.append({"role": content["role"], "parts": list(content["parts"])})
    if merged and merged[0]["role"] != "user":
        merged.insert(0, {"role": "user", "parts": [{"text": " "}]})
    return merged


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """Function declarations; a web_search tool becomes Google Search grounding, but only
    when no function is declared (the backend refuses the two together)."""
    declarations = []
    dropped = []
    search = False
    for i, tool in enumerate(opt_list(body, "tools", "")):
        where = f"tools[{i}]"
        tool = as_dict(tool, where)
        kind = opt_str(tool, "type", where) or "function"
        if kind in ("web_search", "google_search"):
            search = True
            continue
        if kind != "function":
            dropped.append(kind)
            continue
        fn = tool  # the flat form some clients send: name and parameters on the tool
        if tool.get("function") is not None:
            fn, where = opt_dict(tool, "function", where), f"{where}.function"
        name = opt_str(fn, "name", where)
        if not name:
            raise BadRequest(
                f"{where}.name is required: function tools need a name", f"{where}.name"
            )
        declaration: dict[str, Any] = {"name": name}
        if description := opt_str(fn, "description", where):
            declaration["description"] = description
        parameters = opt_dict(fn, "parameters", where)
        if parameters.get("properties"):
            declaration["parameters"] = clean_schema(parameters)
        declarations.append(declaration)
    if declarations:
        return [{"functionDeclarations": declarations}], dropped
    return ([{"googleSearch": {}}] if search else None), dropped


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if isinstance(choice, dict):
        name = opt_str(opt_dict(choice, "function", "tool_choice"), "name", "tool_choice.function")
        config: dict[str, Any] = {"mode": "ANY"}
        if name:
            config["allowedFunctionNames"] = [name]
        return {"functionCallingConfig": config}
    raise BadRequest("tool_choice must be none, auto, required or a function", "tool_choice")


def thinking_budget(body: dict[str, Any], model: str) -> int | None:
    effort = opt_str(body, "reasoning_effort", "")
    if effort is not None:
        if effort == "none":
            return 0
        if effort not in EFFORT_BUDGET:
            raise BadRequest(
                f"reasoning_effort must be one of none, {', '.join(EFFORT_BUDGET)}",
                "reasoning_effort",
            )
        return EFFORT_BUDGET[effort]
    if "thinking" in model:
        return EFFORT_BUDGET["high"]
    return None


def chat_to_gemini(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The inner Gemini request for an OpenAI chat body. Raises BadRequest."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array", "messages")
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise wrong(where, "an object")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            if instruction := _text_of(content, f"{where}.content"):
                system.append(instruction)
        elif role == "user":
            contents.append({"role": "user", "parts": _user_parts(content, f"{where}.content")})
        elif role == "assistant":
            contents.append(
                {"role": "model", "parts": _assistant_parts(message, where, call_names)}
            )
        elif role in ("tool", "function"):
            call_id = text(message, "tool_call_id", where)
            name = call_names.get(call_id) or opt_str(message, "name", where) or "unknown"
            response: dict[str, Any] = {
                "name": name,
                "response": {"result": _text_of(content, f"{where}.content")},
            }
            if call_id:
                response["id"] = call_id
            contents.append({"role": "user", "parts": [{"functionResponse": response}]})
        else:
            raise BadRequest(f"{where}.role: unknown role {str(role)[:40]!r}", f"{where}.role")
    request: dict[str, Any] = {"contents": repair_tool_turns(_merge_roles(contents))}
    if not request["contents"]:
        raise BadRequest("messages hold no user or assistant content", "messages")
    if system:
        request["systemInstruction"] = {"role": "user", "parts": [{"text": "\n\n".join(system)}]}
    tools, _dropped = _tools(body)
    if tools:
        request["tools"] = tools
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config and tools:
        request["toolConfig"] = tool_config
    request["generationConfig"] = _generation_config(body, model)
    return request


def _assistant_parts(
    message: dict[str, Any], where: str, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    """An assistant turn's text and tool calls (remembering each call's name by its id, for
    the tool results that follow).

    reasoning_content a client echoes back is left out: the chat API carries no thought
    signature, and the backend refuses unsigned thinking (Claude) or ignores it (Gemini);
    models do not need their earlier reasoning."""
    parts: list[dict[str, Any]] = []
    if said := _text_of(message.get("content"), f"{where}.content"):
        parts.append({"text": said})
    for j, call in enumerate(opt_list(message, "tool_calls", where)):
        at = f"{where}.tool_calls[{j}]"
        call = as_dict(call, at)
        fn = opt_dict(call, "function", at)
        name = text(fn, "name", f"{at}.function")
        ident = text(call, "id", at)
        call_names[ident] = name
        function_call: dict[str, Any] = {
            "name": name,
            "args": _arguments(fn.get("arguments"), f"{at}.function.arguments"),
        }
        if ident:
            function_call["id"] = ident
        parts.append({"functionCall": function_call, "thoughtSignature": SKIP_SIGNATURE})
    return parts


def _generation_config(body: dict[str, Any], model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for src, dst, kind in (
        ("temperature", "temperature", (int, float)),
        ("top_p", "topP", (int, float)),
        ("seed", "seed", int),
        ("presence_penalty", "presencePenalty", (int, float)),
        ("frequency_penalty", "frequencyPenalty", (int, float)),
    ):
        value = body.get(src)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            raise BadRequest(f"{src} must be a number", src)
        config[dst] = value
    key = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else ("max_tokens")
    )
    max_tokens = body.get(key)
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadRequest(f"{key} must be a positive integer", key)
        config["maxOutputTokens"] = max_tokens
    n = body.get("n")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8:
            raise BadRequest("n must be an integer from 1 to 8", "n")
        config["candidateCount"] = n
    stop = strings(body, "stop", "")
    if stop:
        config["stopSequences"] = stop[:5]
    fmt = opt_dict(body, "response_format", "")
    if fmt.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif fmt.get("type") == "json_schema":
        json_schema = opt_dict(fmt, "json_schema", "response_format")
        schema = opt_dict(json_schema, "schema", "response_format.json_schema")
        config["responseMimeType"] = "application/json"
        if schema:
            config["responseSchema"] = clean_schema(schema)
    budget = thinking_budget(body, model)
    if budget is not None:
        config["thinkingConfig"] = {"includeThoughts": budget > 0, "thinkingBudget": budget}
        if budget and config.get("maxOutputTokens", 0) and config["maxOutputTokens"] <= budget:
            config["maxOutputTokens"] = budget + 8192
    return config


# -- response ------------------------------------------------------------------------
def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def call_id(call: dict[str, Any]) -> str:
    if call.get("id"):
        return str(call["id"])
    digest = hashlib.sha256(orjson.dumps(call, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return "call_" + digest[:24]


def usage_of(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metadata:
        return None
    prompt = int(metadata.get("promptTokenCount") or 0)
    completion = int(metadata.get("candidatesTokenCount") or 0)
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion + thoughts,
        "total_tokens": int(metadata.get("totalTokenCount") or prompt + completion + thoughts),
    }
    if metadata.get("cachedContentTokenCount"):
        usage["prompt_tokens_details"] = {"cached_tokens": int(metadata["cachedContentTokenCount"])}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None


class ChatStream:
    """Gemini stream events in, chat.completion.chunk objects out (one translator per
    response). `collect()` turns everything seen into one chat.completion."""

    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.id = new_completion_id()
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.choices: dict[int, _Choice] = {}
        self.usage: dict[str, Any] | None = None
        self._role_sent: set[int] = set()

    def _chunk(
        self, index: int, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        if index not in self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent.add(index)
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        }

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = []
        if event.get("usageMetadata"):
            self.usage = usage_of(event["usageMetadata"])
        for candidate in event.get("candidates") or []:
            index = int(candidate.get("index") or 0)
            choice = self.choices.setdefault(index, _Choice())
            for part in (candidate.get("content") or {}).get("parts") or []:
                if "functionCall" in part:
                    call = part["functionCall"]
                    entry = {
                        "id": call_id(call),
                        "type": "function",
                        "function": {
                            "name": call.get("name", ""),
                            "arguments": orjson.dumps(call.get("args") or {}).decode(),
                        },
                    }
                    chunks.append(
                        self._chunk(index, {"tool_calls": [{"index": len(choice.calls), **entry}]})
                    )
                    choice.calls.append(entry)
                elif isinstance(part.get("text"), str) and part["text"]:
                    if part.get("thought"):
                        choice.reasoning.append(part["text"])
                        chunks.append(self._chunk(index, {"reasoning_content": part["text"]}))
                    else:
                        choice.text.append(part["text"])
                        chunks.append(self._chunk(index, {"content": part["text"]}))
                elif "inlineData" in part:
                    data = part["inlineData"]
                    text = f"![image](data:{data.get('mimeType')};base64,{data.get('data')})"
                    choice.text.append(text)
                    chunks.append(self._chunk(index, {"content": text}))
            reason = candidate.get("finishReason")
            if reason:
                choice.finish = "tool_calls" if choice.calls else FINISH.get(reason, "stop")
                chunks.append(self._chunk(index, {}, choice.finish))
        return chunks

    def usage_chunk(self) -> dict[str, Any] | None:
        if not self.include_usage:
            return None
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    def collect(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices) or [0]:
            choice = self.choices.get(index, _Choice())
            message: dict[str, Any] = {"role": "assistant", "content": "".join(choice.text) or None}
            if choice.reasoning:
                message["reasoning_content"] = "".join(choice.reasoning)
            if choice.calls:
                message["tool_calls"] = choice.calls
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": choice.finish or "stop",
                    "logprobs": None,
                }
            )
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
