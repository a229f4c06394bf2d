"""Gemini-native API: `/v1beta/models/{model}:{method}` (and the same under `/v1`).

The client already speaks Gemini: its body becomes the envelope's `request`, the
upstream's `response` is unwrapped and passed back, streams event by event.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agproxy.frontends import passthrough
from agproxy.frontends.common import JSONResponse, read_raw
from agproxy.frontends.failures import upstream_failure
from agproxy.frontends.keepalive import BLANK_LINE, GEMINI_SSE, JSON_WAIT, WHITESPACE
from agproxy.frontends.pipeline import answer_check, event_stream, relay, respond, stream_generate
from agproxy.monitor import note, note_tokens
from agproxy.pool.policy import Attempt, Exhausted
from agproxy.protocols import Protocol, error_response
from agproxy.providers.pivot import merged
from agproxy.providers.registry import Target
from agproxy.router.models import clean
from agproxy.service import Gateway
from agproxy.translate import gemini as translate
from agproxy.translate.envelope import conversation_key, wrap
from agproxy.translate.fields import BadRequest, check_nesting
from agproxy.translate.rewrites import rewrite_system
from agproxy.upstream import UpstreamError
from agproxy.upstream.errors import answer_text

GOOGLE = Protocol.GOOGLE
METHODS = ("generateContent", "streamGenerateContent", "countTokens")


def _gateway(request: Request) -> Gateway:
    return cast(Gateway, request.app.state.gateway)


def model_info(model: str) -> dict[str, Any]:
    """One model in both Gemini's and OpenAI's shape: /v1/models/{id} serves both SDKs."""
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "description": "",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": list(METHODS),
        "id": model,
        "object": "model",
        "created": 0,
        "owned_by": "agproxy",
    }


async def get_model(request: Request) -> Response:
    gateway = _gateway(request)
    requested = clean(request.path_params["target"])
    if gateway.route_model(requested) is None:
        return error_response(
            GOOGLE,
            404,
            f"model {requested!r} is not served by this gateway; see GET /v1beta/models",
        )
    return JSONResponse(model_info(requested))


async def read_body(request: Request) -> dict[str, Any] | Response:
    raw = await read_raw(request)
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        return error_response(GOOGLE, 400, f"Invalid JSON payload received. {exc}")
    if not isinstance(body, dict):
        return error_response(GOOGLE, 400, "Invalid JSON payload: expected an object")
    try:
        check_nesting(body, raw=raw)
    except BadRequest as exc:
        return error_response(GOOGLE, 400, exc.message)
    return body


async def call_model(request: Request) -> Response:
    target = request.path_params["target"]
    model_part, _, method = target.rpartition(":")
    if not model_part or method not in METHODS:
        return error_response(
            GOOGLE,
            404 if not model_part else 400,
            f"unknown method {method!r}; supported: {', '.join(METHODS)}",
        )
    gateway = _gateway(request)
    requested = clean(model_part)
    note(requested_model=requested)
    body = await read_body(request)
    if isinstance(body, Response):
        return body
    model = gateway.route_model(requested)  # the user's mapping rules apply here too
    if method == "countTokens":
        return await count_tokens(gateway, body, model or requested)
    if model is None:
        return error_response(
            GOOGLE,
            404,
            f"model {requested!r} is not served by any account in the pool; see GET /v1beta/models",
        )
    try:
        contents = translate.check_contents(body.get("contents"))
    except BadRequest as exc:
        return error_response(GOOGLE, 400, exc.message)
    headers = {"x-agproxy-model": model}
    sse = request.query_params.get("alt") == "sse"
    target = gateway.provider_for(model)
    if target is not None and target.entry.kind == "gemini_api_key":
        return _passed(request, gateway, target, method, sse, body)
    inner = translate.prepare_request(body)
    session = conversation_key(contents)
    call = _Call(gateway, model, inner, session, headers)
    if method == "generateContent" and (target or gateway.providers.serving(model)):
        return await _generate_through_providers(call)
    if method == "generateContent":
        return await _generate(call)
    return await _stream(call, sse=sse)


def _passed(
    request: Request,
    gateway: Gateway,
    target: Target,
    method: str,
    sse: bool,
    body: dict[str, Any],
) -> Response:
    """The request for a Gemini API provider, forwarded as it is."""
    path = f"/v1beta/models/{quote(target.model, safe='')}:{method}"
    streamed = method == "streamGenerateContent"
    if streamed and sse:
        path += "?alt=sse"
    forwarded = passthrough.forward(request, target, path, body)
    waiting = GEMINI_SSE if streamed and sse else JSON_WAIT
    return respond(GOOGLE, forwarded, gateway.settings.stream_ping_seconds, waiting)


async def _generate_through_providers(call: _Call) -> Response:
    """generateContent for a model a provider serves (or backs up): the pipeline's stream,
    read whole and merged into one answer."""
    gateway, model, inner, session, headers = call

    async def answer() -> Response:
        first, events = await stream_generate(gateway, model, session, lambda: inner, whole=True)
        result = merged([first, *[event async for event in events]])
        _note_usage(result)
        return JSONResponse(result, headers=headers)

    return respond(GOOGLE, answer(), gateway.settings.stream_ping_seconds)


class _Call(NamedTuple):
    gateway: Gateway
    model: str
    inner: dict[str, Any]  # the Gemini request, for the pool's upstream
    session: str | None
    headers: dict[str, str]


async def _generate(call: _Call) -> Response:
    gateway, model, inner, session, headers = call
    client = gateway.accounts.client
    inner = rewrite_system(inner, gateway.settings.prompt_rewrites)
    check = answer_check(gateway)

    async def attempt(a: Attempt) -> Any:
        result = await client.generate(
            wrap(inner, a.model, a.creds.project or "", a.account.id), a.creds
        )
        if check is not None and (error := check(answer_text(result))) is not None:
            raise error
        return result

    async def answer() -> Response:
        result = await gateway.policy.run(model, session, attempt)
        _note_usage(result)
        return JSONResponse(result, headers=headers)

    return respond(GOOGLE, answer(), gateway.settings.stream_ping_seconds)


def _note_usage(event: Any) -> None:
    meta = event.get("usageMetadata") if isinstance(event, dict) else None
    if meta:
        note_tokens(
            meta.get("promptTokenCount"),
            meta.get("candidatesTokenCount"),
            meta.get("thoughtsTokenCount"),
        )


async def _stream(call: _Call, sse: bool) -> Response:
    gateway, model, inner, session, headers = call
    every = gateway.settings.stream_ping_seconds

    async def answer() -> Response:
        # Retried only before the first byte: after it, a failure ends the stream.
        first, events = await stream_generate(gateway, model, session, lambda: inner, whole=False)
        if sse:
            return event_stream(relay(_SSEFrames(), first, events, every), headers)
        frames = relay(_ArrayFrames(), first, events, every)
        return StreamingResponse(frames, media_type="application/json", headers=headers)

    return respond(GOOGLE, answer(), every, GEMINI_SSE if sse else JSON_WAIT)


def _stream_error(error: UpstreamError) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "code": error.status if error.status >= 400 else 502,
                "message": f"upstream stream failed: {error.message}",
                "status": "UNAVAILABLE",
            }
        }
    )


class _SSEFrames:
    """The upstream's own events, passed through as `data:` lines (`?alt=sse`)."""

    keepalive = BLANK_LINE

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: Any) -> list[bytes]:
        _note_usage(event)
        return [b"data: " + orjson.dumps(event) + b"\r\n\r\n"]

    def finish(self) -> list[bytes]:
        return []

    def failed(self, error: UpstreamError) -> list[bytes]:
        return [b"data: " + _stream_error(error) + b"\r\n\r\n"]


class _ArrayFrames:
    """The upstream's own events as one JSON array, written as they arrive."""

    keepalive = WHITESPACE

    def __init__(self) -> None:
        self.opened = False

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: Any) -> list[bytes]:
        _note_usage(event)
        separator = b",\n" if self.opened else b"["
        self.opened = True
        return [separator + orjson.dumps(event)]

    def finish(self) -> list[bytes]:
        return [b"]"]

    def failed(self, error: UpstreamError) -> list[bytes]:
        return [b",\n" + _stream_error(error), b"]"]


async def count_tokens(gateway: Gateway, body: dict[str, Any], model: str) -> Response:
    client = gateway.accounts.client
    try:
        payload = translate.count_request(body, model)
    except BadRequest as exc:
        return error_response(GOOGLE, 400, exc.message)

    async def attempt(a: Attempt) -> Any:
        return await client.call("countTokens", payload, a.creds)

    try:
        result = await gateway.policy.run(model, None, attempt)
    except Exhausted:
        # No account can count right now: a documented estimate rather than a failure.
        return JSONResponse(
            {"totalTokens": translate.estimate_tokens(body)}, headers={"x-agproxy-estimate": "true"}
        )
    except UpstreamError as error:
        return upstream_failure(GOOGLE, error)
    total = (result.get("response") or result).get("totalTokens", 0)
    return JSONResponse({"totalTokens": total})
