"""A fake z.ai (Anthropic-compatible) server for tests: real HTTP, records requests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

KEY = "zai-test-key-0123456789"
# The exact bytes a streamed answer carries; the gateway must pass them through unchanged.
STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_zai1","type":'
    b'"message","role":"assistant","content":[],"model":"glm-4.7","stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"hello from z.ai"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":4}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def zai_error(status: int, kind: str, message: str) -> bytes:
    """An error body as z.ai (the Anthropic API's shape) sends it."""
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


class FakeZai:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        # Fault injection: the next requests are answered with these (status, body,
        # headers), one each, before the normal answers resume.
        self.faults: list[tuple[int, bytes, dict[str, str]]] = []
        # The keys it accepts (a gateway shared by tests gets a new key for each test).
        self.keys = {KEY}
        app = Starlette(
            routes=[
                Route("/api/anthropic/v1/messages", self.messages, methods=["POST"]),
                Route("/api/anthropic/v1/messages/count_tokens", self.count, methods=["POST"]),
            ]
        )
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/anthropic"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))

    def start(self) -> FakeZai:
        threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        ).start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True

    def inject(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        with self._lock:
            self.faults.extend([(status, body, headers or {})] * times)

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()

    def _record(self, request: Request, body: Any) -> Response | None:
        with self._lock:
            self.requests.append(
                {
                    "path": request.url.path,
                    "body": body,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                }
            )
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            status, raw, headers = fault
            return Response(raw, status, headers=headers, media_type="application/json")
        if request.headers.get("x-api-key") not in self.keys:
            return Response(
                b'{"type":"error","error":{"type":"authentication_error",'
                b'"message":"invalid x-api-key"}}',
                401,
                media_type="application/json",
            )
        return None

    async def messages(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        refused = self._record(request, body)
        if refused:
            return refused
        if body.get("stream"):

            async def chunks() -> Any:
                for i in range(0, len(STREAM), 97):  # odd chunking on purpose
                    yield STREAM[i : i + 97]

            return StreamingResponse(chunks(), media_type="text/event-stream")
        return Response(
            orjson.dumps(
                {
                    "id": "msg_zai2",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [{"type": "text", "text": f"z.ai answered as {body['model']}"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 3, "output_tokens": 5},
                }
            ),
            media_type="application/json",
        )

    async def count(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        refused = self._record(request, body)
        return refused or Response(b'{"input_tokens":42}', media_type="application/json")
