"""The Responses API (what Codex CLI speaks): `POST /v1/responses`, streamed or not, over
HTTP or a WebSocket (responses_ws.py); stored responses (`store`,
`previous_response_id`, `GET`/`DELETE /v1/responses/{id}` and its input items); and
`POST /v1/responses/compact` (responses_compact.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends.common import JSONResponse
from agproxy.frontends.fetch import FetchError, inline_image_urls
from agproxy.frontends.keepalive import JSON_WAIT, OPENAI_SSE, SSE_COMMENT
from agproxy.frontends.openai import OPENAI, bad_request, read_json, routed_model
from agproxy.frontends.pipeline import collect, event_stream, relay, respond, stream_generate
from agproxy.keys.gate import current_key
from agproxy.monitor import note_tokens
from agproxy.protocols import error_body
from agproxy.responses import StoredResponse
from agproxy.responses.store import ChainTooLong
from agproxy.service import Gateway
from agproxy.translate.envelope import conversation_key
from agproxy.translate.fields import BadRequest
from agproxy.translate.openai_chat import chat_to_gemini
from agproxy.translate.openai_responses import (
    ResponsesStream,
    custom_tool_names,
    input_items,
    responses_to_chat,
)
from agproxy.upstream import UpstreamError

# Request fields the response object repeats, with the JSON type each must have to be.
ECHOED: dict[str, type | tuple[type, ...]] = {
    "instructions": str,
    "previous_response_id": str,
    "store": bool,
    "tools": list,
    "tool_choice": (str, dict),
    "parallel_tool_calls": bool,
    "metadata": dict,
    "temperature": (int, float),
    "top_p": (int, float),
    "max_output_tokens": int,
    "reasoning": dict,
    "text": dict,
    "prompt_cache_key": str,
}


class Refused(Exception):
    """A request refused before any upstream call, with the answer that says why."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response

    def event(self) -> dict[str, Any]:
        """The refusal as a WebSocket `error` event."""
        body = orjson.loads(bytes(self.response.body))
        event = {"type": "error", "status": self.response.status_code, "error": body["error"]}
        if retry := self.response.headers.get("retry-after"):
            event["headers"] = {"retry-after": retry}  # Codex waits that long
        return event


def owner() -> str | None:
    """Whose stored responses a request may see: its client key's (None: the gateway's)."""
    key = current_key()
    return key.name if key is not None else None


@dataclass
class Turn:
    """One Responses request, checked and translated, ready for the upstream."""

    body: dict[str, Any]
    model: str
    inner: dict[str, Any]
    items: list[dict[str, Any]]  # the input sent with this turn (what is stored)
    translator: ResponsesStream

    @property
    def store(self) -> bool:
        return self.body.get("store") is not False  # the API's default is to store

    def keep(self, gateway: Gateway) -> None:
        """Store the finished response when the request asked for it."""
        if not self.store:
            return
        previous = self.body.get("previous_response_id")
        gateway.responses.save(
            StoredResponse(
                self.translator.id,
                owner(),
                time.time(),
                previous if isinstance(previous, str) else None,
                self.items,
                self.translator.response(self.status),
            )
        )

    @property
    def status(self) -> str:
        return "incomplete" if self.translator.incomplete else "completed"


async def history(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The earlier turns `previous_response_id` continues (none without one)."""
    previous = body.get("previous_response_id")
    if previous is None:
        return []
    if not isinstance(previous, str) or not previous:
        raise Refused(bad_request("previous_response_id must be a string", "previous_response_id"))
    try:
        items = await gateway.responses.history(previous, owner())
    except ChainTooLong:
        raise Refused(
            bad_request(
                f"the conversation before {previous!r} is too long to continue; "
                "compact it (POST /v1/responses/compact) and start again from the result",
                "previous_response_id",
            )
        ) from None
    if items is None:
        message = f"Previous response with id '{previous}' not found."
        raise Refused(bad_request(message, "previous_response_id"))
    return items


async def prepare(
    gateway: Gateway, body: dict[str, Any], earlier: list[dict[str, Any]] | None = None
) -> Turn:
    """Check and translate a request (raises Refused with the client's answer). `earlier`:
    the conversation it continues when the caller has it (a WebSocket keeps its last
    turn), else `previous_response_id` is looked up among the stored responses."""
    if body.get("conversation") is not None:
        raise Refused(
            bad_request(
                "conversation objects are not supported by this gateway; continue a "
                "conversation with previous_response_id",
                "conversation",
            )
        )
    try:
        items = input_items(body, continued=body.get("previous_response_id") is not None)
        if earlier is None:
            earlier = await history(gateway, body)
        chat = responses_to_chat({**body, "input": earlier + items})
    except BadRequest as exc:
        raise Refused(bad_request(exc.message, exc.param)) from None
    model = routed_model(gateway, chat)
    if isinstance(model, Response):
        raise Refused(model)
    try:
        await inline_image_urls(chat["messages"], gateway.settings)
    except FetchError as exc:
        raise Refused(bad_request(exc.message, "input")) from None
    try:
        inner = chat_to_gemini(chat, model)
    except BadRequest as exc:
        raise Refused(bad_request(exc.message, exc.param)) from None
    echo = {k: body[k] for k, kind in ECHOED.items() if isinstance(body.get(k), kind)}
    translator = ResponsesStream(str(body["model"]), custom_tool_names(body), echo)
    return Turn(body, model, inner, items, translator)


async def create(request: Request) -> Response:
    """`POST /v1/responses`."""
    gateway: Gateway = request.app.state.gateway
    body = await read_json(request)
    if isinstance(body, Response):
        return body
    try:
        turn = await prepare(gateway, body)
    except Refused as refusal:
        return refusal.response
    headers = {"x-agproxy-model": turn.model}
    stream = body.get("stream") is True
    every = gateway.settings.stream_ping_seconds

    async def answer() -> Response:
        first, events = await upstream(gateway, turn.model, turn.inner, whole=not stream)
        if stream:
            frames = ResponsesFrames(turn, gateway, sse)
            return event_stream(relay(frames, first, events, every), headers)
        translator = turn.translator
        await collect(translator.feed, first, events)
        translator.finish()
        note_usage(translator)
        turn.keep(gateway)
        return JSONResponse(translator.response(turn.status), headers=headers)

    return respond(OPENAI, answer(), every, OPENAI_SSE if stream else JSON_WAIT)


async def upstream(
    gateway: Gateway, model: str, inner: dict[str, Any], whole: bool
) -> tuple[Any, Any]:
    session = conversation_key(inner["contents"])
    return await stream_generate(gateway, model, session, lambda: inner, whole=whole)


def note_usage(translator: ResponsesStream) -> None:
    usage = translator.usage or {}
    note_tokens(
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        (usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
    )


def sse(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class ResponsesFrames:
    """Responses API events, each framed by `frame` (SSE lines, or a WebSocket message);
    the response is stored once it has completed."""

    keepalive = SSE_COMMENT

    def __init__(
        self, turn: Turn, gateway: Gateway, frame: Callable[[dict[str, Any]], bytes]
    ) -> None:
        self.turn, self.gateway, self.frame = turn, gateway, frame
        self.translator = turn.translator

    def start(self) -> list[bytes]:
        return [self.frame(e) for e in self.translator.start()]

    def feed(self, event: Any) -> list[bytes]:
        return [self.frame(e) for e in self.translator.feed(event)]

    def finish(self) -> list[bytes]:
        frames = [self.frame(e) for e in self.translator.finish()]
        note_usage(self.translator)
        self.turn.keep(self.gateway)
        return frames

    def failed(self, error: UpstreamError) -> list[bytes]:
        failure = self.translator.failed(f"upstream stream failed: {error.message}")
        return [self.frame(failure)]


# -- stored responses ------------------------------------------------------------------
def _not_found(response_id: str) -> Response:
    body = error_body(OPENAI, 404, f"Response with id '{response_id}' not found.")
    body["error"]["param"] = "response_id"
    return JSONResponse(body, status_code=404)


async def retrieve(request: Request) -> Response:
    """`GET /v1/responses/{response_id}`."""
    gateway: Gateway = request.app.state.gateway
    response_id = request.path_params["response_id"]
    stored = await gateway.responses.get(response_id, owner())
    if stored is None:
        return _not_found(response_id)
    return JSONResponse(stored.response)


async def delete(request: Request) -> Response:
    """`DELETE /v1/responses/{response_id}`."""
    gateway: Gateway = request.app.state.gateway
    response_id = request.path_params["response_id"]
    if not await gateway.responses.delete(response_id, owner()):
        return _not_found(response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> Response:
    """`GET /v1/responses/{response_id}/input_items`: the items sent with that turn (the
    API lists newest first unless `order=asc`)."""
    gateway: Gateway = request.app.state.gateway
    response_id = request.path_params["response_id"]
    stored = await gateway.responses.get(response_id, owner())
    if stored is None:
        return _not_found(response_id)
    items = [with_id(item, stored.id, i) for i, item in enumerate(stored.input)]
    if request.query_params.get("order", "desc") != "asc":
        items.reverse()
    return JSONResponse(
        {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        }
    )


def with_id(item: dict[str, Any], response_id: str, index: int) -> dict[str, Any]:
    if isinstance(item.get("id"), str):
        return item
    kind = item.get("type", "message")
    prefix = "msg" if kind == "message" else "item"
    out = {"id": f"{prefix}_{response_id.removeprefix('resp_')}_{index}", **item}
    if kind == "message":
        out.setdefault("type", "message")
        out.setdefault("status", "completed")
        content = out.get("content")
        if isinstance(content, str):
            out["content"] = [{"type": "input_text", "text": content}]
    return out
