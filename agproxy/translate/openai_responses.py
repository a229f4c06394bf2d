"""OpenAI Responses API ⇄ Gemini (the wire Codex CLI speaks): pure functions, no I/O.

The request is first rewritten as a chat completion body (one translation to Gemini
to maintain); the answer is built from Gemini events as Responses output items, and
streamed as the Responses API's typed events (openai_responses_answer.py:
ResponsesStream, exported here too).
"""

from __future__ import annotations

import base64
import logging
import zlib
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
from agproxy.translate.openai_chat import EFFORT_BUDGET
from agproxy.translate.openai_responses_answer import ResponsesStream, uid

log = logging.getLogger("agproxy.translate")


IMAGE_URLS = ("data:", "http://", "https://")


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(as_list(content, where)):
        at = f"{where}[{i}]"
        part = as_dict(part, at)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "refusal"):
            parts.append(
                {"type": "text", "text": text(part, "refusal" if kind == "refusal" else "text", at)}
            )
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, dict):
                url = url.get("url")
            if url is None and part.get("file_id") is not None:
                raise BadRequest(
                    f"{at}.file_id: this gateway has no Files API; send the image as "
                    "image_url (a data: or http(s) URL)",
                    f"{at}.file_id",
                )
            if not (isinstance(url, str) and url.startswith(IMAGE_URLS)):
                raise wrong(f"{at}.image_url", "a data: or http(s) URL")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif kind == "input_file":
            if part.get("file_url") is not None:
                raise BadRequest(
                    f"{at}.file_url: files are not fetched by URL; send the content as "
                    "file_data (a base64 data: URL)",
                    f"{at}.file_url",
                )
            file = {k: part.get(k) for k in ("file_data", "file_id", "filename")}
            parts.append({"type": "file", "file": file})
        else:
            raise BadRequest(f"{at}.type: unknown content part {str(kind)[:40]!r}", f"{at}.type")
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
        elif kind == "custom":
            out.append(_custom_tool(tool, where))
        else:
            log.info("dropping tool of type %r: no upstream equivalent", str(kind)[:40])
    return out


def _custom_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A custom (freeform) tool as a function taking one string, `input`: the model is
    told the format (Codex's apply_patch gives a Lark grammar) in the description."""
    name = opt_str(tool, "name", where)
    if not name:
        raise BadRequest(f"{where}.name is required: custom tools need a name", f"{where}.name")
    description = text(tool, "description", where)
    fmt = opt_dict(tool, "format", where)
    if fmt.get("type") == "grammar":
        syntax = opt_str(fmt, "syntax", f"{where}.format") or "lark"
        grammar = text(fmt, "definition", f"{where}.format")
        description += (
            f"\n\nThe input is free text that must follow this {syntax} grammar:\n{grammar}"
        )
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description.strip(),
            "parameters": {
                "type": "object",
                "properties": {
                    "input": {"type": "string", "description": "The tool's free-text input."}
                },
                "required": ["input"],
            },
        },
    }


def custom_tool_names(body: dict[str, Any]) -> frozenset[str]:
    """The names of the request's custom tools: their calls come back as
    custom_tool_call items, not function calls."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return frozenset()
    return frozenset(
        t["name"]
        for t in tools
        if isinstance(t, dict) and t.get("type") == "custom" and isinstance(t.get("name"), str)
    )


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
    """One input item as chat messages (tool calls wait in `pending_calls` to be sent as
    one assistant message)."""
    kind = item.get("type", "message")
    if kind in ("function_call", "custom_tool_call"):
        pending_calls.append(_call(item, where, custom=kind == "custom_tool_call"))
        return
    if pending_calls:
        messages.append({"role": "assistant", "content": None, "tool_calls": list(pending_calls)})
        pending_calls.clear()
    if kind in ("function_call_output", "custom_tool_call_output"):
        messages.append(
            {
                "role": "tool",
                "tool_call_id": opt_str(item, "call_id", where),
                "content": _output_text(item.get("output"), f"{where}.output"),
            }
        )
    elif kind == "message":
        role = item.get("role", "user")
        if role not in ("user", "assistant", "system", "developer"):
            raise BadRequest(f"{where}.role: unknown role {str(role)[:40]!r}", f"{where}.role")
        messages.append({"role": role, "content": _parts(item.get("content"), f"{where}.content")})
    elif kind in ("compaction", "compaction_summary"):  # Codex reads either name
        summary = compaction_summary(text(item, "encrypted_content", where), where)
        messages.append({"role": "user", "content": SUMMARY_INTRO + summary})
    elif kind != "reasoning":  # reasoning summaries: the model does not take them back
        log.info("dropping input item of type %r", str(kind)[:40])


def _call(item: dict[str, Any], where: str, custom: bool) -> dict[str, Any]:
    if custom:
        arguments: Any = {"input": text(item, "input", where)}
    else:
        arguments = item.get("arguments")
        if arguments is not None and not isinstance(arguments, str | dict):
            raise wrong(f"{where}.arguments", "a JSON string")
    return {
        "id": opt_str(item, "call_id", where),
        "type": "function",
        "function": {"name": text(item, "name", where), "arguments": arguments or "{}"},
    }


def _output_text(output: Any, where: str) -> str:
    """A tool's output: a string, or a list of content parts (their text joined)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for i, part in enumerate(output):
            part = as_dict(part, f"{where}[{i}]")
            if part.get("type") in ("input_text", "output_text", "text"):
                texts.append(text(part, "text", f"{where}[{i}]"))
        return "\n".join(texts)
    return orjson.dumps(output).decode()


# -- compaction: a summary the client keeps in place of the conversation it replaces ------
# The Responses API hands the client an opaque `encrypted_content`; this gateway's holds
# the summary it wrote, compressed. It is not secret (it is the client's own
# conversation), only opaque, and is checked on the way back in.
COMPACTION_PREFIX = "agproxy-compaction-1:"
SUMMARY_INTRO = "Summary of the earlier conversation (it was compacted):\n\n"
MAX_SUMMARY_BYTES = 1024 * 1024


def compaction_item(summary: str) -> dict[str, Any]:
    packed = base64.urlsafe_b64encode(zlib.compress(summary.encode())).decode()
    return {
        "type": "compaction",
        "id": uid("cmp"),
        "encrypted_content": COMPACTION_PREFIX + packed,
    }


def compaction_summary(content: str, where: str) -> str:
    if not content.startswith(COMPACTION_PREFIX):
        raise BadRequest(
            f"{where}.encrypted_content: this compaction item was not made by this gateway "
            "(compact the conversation here, with POST /v1/responses/compact)",
            f"{where}.encrypted_content",
        )
    try:
        packed = base64.urlsafe_b64decode(content[len(COMPACTION_PREFIX) :])
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, MAX_SUMMARY_BYTES)
        if inflate.unconsumed_tail:
            raise ValueError("too large")
        return raw.decode()
    except (ValueError, zlib.error) as exc:  # binascii.Error and UnicodeError are ValueErrors
        raise BadRequest(
            f"{where}.encrypted_content is damaged or too large", f"{where}.encrypted_content"
        ) from exc


def input_items(body: dict[str, Any], continued: bool = False) -> list[dict[str, Any]]:
    """The request's `input` as a list of items (a string is one user message). A request
    that `continued` an earlier response may add none (Codex after its pre-warm)."""
    items = body.get("input")
    if continued and (items is None or items == []):
        return []
    if isinstance(items, str) and items:
        return [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}
        ]
    if not isinstance(items, list) or not items:
        raise BadRequest("input must be a string or a non-empty array of items", "input")
    return [as_dict(item, f"input[{i}]") for i, item in enumerate(items)]


def responses_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion body equivalent to a Responses request."""
    messages: list[dict[str, Any]] = []
    if instructions := opt_str(body, "instructions", ""):
        messages.append({"role": "system", "content": instructions})
    pending_calls: list[dict[str, Any]] = []
    for i, item in enumerate(input_items(body)):
        _item(item, f"input[{i}]", messages, pending_calls)
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


__all__ = [
    "ResponsesStream",
    "compaction_item",
    "compaction_summary",
    "custom_tool_names",
    "input_items",
    "responses_to_chat",
]
