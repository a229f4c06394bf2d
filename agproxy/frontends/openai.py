"""OpenAI-compatible routes: `POST /v1/chat/completions` and the legacy
`POST /v1/completions`, streamed or not, and image generation (the Responses API is in
responses.py)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends import passthrough
from agproxy.frontends.common import JSONResponse, read_raw
from agproxy.frontends.fetch import FetchError, inline_image_urls
from agproxy.frontends.keepalive import JSON_WAIT, OPENAI_SSE, SSE_COMMENT
from agproxy.frontends.pipeline import collect, event_stream, relay, respond, stream_generate
from agproxy.monitor import note, note_tokens
from agproxy.protocols import Protocol, error_body
from agproxy.router.mapping import close_matches
from agproxy.service import Gateway
from agproxy.translate.envelope import conversation_key
from agproxy.translate.fields import BadRequest, check_nesting, opt_dict
from agproxy.translate.openai_chat import ChatStream, chat_to_gemini
from agproxy.upstream import UpstreamError

OPENAI = Protocol.OPENAI
DONE = b"data: [DONE]\n\n"


def bad_request(message: str, param: str | None = None) -> Response:
    body = error_body(OPENAI, 400, message)
    body["error"]["param"] = param
    return JSONResponse(body, status_code=400)


async def read_json(request: Request) -> dict[str, Any] | Response:
    """The body as a JSON object, or the 400 that says why it is not one."""
    raw = await read_raw(request)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return bad_request(f"the request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return bad_request("the request body must be a JSON object")
    try:
        check_nesting(body, raw=raw)
    except BadRequest as exc:
        return bad_request(exc.message, exc.param)
    return body


def routed_model(gateway: Gateway, body: dict[str, Any]) -> str | Response:
    """The model that serves the body's `model`, or the 400/404 that says why none does."""
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        return bad_request("model is required", "model")
    note(requested_model=requested)
    model = gateway.route_model(requested)
    if model is None:
        catalog = gateway.catalog()
        close = ", ".join(close_matches(requested, catalog) or catalog[:8]) or (
            "none: add a Google account first"
        )
        return JSONResponse(
            error_body(
                OPENAI,
                404,
                f"The model {requested!r} does not exist "
                f"in this gateway and no mapping rule "
                f"matches it. Close matches: {close}",
            ),
            status_code=404,
        )
    return model


async def chat_completions(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    body = await read_json(request)
    if isinstance(body, Response):
        return body
    return await _complete(gateway, body, legacy=False, request=request)


async def completions(request: Request) -> Response:
    """The legacy prompt form, answered through the chat pipeline."""
    gateway: Gateway = request.app.state.gateway
    body = await read_json(request)
    if isinstance(body, Response):
        return body
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        prompt = "\n".join(prompt)
    if not isinstance(prompt, str) or not prompt:
        return bad_request("prompt must be a non-empty string or list of strings", "prompt")
    chat = {k: v for k, v in body.items() if k not in ("prompt", "suffix", "echo", "best_of")}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return await _complete(gateway, chat, legacy=True)


async def _complete(
    gateway: Gateway, body: dict[str, Any], legacy: bool, request: Request | None = None
) -> Response:
    model = routed_model(gateway, body)
    if isinstance(model, Response):
        return model
    requested = str(body["model"])
    settings = gateway.settings
    target = gateway.provider_for(model)
    if request is not None and target is not None and target.entry.kind == "openai_compatible":
        waiting = OPENAI_SSE if body.get("stream") is True else JSON_WAIT
        forwarded = passthrough.forward(request, target, "/chat/completions", body)
        return respond(OPENAI, forwarded, settings.stream_ping_seconds, waiting)
    try:
        await inline_image_urls(body.get("messages"), settings)
    except FetchError as exc:
        return bad_request(exc.message, "messages")
    try:
        inner = chat_to_gemini(body, model)
        options = opt_dict(body, "stream_options", "")
    except BadRequest as exc:
        return bad_request(exc.message, exc.param)
    session = conversation_key(inner["contents"])
    headers = {"x-agproxy-model": model}
    stream = body.get("stream") is True
    translator = ChatStream(requested, include_usage=bool(options.get("include_usage")))
    every = settings.stream_ping_seconds

    async def answer() -> Response:
        first, events = await stream_generate(
            gateway, model, session, lambda: inner, whole=not stream
        )
        if stream:
            frames = _ChatFrames(translator, legacy)
            return event_stream(relay(frames, first, events, every), headers)
        await collect(translator.feed, first, events)
        result = translator.collect()
        _note_chat_usage(translator)
        return JSONResponse(as_text_completion(result) if legacy else result, headers=headers)

    return respond(OPENAI, answer(), every, OPENAI_SSE if stream else JSON_WAIT)


def _note_chat_usage(translator: ChatStream) -> None:
    usage = translator.usage or {}
    details = usage.get("completion_tokens_details") or {}
    note_tokens(
        usage.get("prompt_tokens"), usage.get("completion_tokens"), details.get("reasoning_tokens")
    )


def as_text_completion(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion(.chunk) in the legacy text_completion shape."""
    choices = []
    for choice in chunk.get("choices") or []:
        source = choice.get("message") or choice.get("delta") or {}
        choices.append(
            {
                "text": source.get("content") or "",
                "index": choice["index"],
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    out = {
        "id": chunk["id"].replace("chatcmpl-", "cmpl-"),
        "object": "text_completion",
        "created": chunk.get("created"),
        "model": chunk.get("model"),
        "choices": choices,
    }
    if "usage" in chunk:
        out["usage"] = chunk["usage"]
    return out


class _ChatFrames:
    """Chat completion chunks as `data:` lines, `[DONE]` at the end (legacy completions
    get the text_completion shape)."""

    keepalive = SSE_COMMENT

    def __init__(self, translator: ChatStream, legacy: bool) -> None:
        self.translator, self.legacy = translator, legacy

    def _frame(self, chunk: dict[str, Any]) -> bytes:
        if self.legacy:
            chunk = as_text_completion(chunk)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: Any) -> list[bytes]:
        return [self._frame(chunk) for chunk in self.translator.feed(event)]

    def finish(self) -> list[bytes]:
        usage = self.translator.usage_chunk()
        _note_chat_usage(self.translator)
        return [self._frame(usage), DONE] if usage else [DONE]

    def failed(self, error: UpstreamError) -> list[bytes]:
        failure = {
            "id": self.translator.id,
            "object": "chat.completion.chunk",
            "choices": [],
            "error": {
                "message": f"upstream stream failed: {error.message}",
                "type": "upstream_error",
                "code": "stream_error",
            },
        }
        return [b"data: " + orjson.dumps(failure) + b"\n\n", DONE]
