"""Gemini-native requests: the client already speaks Gemini; adjust only what the
backend needs and pass the rest through untouched."""

from __future__ import annotations

from typing import Any

# Fields a Gemini generateContent body may carry that the backend takes as they are.
_DROP_FOR_COUNT = ("safetySettings", "generationConfig", "tools", "toolConfig")


def prepare_request(body: dict[str, Any]) -> dict[str, Any]:
    """The inner `request` for the envelope. Shallow: the body is not walked."""
    request = dict(body)
    request.pop("model", None)
    system = request.get("systemInstruction") or request.pop("system_instruction", None)
    if isinstance(system, dict):
        request["systemInstruction"] = {**system, "role": "user"}
    elif isinstance(system, str):
        request["systemInstruction"] = {"role": "user", "parts": [{"text": system}]}
    return request


def count_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """countTokens takes the contents (and system text) only, with the model inside."""
    request: dict[str, Any] = {"model": f"models/{model}",
                               "contents": body.get("contents") or []}
    inner = body.get("generateContentRequest")
    if isinstance(inner, dict) and not request["contents"]:
        request["contents"] = inner.get("contents") or []
    return {"request": request}


def estimate_tokens(body: dict[str, Any]) -> int:
    """Offline estimate when no account can count: about four characters a token."""
    import orjson
    return max(1, len(orjson.dumps(body.get("contents") or [])) // 4)
