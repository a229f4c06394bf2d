"""Anthropic-compatible Messages API: `POST /v1/messages` (also `?beta=true`, as Claude
Code sends it) and `POST /v1/messages/count_tokens`."""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agproxy.frontends import passthrough
from agproxy.frontends.anthropic_search import SearchLoop
from agproxy.frontends.common import JSONResponse, read_raw
from agproxy.frontends.failures import upstream_failure
from agproxy.frontends.fetch import FetchError, inline_anthropic_image_urls
from agproxy.frontends.keepalive import ANTHROPIC_SSE, JSON_WAIT
from agproxy.frontends.pipeline import collect, event_stream, relay, respond, stream_generate
from agproxy.monitor import note, note_tokens
from agproxy.pool.policy import Attempt, Exhausted
from agproxy.protocols import Protocol, error_response
from agproxy.providers.registry import Target
from agproxy.router.mapping import close_matches
from agproxy.service import DISPATCHER, Gateway
from agproxy.translate.anthropic import MessageStream, messages_to_gemini, web_search_of
from agproxy.translate.claude_code import (
    PROMPT_TOO_LONG,
    is_signature_error,
    is_warmup,
    warmup_answer,
    without_signatures,
)
from agproxy.translate.envelope import conversation_key
from agproxy.translate.fields import BadRequest, check_nesting, opt_dict, text
from agproxy.translate.gemini import estimate_tokens
from agproxy.upstream import Failure, UpstreamError

log = logging.getLogger("agproxy.anthropic")

ANTHROPIC = Protocol.ANTHROPIC
MAX_SIGNATURES = 5000
BACKGROUND_MARKERS = (
    "write a 5-10 word title",
    "respond with the title",
    "generate a title",
    "title for the conversation",
    "conversation title",
    "summarize this coding conversation",
    "prompt suggestion generator",
)


class Signatures(OrderedDict[str, str]):
    """tool_use id → the thought signature that came with it (bounded, newest kept)."""

    def remember(self, found: dict[str, str]) -> None:
        for key, value in found.items():
            self[key] = value
            self.move_to_end(key)
        while len(self) > MAX_SIGNATURES:
            self.popitem(last=False)


def _signatures(request: Request) -> Signatures:
    state = request.app.state
    if not hasattr(state, "signatures"):
        state.signatures = Signatures()
    return cast(Signatures, state.signatures)


def _error(status: int, message: str) -> Response:
    return error_response(
        ANTHROPIC, status, message, headers={"request-id": "req_" + secrets.token_hex(12)}
    )


async def _body(request: Request) -> dict[str, Any] | Response:
    raw = await read_raw(request)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _error(400, f"Invalid request body: {exc}")
    if not isinstance(body, dict):
        return _error(400, "Invalid request body: expected a JSON object")
    try:
        check_nesting(body, raw=raw)
    except BadRequest as exc:
        return _error(400, exc.message)
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "model: field required")
    note(requested_model=body["model"])
    return body


async def _body_and_model(
    request: Request, body: dict[str, Any]
) -> tuple[dict[str, Any], str] | Response:
    gateway: Gateway = request.app.state.gateway
    requested = str(body["model"])
    model = gateway.route_model(requested)
    if model is None:
        close = ", ".join(close_matches(requested, gateway.catalog()) or gateway.catalog()[:6])
        return _error(
            404,
            f"model: {requested!r} is not served by this gateway "
            f"(close matches: {close or 'none'})",
        )
    return body, model


async def messages(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    raw = await _body(request)
    if isinstance(raw, Response):
        return raw
    if gateway.settings.intercept_warmup and is_warmup(raw):
        return _warmup(raw)
    waiting = ANTHROPIC_SSE if raw.get("stream") is True else JSON_WAIT
    every = gateway.settings.stream_ping_seconds
    return respond(ANTHROPIC, _answer(request, gateway, raw), every, waiting, _refused)


async def _answer(request: Request, gateway: Gateway, raw: dict[str, Any]) -> Response:
    """The providers asked in the gateway's order, each after the one before has no
    account or key left; the last one's Exhausted is raised."""
    target = _provider(gateway, str(raw["model"]))
    if target is not None and target.entry.kind == "anthropic_api_key":
        return await passthrough.forward(request, target, "/v1/messages", raw)
    failure: Exhausted | None = None
    for provider in gateway.plan(str(raw["model"])):
        try:
            if provider == DISPATCHER:
                return await passthrough.to_dispatcher(request, "/v1/messages", raw)
            return await _from_google(request, gateway, raw)
        except Exhausted as exc:
            failure = exc
    assert failure is not None
    raise failure


def _provider(gateway: Gateway, requested: str) -> Target | None:
    """The key-based provider a request's model goes to first, if any."""
    if not gateway.providers.active():  # the model is routed once, later, as before
        return None
    model = gateway.route_model(requested)
    return gateway.provider_for(model) if model is not None else None


async def _from_google(request: Request, gateway: Gateway, raw: dict[str, Any]) -> Response:
    """The request translated for the Google pool and answered through it. Raises
    Exhausted and UpstreamError (what happens then is the caller's choice)."""
    background = gateway.settings.background_model
    if background and is_background_task(raw):
        raw = {**raw, "model": background, "thinking": None}
    parsed = await _body_and_model(request, raw)
    if isinstance(parsed, Response):
        return parsed
    body, model = parsed
    try:
        await inline_anthropic_image_urls(body.get("messages"), gateway.settings)
    except FetchError as exc:
        return _error(400, exc.message)
    signatures = _signatures(request)
    try:
        inner = messages_to_gemini(body, model, signatures)
        user_id = text(opt_dict(body, "metadata", ""), "user_id", "metadata")
        search = web_search_of(body)
    except BadRequest as exc:
        return _error(400, exc.message)
    grounded = any("googleSearch" in tool for tool in inner.get("tools") or [])
    translator = MessageStream(str(body["model"]), search, grounded)
    session = user_id or conversation_key(inner["contents"])
    headers = {"request-id": "req_" + secrets.token_hex(12), "x-agproxy-model": model}
    first, events = await _call(gateway, body, model, inner, session)
    if search is not None and not grounded:  # web search next to client tools
        loop = SearchLoop(gateway, model, session, inner, search, body.get("stream") is not True)
        first, events = loop.take(first), loop.rest(events)
    if body.get("stream") is True:
        frames = _MessageFrames(translator, signatures)
        every = gateway.settings.stream_ping_seconds
        return event_stream(relay(frames, first, events, every), headers)
    await collect(translator.feed, first, events)
    translator.finish()
    signatures.remember(translator.signatures)
    _note_usage(translator)
    return JSONResponse(translator.message(), headers=headers)


async def _call(
    gateway: Gateway, body: dict[str, Any], model: str, inner: dict[str, Any], session: str | None
) -> tuple[Any, AsyncIterator[Any]]:
    """The upstream's first event and the rest, through the policy. A refused thought
    signature (one from another account or model) is retried once without any."""
    whole = body.get("stream") is not True
    try:
        return await stream_generate(gateway, model, session, lambda: inner, whole)
    except UpstreamError as error:
        if not (error.status == 400 and is_signature_error(error.message)):
            raise
        log.info(
            "signature refused (%s); retrying without thinking signatures", error.message[:200]
        )
        unsigned = messages_to_gemini(without_signatures(body), model)
        return await stream_generate(gateway, model, session, lambda: unsigned, whole)


def _refused(error: UpstreamError) -> Response:
    if error.status == 400 and PROMPT_TOO_LONG.search(error.message):
        # Claude Code compacts the conversation when it reads this.
        return _error(
            400,
            f"Prompt is too long (server-side context limit reached). Upstream: {error.message}",
        )
    return upstream_failure(ANTHROPIC, error)


def _warmup(body: dict[str, Any]) -> Response:
    """Claude Code's warm-up ping answered here: `OK`, no account, no quota spent."""
    translator = MessageStream(str(body["model"]))
    events = translator.feed(warmup_answer()) + translator.finish()
    headers = {"request-id": "req_" + secrets.token_hex(12), "x-warmup-intercepted": "true"}
    if body.get("stream") is not True:
        return JSONResponse(translator.message(), headers=headers)

    async def frames() -> AsyncIterator[bytes]:
        for event in events:
            yield _frame(event)

    return StreamingResponse(
        frames(), media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"}
    )


async def event_logging(request: Request) -> Response:
    """Claude Code's telemetry (`/v1/api/event_logging/batch`): accepted and dropped."""
    await request.body()
    return Response(status_code=200)


def _frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class _MessageFrames:
    """Anthropic's stream events as `event:` and `data:` lines; the thought signatures the
    answer carried are remembered when it ends."""

    keepalive = _frame({"type": "ping"})

    def __init__(self, translator: MessageStream, signatures: Signatures) -> None:
        self.translator, self.signatures = translator, signatures

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: Any) -> list[bytes]:
        return [_frame(e) for e in self.translator.feed(event)]

    def finish(self) -> list[bytes]:
        frames = [_frame(e) for e in self.translator.finish()]
        self.signatures.remember(self.translator.signatures)
        _note_usage(self.translator)
        return frames

    def failed(self, error: UpstreamError) -> list[bytes]:
        return [
            _frame(
                {
                    "type": "error",
                    "error": {
                        "type": "overloaded_error"
                        if error.kind is Failure.CAPACITY
                        else "api_error",
                        "message": f"upstream stream failed: {error.message}",
                    },
                }
            )
        ]


def _note_usage(translator: MessageStream) -> None:
    usage = translator.usage
    note_tokens(
        usage["input_tokens"] + usage["cache_read_input_tokens"],
        usage["output_tokens"],
        cached_tokens=usage["cache_read_input_tokens"] or None,
    )


def is_background_task(body: dict[str, Any]) -> bool:
    """Claude Code's housekeeping calls: haiku-sized requests, title and summary prompts."""
    if "haiku" in str(body.get("model", "")).lower():
        return True
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    said = (
        content
        if isinstance(content, str)
        else " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
        if isinstance(content, list)
        else ""
    )
    lowered = said[:500].lower()
    return len(said) <= 800 and any(marker in lowered for marker in BACKGROUND_MARKERS)


async def count_tokens(request: Request) -> Response:
    """The upstream's own count when an account can ask; an estimate otherwise
    (about four characters a token, the header `x-agproxy-estimate: true` says so)."""
    gateway: Gateway = request.app.state.gateway
    raw = await _body(request)
    if isinstance(raw, Response):
        return raw
    target = _provider(gateway, str(raw["model"]))
    if target is not None and target.entry.kind == "anthropic_api_key":
        try:
            return await passthrough.forward(request, target, "/v1/messages/count_tokens", raw)
        except (Exhausted, UpstreamError):
            return _estimate(raw, str(raw["model"]))
    if gateway.plan(str(raw["model"]), rotate=False) == (DISPATCHER,):
        try:
            return await passthrough.to_dispatcher(request, "/v1/messages/count_tokens", raw)
        except (Exhausted, UpstreamError):
            return _estimate(raw, str(raw["model"]))
    parsed = await _body_and_model(request, raw)
    if isinstance(parsed, Response):
        return parsed
    body, model = parsed
    try:
        # Only the contents are counted: count_tokens takes no max_tokens to check.
        inner = messages_to_gemini({**body, "max_tokens": 1}, model)
    except BadRequest as exc:
        return _error(400, exc.message)
    payload = {"request": {"model": f"models/{model}", "contents": inner["contents"]}}
    client = gateway.accounts.client

    async def attempt(a: Attempt) -> Any:
        return await client.call("countTokens", payload, a.creds)

    try:
        result = await gateway.policy.run(model, None, attempt)
    except (Exhausted, UpstreamError):
        return _estimate(body, model)
    total = int((result.get("response") or result).get("totalTokens", 0))
    return JSONResponse({"input_tokens": total})


def _estimate(body: dict[str, Any], model: str) -> Response:
    """About four characters a token, when no upstream can count (a header says so)."""
    try:
        inner = messages_to_gemini({**body, "max_tokens": 1}, model)
    except BadRequest as exc:
        return _error(400, exc.message)
    return JSONResponse(
        {"input_tokens": estimate_tokens(inner)}, headers={"x-agproxy-estimate": "true"}
    )
