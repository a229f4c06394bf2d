"""Claude Code's housekeeping and recovery, as pure functions: warm-up pings answered
locally, a history retried without thought signatures after the backend refused one,
and the upstream errors that mean "the prompt is too long"."""

from __future__ import annotations

import re
from typing import Any

from agproxy.translate.anthropic import tool_result_text
from agproxy.translate.fields import BadRequest

WARMUP = "Warmup"
RECOVERY_NOTE = (
    "[System Recovery] Your previous output contained an invalid signature. "
    "Please regenerate the response without the corrupted signature block."
)
SIGNATURE_ERROR = re.compile(
    r"signature|thinking\.thinking|thinking block|failed to deseriali[sz]e"
    r"|found [`'\"]?text[`'\"]?|must be [`'\"]?thinking",
    re.IGNORECASE,
)
PROMPT_TOO_LONG = re.compile(
    r"too long|exceeds the maximum|context (length|window)|input token count", re.IGNORECASE
)


def is_warmup(body: dict[str, Any]) -> bool:
    """Claude Code's start-up pings: the last message is `Warmup` (a short string, a text
    block, or an error tool result starting with it)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content.startswith(WARMUP) and len(content) < 100
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text = str(block.get("text") or "")
            if text == WARMUP or text.startswith(WARMUP + "\n"):
                return True
        if block.get("type") == "tool_result" and block.get("is_error"):
            try:
                if tool_result_text(block.get("content"))[0].startswith(WARMUP):
                    return True
            except BadRequest:
                return False  # not a warm-up; the translation names what is wrong
    return False


def warmup_answer() -> dict[str, Any]:
    """The Gemini event for the local `OK` a warm-up ping gets."""
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "OK"}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
    }


def is_signature_error(message: str) -> bool:
    return bool(SIGNATURE_ERROR.search(message))


def without_signatures(body: dict[str, Any]) -> dict[str, Any]:
    """The body for one more try after the upstream refused a thought signature (they
    are bound to the account and model that made them): every thinking block becomes
    plain text, redacted ones go, thinking is off, and the last user message says why."""
    messages: list[Any] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            messages.append(message)
            continue
        blocks = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "redacted_thinking":
                continue
            if kind == "thinking":
                if block.get("thinking"):
                    blocks.append({"type": "text", "text": str(block["thinking"])})
                continue
            if kind == "tool_use" and "signature" in block:
                block = {k: v for k, v in block.items() if k != "signature"}
            blocks.append(block)
        messages.append({**message, "content": blocks or [{"type": "text", "text": "."}]})
    for i in range(len(messages) - 1, -1, -1):
        last = messages[i]
        if isinstance(last, dict) and last.get("role") == "user":
            content = last.get("content")
            if isinstance(content, str):
                content = content + "\n\n" + RECOVERY_NOTE
            else:
                content = [*(content or []), {"type": "text", "text": RECOVERY_NOTE}]
            messages[i] = {**last, "content": content}
            break
    return {**{k: v for k, v in body.items() if k != "thinking"}, "messages": messages}
