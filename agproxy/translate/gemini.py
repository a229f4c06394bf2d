"""Gemini-native requests: the client already speaks Gemini; adjust only what the
backend needs and pass the rest through untouched."""

from __future__ import annotations

from typing import Any

from agproxy.translate.fields import as_dict, opt_dict, opt_list, opt_str, wrong

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
            isinstance(p, dict)
            and "functionCall" in p
            and not (p.get("thoughtSignature") or p.get("thought_signature"))
            for p in parts
        ):
            continue
        if out is contents:
            out = list(contents)
        out[i] = {
            **content,
            "parts": [
                {**p, "thoughtSignature": SKIP_SIGNATURE}
                if isinstance(p, dict)
                and "functionCall" in p
                and not (p.get("thoughtSignature") or p.get("thought_signature"))
                else p
                for p in parts
            ],
        }
    return out


def _with_roles(contents: Any) -> Any:
    if not isinstance(contents, list) or all(
        not isinstance(c, dict) or c.get("role") for c in contents
    ):
        return contents
    return [
        {**c, "role": "user"} if isinstance(c, dict) and not c.get("role") else c for c in contents
    ]


def check_contents(contents: Any, where: str = "contents") -> list[dict[str, Any]]:
    """The contents the gateway reads (roles, parts, function calls): a non-empty list of
    {role, parts} objects with object parts. Raises BadRequest naming the field."""
    if not isinstance(contents, list) or not contents:
        raise wrong(where, "a non-empty array")
    for i, content in enumerate(contents):
        content = as_dict(content, f"{where}[{i}]")
        opt_str(content, "role", f"{where}[{i}]")
        for j, part in enumerate(opt_list(content, "parts", f"{where}[{i}]")):
            as_dict(part, f"{where}[{i}].parts[{j}]")
    return contents


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
    contents = body.get("contents")
    where = "contents"
    if not contents:
        inner = opt_dict(body, "generateContentRequest", "")
        contents, where = inner.get("contents"), "generateContentRequest.contents"
    request = {"model": f"models/{model}", "contents": _with_roles(check_contents(contents, where))}
    return {"request": request}


def estimate_tokens(body: dict[str, Any]) -> int:
    """Offline estimate when no account can count: about four characters a token."""
    import orjson

    return max(1, len(orjson.dumps(body.get("contents") or [])) // 4)


INTERRUPTED = "Tool execution interrupted. No result provided."


def repair_tool_turns(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make every tool call answered and every tool result answer a call, as the backend
    demands (Claude models refuse a `tool_use` without its `tool_result` in the next
    message; Gemini wants as many responses as calls).

    Clients break this when a user interrupts a tool run or a history is trimmed: a call
    left unanswered gets a result saying so, placed first in the next user turn; a
    result whose call is not in the turn before becomes plain text, so nothing is lost.
    Contents are alternating (merged) turns; only calls with ids are paired."""
    out = [dict(c) for c in contents]
    for i, content in enumerate(out):
        if content.get("role") != "user":
            continue
        before = out[i - 1] if i and out[i - 1].get("role") == "model" else None
        calls = [
            (p["functionCall"]["id"], p["functionCall"].get("name", ""))
            for p in (before or {}).get("parts", [])
            if isinstance(p, dict)
            and isinstance(p.get("functionCall"), dict)
            and p["functionCall"].get("id")
        ]
        call_ids = {call_id for call_id, _ in calls}
        responses: dict[str, dict[str, Any]] = {}
        others: list[Any] = []
        orphans = False
        for part in content.get("parts", []):
            response = part.get("functionResponse") if isinstance(part, dict) else None
            if isinstance(response, dict) and response.get("id") in call_ids:
                responses.setdefault(response["id"], part)
            elif isinstance(response, dict) and response.get("id"):
                orphans = True
                others.append(
                    {
                        "text": f"[result of tool {response.get('name', '')} "
                        f"({response['id']})]: "
                        f"{_result_of(response.get('response'))}"
                    }
                )
            else:
                others.append(part)
        if not calls and not orphans:
            continue  # nothing to pair here
        answered = [
            responses.get(call_id)
            or {
                "functionResponse": {
                    "name": name,
                    "id": call_id,
                    "response": {"result": INTERRUPTED},
                }
            }
            for call_id, name in calls
        ]
        content["parts"] = answered + others
    return out


def _result_of(response: Any) -> str:
    if isinstance(response, dict) and set(response) == {"result"}:
        return str(response["result"])
    return str(response)
