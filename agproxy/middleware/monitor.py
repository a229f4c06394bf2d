"""Monitor middleware: opens a record for each AI request and submits it when the
response has been sent (or the client went away)."""

from __future__ import annotations

import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agproxy.monitor.forms import boundary_of
from agproxy.monitor.record import CLIENT_CLOSED, RequestRecord, close_record, open_record
from agproxy.protocols import protocol_of
from agproxy.service import Gateway
from agproxy.zones import Zone, zone_of

ERROR_CAPTURE = 2000
USER_AGENT_CAP = 200
# Claude Code's telemetry: not a model request, and it would flood the monitor.
NOT_RECORDED = frozenset({"/v1/api/event_logging", "/v1/api/event_logging/batch"})


class MonitorMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        monitor = self.gateway.monitor
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or zone_of(scope["path"]) is not Zone.AI
            or monitor is None
            or scope["path"] in NOT_RECORDED
        ):
            await self.app(scope, receive, send)
            return
        settings = self.gateway.settings
        exchange = _Exchange(
            _open(scope),
            receive,
            send,
            settings.monitor_capture_bodies,
            settings.monitor_body_max_bytes,
        )
        token = open_record(exchange.record)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except (OSError, ClientDisconnect):
            exchange.finished = False  # the client went away while we were writing to it
            raise
        except BaseException as exc:
            exchange.failed(exc)
            raise
        finally:
            close_record(token)
            monitor.submit(exchange.settle())


def _open(scope: Scope) -> RequestRecord:
    client = scope.get("client")
    record = RequestRecord(
        protocol_of(scope["path"]).value,
        scope["method"],
        scope["path"],
        client[0] if client else None,
    )
    # Gemini paths name the model: known even when auth or the gate refuse the request.
    record.requested_model = _model_in_path(scope["path"])
    for name, value in scope["headers"]:
        if name == b"user-agent":
            record.user_agent = value[:USER_AGENT_CAP].decode("latin-1")
        elif name == b"content-type":
            record.request_boundary = boundary_of(value)
    return record


class _Exchange:
    """One request as the monitor watches it go by: what the client sent and was sent."""

    __slots__ = (
        "record",
        "_receive",
        "_send",
        "capture",
        "raw_limit",
        "error_body",
        "finished",
        "gone",
    )

    def __init__(
        self,
        record: RequestRecord,
        receive: Receive,
        send: Send,
        capture: bool,
        body_max_bytes: int,
    ) -> None:
        self.record = record
        self._receive, self._send = receive, send
        self.capture = capture
        # Raw bytes kept per body: room for base64 runs to be summarized before the cap.
        self.raw_limit = body_max_bytes * 4
        if capture:
            record.request_body, record.response_body = bytearray(), bytearray()
        self.error_body = bytearray()
        self.finished = self.gone = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            if self.capture:
                record = self.record
                record.request_cut = (
                    _keep(record.request_body, message.get("body", b""), self.raw_limit)
                    or record.request_cut
                )
        elif message["type"] == "http.disconnect":
            self.gone = True
        return message

    async def send(self, message: Message) -> None:
        record = self.record
        if message["type"] == "http.response.start":
            record.status = message["status"]
            for name, value in message.get("headers", []):
                if name == b"x-agproxy-model":
                    record.routed_model = value.decode()
                elif name == b"x-agproxy-provider":
                    record.provider = value.decode()
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body and record.ttfb_ms is None:
                record.ttfb_ms = (time.perf_counter() - record.started) * 1000
            error_body = self.error_body
            if record.status >= 400 and len(error_body) < ERROR_CAPTURE:
                error_body.extend(body[: ERROR_CAPTURE - len(error_body)])
            if self.capture and body:
                record.response_cut = (
                    _keep(record.response_body, body, self.raw_limit) or record.response_cut
                )
            self.finished = not message.get("more_body", False)
        await self._send(message)

    def failed(self, exc: BaseException) -> None:
        if not (self.gone and not self.finished):  # an error of the hang-up's making: 499
            record = self.record
            record.status = record.status or 500
            record.error = record.error or f"{type(exc).__name__}: {exc}"[:ERROR_CAPTURE]

    def settle(self) -> RequestRecord:
        """The record complete, once the app is done with the request."""
        record = self.record
        if not self.finished and (record.error is None or self.gone):
            # The app returned (or failed to write) before the response ended: the
            # client closed the connection. 499, as nginx logs it.
            started = f"after a {record.status} began" if record.status else "before an answer"
            record.error = f"client closed the connection {started}"
            record.status = CLIENT_CLOSED
        record.duration_ms = (time.perf_counter() - record.started) * 1000
        if record.status >= 400 and self.error_body and not record.error:
            record.error = self.error_body.decode("utf-8", "replace")
        if record.provider is None and record.status:
            record.provider = "google" if record.account else None
        return record


def _keep(buffer: bytes | bytearray | None, chunk: bytes, limit: int) -> bool:
    """Append what fits; True when something did not."""
    if not isinstance(buffer, bytearray):
        return False
    room = limit - len(buffer)
    if room > 0:
        buffer.extend(chunk[:room])
    return len(chunk) > room


def _model_in_path(path: str) -> str | None:
    for prefix in ("/v1beta/models/", "/v1/models/"):
        if path.startswith(prefix):
            return path[len(prefix) :].partition(":")[0] or None
    return None
