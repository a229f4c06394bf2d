"""Anthropic Messages ⇄ Gemini: pure functions, no I/O.

Thinking blocks travel with their signatures: a signed thinking block in the history
becomes a thought part carrying `thoughtSignature`, and a tool_use the backend must
see as signed gets the signature of the thinking that preceded it (or the one
remembered for its id), else the backend's "skip validation" sentinel.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
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
    strings,
    text,
    wrong,
)
from agproxy.translate.gemini import SKIP_SIGNATURE, repair_tool_turns
from agproxy.translate.schema import clean_schema

MAX_OUTPUT = 65536
ADAPTIVE_BUDGET = 24576
STOP_REASON = {"STOP": "end_turn", "MAX_TOKENS": "max_tokens"}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise wrong(where, "a string or an array of blocks")
    return [as_dict(block, f"{where}[{j}]") for j, block in enumerate(content)]


def tool_result_text(
    content: Any, where: str = "tool_result.content"
) -> tuple[str, list[dict[str, Any]]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts, images = [], []
    for j, block in enumerate(as_list(content, where)):
        at = f"{where}[{j}]"
        block = as_dict(block, at)
        if block.get("type") == "text":
            texts.append(text(block, "text", at))
        elif block.get("type") == "image":
            images.append(_media(block, at))
    return "\n".join(texts), images


def _media(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = opt_dict(block, "source", where)
    data = opt_str(source, "data", f"{where}.source")
    if source.get("type") == "base64" and data:
        return {
            "inlineData": {
                "mimeType": opt_str(source, "media_type", f"{where}.source") or "image/png",
                "data": data,
            }
        }
    raise BadRequest(
        f"{where}: {str(block.get('type'))[:20]} blocks need a base64 source "
        "here (URL sources are fetched by the gateway first)",
        f"{where}.source",
    )


def _system_texts(system: Any) -> list[str]:
    if system is None or isinstance(system, str):
        return [system] if system else []
    texts = []
    for j, block in enumerate(as_list(system, "system")):
        block = as_dict(block, f"system[{j}]")
        if block.get("type") == "text" and (said := text(block, "text", f"system[{j}]")):
            texts.append(said)
    return texts


class _Turn:
    """The Gemini parts of one message, and what later messages need from earlier ones."""

    def __init__(self, names: dict[str, str], signatures: Mapping[str, str]) -> None:
        self.names = names  # tool_use id → tool name, for the results that follow
        self.signatures = signatures
        self.last_signature: str | None = None

    def parts(self, block: dict[str, Any], role: str, where: str) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            said = text(block, "text", where)
            return [{"text": said}] if said else []
        if kind in ("image", "document"):
            return [_media(block, where)]
        if kind == "thinking" and role == "assistant":
            thought = text(block, "thinking", where)
            signature = opt_str(block, "signature", where)
            if signature:
                self.last_signature = signature
                return [{"text": thought, "thought": True, "thoughtSignature": signature}]
            return [{"text": thought}] if thought else []
        if kind == "tool_use" and role == "assistant":
            tool_id = text(block, "id", where)
            self.names[tool_id] = text(block, "name", where)
            call: dict[str, Any] = {
                "name": self.names[tool_id],
                "args": opt_dict(block, "input", where),
            }
            if tool_id:
                call["id"] = tool_id
            return [
                {
                    "functionCall": call,
                    "thoughtSignature": self.signatures.get(tool_id)
                    or self.last_signature
                    or SKIP_SIGNATURE,
                }
            ]
        if kind == "tool_result":
            tool_id = text(block, "tool_use_id", where)
            result, images = tool_result_text(block.get("content"), f"{where}.content")
            if not result:
                result = (
                    "Tool execution failed with no output."
                    if block.get("is_error")
                    else "Command executed successfully."
                )
            elif block.get("is_error"):
                result = f"Error: {result}"
            response: dict[str, Any] = {
                "name": self.names.get(tool_id, tool_id),
                "response": {"result": result},
            }
            if tool_id:
                response["id"] = tool_id
            return [{"functionResponse": response}, *images]
        return []  # redacted_thinking, server tool blocks: nothing the upstream can take


def messages_to_gemini(
    body: dict[str, Any], model: str, signatures: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The inner Gemini request for an Anthropic Messages body. `signatures` maps tool_use
    ids to the thought signatures seen when they were produced."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required", "messages")
    system_texts = _system_texts(body.get("system"))
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        message = as_dict(message, where)
        role = message.get("role")
        blocks = _blocks(message.get("content"), f"{where}.content")
        if role == "system":  # Claude Code 2.x sends some of these inside messages
            system_texts += [
                text(b, "text", f"{where}.content[{j}]")
                for j, b in enumerate(blocks)
                if b.get("type") == "text"
            ]
            continue
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where}.role: unexpected role {str(role)[:40]!r}", f"{where}.role")
        turn = _Turn(names, signatures or {})
        parts = [
            part
            for j, block in enumerate(blocks)
            for part in turn.parts(block, role, f"{where}.content[{j}]")
        ]
        if parts:
            gemini_role = "model" if role == "assistant" else "user"
            if contents and contents[-1]["role"] == gemini_role:
                contents[-1]["parts"] += parts
            else:
                contents.append({"role": gemini_role, "parts": parts})
    contents = repair_tool_turns(contents)
    if not contents or contents[0]["role"] != "user":
        contents.insert(0, {"role": "user", "parts": [{"text": " "}]})
    request: dict[str, Any] = {"contents": contents}
    if system_texts:
        request["systemInstruction"] = {
            "role": "user",
            "parts": [{"text": "\n\n".join(system_texts)}],
        }
    declarations = _declarations(opt_list(body, "tools", ""))
    if declarations:
        request["tools"] = [{"functionDeclarations": declarations}]
        request["toolConfig"] = {"functionCallingConfig": _calling_config(body.get("tool_choice"))}
    request["generationConfig"] = _generation(body)
    return request


def _declarations(tools: list[Any]) -> list[dict[str, Any]]:
    declarations = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        tool = as_dict(tool, where)
        name = opt_str(tool, "name", where)
        if not name:
            continue
        if tool.get("type") not in (None, "custom") and "input_schema" not in tool:
            continue  # server tools (web search, computer use): no upstream equivalent
        declaration: dict[str, Any] = {"name": name}
        if description := opt_str(tool, "description", where):
            declaration["description"] = description
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise wrong(f"{where}.input_schema", "an object")
        declaration["parameters"] = clean_schema(schema, upper_types=False)
        declarations.append(declaration)
    return declarations


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str):  # a bare "auto" from a lenient client
        choice = {"type": choice}
    choice = as_dict(choice, "tool_choice") if choice is not None else {}
    kind = opt_str(choice, "type", "tool_choice")
    mode = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}.get(
        kind or "", "VALIDATED"
    )
    config: dict[str, Any] = {"mode": mode}
    if kind == "tool" and (name := opt_str(choice, "name", "tool_choice")):
        config["allowedFunctionNames"] = [name]
    return config


def _generation(body: dict[str, Any]) -> dict[str, Any]:
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens: a positive integer is required", "max_tokens")
    config: dict[str, Any] = {"maxOutputTokens": min(max_tokens, MAX_OUTPUT)}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        value = body.get(src)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(f"{src}: a number is required", src)
            config[dst] = value
    stops = strings(body, "stop_sequences", "")
    if stops:
        config["stopSequences"] = stops[:5]
    thinking = opt_dict(body, "thinking", "")
    if thinking.get("type") in ("enabled", "adaptive"):
        budget = thinking.get("budget_tokens") or thinking.get("budgetTokens") or ADAPTIVE_BUDGET
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise BadRequest(
                "thinking.budget_tokens: a positive integer is required", "thinking.budget_tokens"
            )
        config["thinkingConfig"] = {"includeThoughts": True, "thinkingBudget": budget}
        if config["maxOutputTokens"] <= budget:
            config["maxOutputTokens"] = min(budget + 8192, MAX_OUTPUT)
            config["thinkingConfig"]["thinkingBudget"] = min(budget, config["maxOutputTokens"] - 1)
    return config


# -- response --------------------------------------------------------------------------
def tool_id(call: dict[str, Any]) -> str:
    if call.get("id"):
        return str(call["id"])
    alphabet = string.ascii_letters + string.digits
    return "toolu_" + "".join(secrets.choice(alphabet) for _ in range(24))


@dataclass
class _Block:
    kind: str  # text, thinking, tool_use
    index: int
    text: list[str] = field(default_factory=list)
    signature: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class MessageStream:
    """Gemini events in, Anthropic SSE events out; `message()` is the collected answer.
    `signatures` records tool_use id → thought signature for the next turn."""

    def __init__(self, model: str) -> None:
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

    def _usage(self, meta: dict[str, Any]) -> None:
        cached = int(meta.get("cachedContentTokenCount") or 0)
        self.usage = {
            "input_tokens": int(meta.get("promptTokenCount") or 0) - cached,
            "output_tokens": int(meta.get("candidatesTokenCount") or 0)
            + int(meta.get("thoughtsTokenCount") or 0),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        }

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

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("usageMetadata"):
            self._usage(event["usageMetadata"])
        out = [] if self.started else self._start()
        for candidate in (event.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                out += self._part(part)
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
        if text:
            if self.open is None or self.open.kind != "text":
                _, out = self._open("text", {"type": "text", "text": ""})
            assert self.open is not None
            self.open.text.append(text)
            out.append(_delta(self.open.index, {"type": "text_delta", "text": text}))
        return out

    def _tool_call(self, call: dict[str, Any], signature: str | None) -> list[dict[str, Any]]:
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

    def finish(self) -> list[dict[str, Any]]:
        out = [] if self.started else self._start()
        out += self._close()
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
                "usage": {
                    "output_tokens": self.usage["output_tokens"],
                    "input_tokens": self.usage["input_tokens"],
                    "cache_read_input_tokens": self.usage["cache_read_input_tokens"],
                    "cache_creation_input_tokens": 0,
                },
            }
        )
        out.append({"type": "message_stop"})
        return out

    def message(self) -> dict[str, Any]:
        content = []
        for block in self.blocks:
            if block.kind == "text":
                content.append({"type": "text", "text": "".join(block.text)})
            elif block.kind == "thinking":
                content.append(
                    {
                        "type": "thinking",
                        "thinking": "".join(block.text),
                        "signature": block.signature or "",
                    }
                )
            else:
                content.append({"type": "tool_use", **block.data})
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason or "end_turn",
            "stop_sequence": None,
            "usage": self.usage,
        }


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}
