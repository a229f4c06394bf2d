"""The Responses API over a WebSocket (`/v1/responses`, as Codex CLI uses it with
`supports_websockets = true`).

The client sends `response.create` messages (the body of `POST /v1/responses`, with
`type` beside it) one after another on one socket; each answer comes back as the stream
events, one JSON text message each, ending with `response.completed` (or `failed`,
`incomplete`). A request the gateway refuses gets an `error` event with the HTTP status
it would have had, and the socket stays open for the next.

The socket remembers its last turn: a `response.create` that names it in
`previous_response_id` sends only the new items, even with `store: false` (Codex's
default). `generate: false` (Codex's pre-warm) only records the input. Auth, IP rules,
hosts, the Origin check and the service gate are applied to the handshake by the same
middleware as every request; key limits and the monitor count each `response.create`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from agproxy.frontends.failures import exhausted, upstream_failure
from agproxy.frontends.openai import OPENAI, bad_request
from agproxy.frontends.pipeline import relay
from agproxy.frontends.responses import Refused, ResponsesFrames, Turn, prepare, upstream
from agproxy.keys import ClientKey
from agproxy.keys.gate import CLIENT_KEY, KeyRefusal
from agproxy.monitor.record import (
    CLIENT_CLOSED,
    RequestRecord,
    close_record,
    current,
    open_record,
    used,
)
from agproxy.pool.policy import Exhausted
from agproxy.protocols import error_response
from agproxy.service import Gateway
from agproxy.translate.fields import BadRequest, check_nesting
from agproxy.upstream import UpstreamError

log = logging.getLogger("agproxy.responses")
IGNORED = frozenset({"response.processed"})  # Codex's acknowledgement: nothing to do


class _Socket:
    """One client's socket: its last turn, and how each message is answered."""

    def __init__(self, ws: WebSocket, gateway: Gateway) -> None:
        self.ws, self.gateway = ws, gateway
        self.key: ClientKey | None = ws.scope.get(CLIENT_KEY)
        client = ws.scope.get("client")
        self.address = client[0] if client else None
        self.user_agent = ws.headers.get("user-agent", "")[:200] or None
        self.last_id: str | None = None
        self.last_items: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any] | bytes) -> None:
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        await self.ws.send({"type": "websocket.send", "text": raw.decode()})

    async def serve(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            await self.answer(raw)

    async def answer(self, raw: str) -> None:
        record = RequestRecord(OPENAI.value, "WS", "/v1/responses", self.address)
        record.user_agent = self.user_agent
        token = open_record(record)
        try:
            await self._answer(raw, record)
        except WebSocketDisconnect:
            record.status, record.error = CLIENT_CLOSED, "client closed the socket mid-answer"
            raise
        finally:
            close_record(token)
            record.duration_ms = (time.perf_counter() - record.started) * 1000
            if self.gateway.monitor is not None and record.status:
                self.gateway.monitor.submit(record)

    async def _answer(self, raw: str, record: RequestRecord) -> None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return await self.refuse(Refused(bad_request(f"the message is not JSON: {exc}")))
        if not isinstance(body, dict):
            return await self.refuse(Refused(bad_request("each message must be a JSON object")))
        kind = body.pop("type", None)
        if kind in IGNORED:
            return None
        if kind != "response.create":
            message = f"unknown message type {str(kind)[:60]!r}: send response.create"
            return await self.refuse(Refused(bad_request(message, "type")))
        if isinstance(body.get("model"), str):
            record.requested_model = body["model"]
        return await self.create(body, record)

    async def create(self, body: dict[str, Any], record: RequestRecord) -> None:
        """One `response.create`, under the key's limits."""
        key = self.key
        if key is None:
            await self.respond(body, record)
            return None
        record.key_name = key.name
        estimate = max(1, len(orjson.dumps(body)) // 4)
        with contextlib.ExitStack() as counting:
            try:
                shared = await self.gateway.keys.admit_shared_rate(key)
                counting.enter_context(self.gateway.keys.counted(key, estimate, used, shared))
            except KeyRefusal as refusal:
                response = error_response(OPENAI, refusal.status, refusal.message, refusal.headers)
                return await self.refuse(Refused(response))
            await self.respond(body, record)
        return None

    async def respond(self, body: dict[str, Any], record: RequestRecord) -> None:
        stream_id = body.pop("stream_id", None)
        body.pop("stream", None)  # implicit on a socket (Codex sends it anyway)
        if body.pop("background", None):
            message = "background responses are not supported over a WebSocket"
            return await self.refuse(Refused(bad_request(message, "background")))
        previous = body.get("previous_response_id")
        earlier = self.last_items if previous is not None and previous == self.last_id else None
        try:
            check_nesting(body)
            turn = await prepare(self.gateway, body, earlier)
        except Refused as refusal:
            return await self.refuse(refusal, stream_id)
        except BadRequest as exc:
            return await self.refuse(Refused(bad_request(exc.message, exc.param)), stream_id)
        except KeyRefusal as refusal:  # a model the key may not use, or its share spent
            response = error_response(OPENAI, refusal.status, refusal.message, refusal.headers)
            return await self.refuse(Refused(response), stream_id)
        record.routed_model = turn.model
        history = earlier if earlier is not None else []
        if body.get("generate") is False:
            await self.prewarm(turn, history, record, stream_id)
        else:
            await self.run(turn, history, record, stream_id)
        return None

    async def prewarm(
        self, turn: Turn, history: list[dict[str, Any]], record: RequestRecord, sid: Any
    ) -> None:
        """`generate: false`: the input is recorded as the next turn's start, no model
        call is made."""
        translator = turn.translator
        frame = _framer(sid)
        for event in [*translator.start(), *translator.finish()]:
            if event["type"] != "response.in_progress":
                await self.send(frame(event))
        self._remember(turn, history, [])
        record.status = 200

    async def run(
        self, turn: Turn, history: list[dict[str, Any]], record: RequestRecord, sid: Any
    ) -> None:
        gateway = self.gateway
        try:
            first, events = await upstream(gateway, turn.model, turn.inner, whole=False)
        except Exhausted as failure:
            return await self.refuse(Refused(exhausted(OPENAI, failure)), sid)
        except UpstreamError as error:
            return await self.refuse(Refused(upstream_failure(OPENAI, error)), sid)
        frames = ResponsesFrames(turn, gateway, _framer(sid))
        frames.keepalive = b""  # the socket's own pings keep it alive
        record.status = 200
        stream = relay(frames, first, events, gateway.settings.stream_ping_seconds)
        async with contextlib.aclosing(stream):
            async for frame in stream:
                if frame:
                    if record.ttfb_ms is None:
                        record.ttfb_ms = (time.perf_counter() - record.started) * 1000
                    await self.send(frame)
        output = turn.translator.response()["output"]
        if turn.translator.failed_message is None:
            self._remember(turn, history, output)
        else:
            record.error = turn.translator.failed_message
        return None

    def _remember(
        self, turn: Turn, history: list[dict[str, Any]], output: list[dict[str, Any]]
    ) -> None:
        self.last_id = turn.translator.id
        self.last_items = [*history, *turn.items, *output]

    async def refuse(self, refusal: Refused, stream_id: Any = None) -> None:
        record_status(refusal)
        event = refusal.event()
        if stream_id is not None:
            event["stream_id"] = stream_id
        await self.send(event)


def record_status(refusal: Refused) -> None:
    record = current()
    if record is not None:
        record.status = refusal.response.status_code
        record.error = str(refusal.event()["error"].get("message", ""))[:2000]


def _framer(stream_id: Any) -> Callable[[dict[str, Any]], bytes]:
    if stream_id is None:
        return orjson.dumps
    return lambda event: orjson.dumps({**event, "stream_id": stream_id})


async def websocket(ws: WebSocket) -> None:
    """`GET /v1/responses` upgraded to a WebSocket."""
    gateway: Gateway = ws.app.state.gateway
    await ws.accept()
    socket = _Socket(ws, gateway)
    with contextlib.suppress(WebSocketDisconnect):
        await socket.serve()
