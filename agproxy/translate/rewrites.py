"""`prompt_rewrites`: find → replace on a request's system instruction (where every
protocol's system prompt, developer message and instructions end up in the Gemini pivot),
so a sentence that makes Google refuse the content can be defused without touching the
client. Literal text, applied in the listed order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agproxy.config import PromptRewrite


def rewrite(text: str, rules: Sequence[PromptRewrite]) -> str:
    for rule in rules:
        text = text.replace(rule.find, rule.replace)
    return text


def rewrite_system(inner: dict[str, Any], rules: Sequence[PromptRewrite]) -> dict[str, Any]:
    """The Gemini request with its system instruction rewritten (a new dict: the caller's
    request is left as it was, for the monitor and for retries)."""
    system = inner.get("systemInstruction") if rules else None
    parts = system.get("parts") if isinstance(system, dict) else None
    if not isinstance(system, dict) or not isinstance(parts, list):
        return inner
    rewritten = [
        {**part, "text": rewrite(part["text"], rules)}
        if isinstance(part, dict) and isinstance(part.get("text"), str)
        else part
        for part in parts
    ]
    return {**inner, "systemInstruction": {**system, "parts": rewritten}}
