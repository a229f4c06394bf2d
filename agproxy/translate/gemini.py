"""Gemini-native requests: the client already speaks Gemini; adjust only what the
backend needs and pass the rest through untouched."""

from __future__ import annotations

from typing import Any

# Fields a Gemini generateContent body may carry that the backend takes as they are.
_DROP_FOR_COUNT = ("safetySettings", "generationConfig", "tools", "toolConfig")


SKIP_SIGNATURE = "skip_thought_signature_validator"


def _sign_function_calls(contents: Any) -> Any:
    """Function calls the model made earlier must carry a thought signature; a client that
    dropped it gets the backend's "do not validate" sentinel. Copies only what changes."""
    if not isinstance(contents, list):
        return contents
    out = contents
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        parts = content.get("parts")
        if not isinstance(parts, list) or not any(
                isinstance(p, dict) and "functionCall" in p and not (
                    p.get("thoughtSignature") or p.get("thought_signature")) for p in parts):
            continue
        if out is contents:
            out = list(contents)
        out[i] = {**content, "parts": [
            {**p, "thoughtSignature": SKIP_SIGNATURE}
            if isinstance(p, dict) and "functionCall" in p
            and not (p.get("thoughtSignature") or p.get("thought_signature")) else p
            for p in parts]}
    return out


def _with_roles(contents: Any) -> Any:
    if not isinstance(contents, list) or all(
            not isinstance(c, dict) or c.get("role") for c in contents):
        return contents
    return [{**c, "role": "user"} if isinstance(c, dict) and not c.get("role") else c
            for c in contents]


def prepare_request(body: dict[str, Any]) -> dict[str, Any]:
    """The inner `request` for the envelope: the body as sent, but for the system role and
    unsigned function calls in the history."""
    request = dict(body)
    request["contents"] = _sign_function_calls(_with_roles(request.get("contents")))
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
    request["contents"] = _with_roles(request["contents"])
    return {"request": request}


def estimate_tokens(body: dict[str, Any]) -> int:
    """Offline estimate when no account can count: about four characters a token."""
    import orjson
    return max(1, len(orjson.dumps(body.get("contents") or [])) // 4)
