"""`POST /v1/responses/compact`: a conversation in fewer items, the earlier ones replaced
by a summary the model writes (a `compaction` item the client sends back as input)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends.common import JSONResponse
from agproxy.frontends.keepalive import JSON_WAIT
from agproxy.frontends.openai import OPENAI, bad_request, read_json, routed_model
from agproxy.frontends.pipeline import collect, respond
from agproxy.frontends.responses import Refused, history, note_usage, upstream, with_id
from agproxy.protocols import error_body
from agproxy.service import Gateway
from agproxy.translate.fields import BadRequest
from agproxy.translate.openai_chat import chat_to_gemini
from agproxy.translate.openai_responses import (
    ResponsesStream,
    compaction_item,
    input_items,
    responses_to_chat,
)

COMPACT_INSTRUCTIONS = (
    "You compact a long conversation between a user and an AI assistant (often a coding "
    "agent) so that the assistant can carry on the same work with a fresh context. Write "
    "a summary that keeps everything needed to continue: the user's goals and requests, "
    "decisions and their reasons, what has been done (files changed, commands run and "
    "what they showed), the current state, open problems and the next steps, with exact "
    "names (paths, functions, error messages) where they matter. Be complete but "
    "concise. Answer with the summary only."
)
# What one tool output may add to the transcript the summary is written from.
TOOL_OUTPUT_CHARS = 8000


async def compact(request: Request) -> Response:
    """`POST /v1/responses/compact`: the conversation (its `input`, continuing
    `previous_response_id` if given) in fewer items: the user's messages, then one
    compaction item holding a summary written by the model. Sent back as input later,
    the compaction item stands for everything it summarized."""
    gateway: Gateway = request.app.state.gateway
    body = await read_json(request)
    if isinstance(body, Response):
        return body
    try:
        items = (await history(gateway, body)) + (input_items(body) if body.get("input") else [])
        if not items:
            raise BadRequest("input or previous_response_id is required", "input")
        chat = responses_to_chat({**body, "input": items, "tools": None, "instructions": None})
        transcript = _transcript(chat["messages"])
        model = routed_model(gateway, chat)
        if isinstance(model, Response):
            return model
        summary_chat = {
            "model": body.get("model"),
            "messages": [
                {"role": "system", "content": COMPACT_INSTRUCTIONS},
                {"role": "user", "content": transcript},
            ],
        }
        inner = chat_to_gemini(summary_chat, model)
    except BadRequest as exc:
        return bad_request(exc.message, exc.param)
    except Refused as refusal:
        return refusal.response
    translator = ResponsesStream(str(body["model"]))
    every = gateway.settings.stream_ping_seconds

    async def answer() -> Response:
        first, events = await upstream(gateway, model, inner, whole=True)
        await collect(translator.feed, first, events)
        translator.finish()
        note_usage(translator)
        return _compacted(translator, items, model)

    return respond(OPENAI, answer(), every, JSON_WAIT)


def _compacted(translator: ResponsesStream, items: list[dict[str, Any]], model: str) -> Response:
    """The compaction answer: the user's messages, then the summary the model wrote."""
    summary = "".join(
        part.get("text", "")
        for item in translator.response()["output"]
        if item.get("type") == "message"
        for part in item.get("content") or []
    )
    if not summary.strip():
        failure = error_body(OPENAI, 502, "the model wrote no summary; try compacting again")
        return JSONResponse(failure, status_code=502)
    kept = [with_id(i, translator.id, n) for n, i in enumerate(items) if _is_user(i)]
    return JSONResponse(
        {
            "id": translator.id,
            "object": "response.compaction",
            "created_at": translator.created_at,
            "output": [*kept, compaction_item(summary)],
            "usage": translator.usage,
        },
        headers={"x-agproxy-model": model},
    )


def _is_user(item: dict[str, Any]) -> bool:
    return bool(item.get("type", "message") == "message" and item.get("role", "user") == "user")


def _transcript(messages: list[dict[str, Any]]) -> str:
    """The conversation as plain text for the model that summarizes it: tool calls and
    their results as lines (no tool declarations are needed to read them)."""
    lines: list[str] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            continue
        if role == "tool":
            output = str(message.get("content") or "")
            if len(output) > TOOL_OUTPUT_CHARS:
                output = output[:TOOL_OUTPUT_CHARS] + f" […{len(output) - TOOL_OUTPUT_CHARS} chars]"
            lines.append(f"[tool result {message.get('tool_call_id') or ''}]\n{output}")
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(
                p.get("text", "") if p.get("type") == "text" else f"[{p.get('type')}]"
                for p in content
            )
        if content:
            lines.append(f"{role.upper()}:\n{content}")
        for call in message.get("tool_calls") or []:
            fn = call["function"]
            arguments = fn["arguments"]
            if not isinstance(arguments, str):
                arguments = orjson.dumps(arguments).decode()
            lines.append(f"[{role} called tool {fn['name']} ({call.get('id') or ''})] {arguments}")
    return "\n\n".join(lines) or "(empty conversation)"
