"""Keep-alives: a stream whose upstream is silent (a model thinking for minutes) still
sends something every `stream_ping_seconds`, so that clients and reverse proxies with
idle timeouts do not give up on it.

The same holds before an answer starts (`patiently`): a non-streamed call, or a stream
whose first event is slow to come, sends its headers once it has waited that long, then
the filler until the answer is ready.

Each protocol has its own harmless filler, one its SDKs skip:
- Anthropic: an `event: ping` (the API's own);
- OpenAI (chat and Responses): an SSE comment line;
- Gemini: a blank line between SSE events (google-genai parses any other line as JSON),
  or whitespace between the elements of the JSON-array stream;
- a JSON answer (every non-streamed call): whitespace before the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from agproxy.monitor import note
from agproxy.protocols import Protocol, error_response

log = logging.getLogger("agproxy.keepalive")

SSE_COMMENT = b": keep-alive\n\n"
BLANK_LINE = b"\r\n"
WHITESPACE = b"\n"


async def with_pings(events: AsyncIterator[Any], every: float) -> AsyncGenerator[Any | None, None]:
    """The events, with None whenever the upstream has been silent for `every` seconds
    (so the caller can send a keep-alive while a slow model thinks)."""
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield event
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            # Let the cancelled `anext` unwind before anyone closes `events`: closing a
            # generator that is still running raises RuntimeError. Shielded, as the
            # stream's cancel scope cancels every await of this task once the client left.
            with anyio.CancelScope(shield=True):
                await asyncio.wait({pending})


def pinged(
    events: AsyncIterator[Any], every: float
) -> contextlib.aclosing[AsyncGenerator[Any | None, None]]:
    """`with_pings`, closed when the block ends (whether the stream ends, fails or is
    abandoned) and so before the caller closes `events`."""
    return contextlib.aclosing(with_pings(events, every))


@dataclass(frozen=True, slots=True)
class Waiting:
    """How a client is kept waiting for an answer that is not ready yet: the media type
    its headers announce, the filler it skips, and how an error that comes after the 200
    went out is written into the body (`late_error(error JSON) -> bytes`)."""

    media_type: str
    filler: bytes
    late_error: Callable[[bytes], bytes]


def _as_is(body: bytes) -> bytes:
    return body


JSON_WAIT = Waiting("application/json", WHITESPACE, _as_is)
# The SDKs raise the error object of a `data:` event (OpenAI, Gemini) or an `error` event.
OPENAI_SSE = Waiting("text/event-stream", SSE_COMMENT, lambda body: b"data: " + body + b"\n\n")
GEMINI_SSE = Waiting("text/event-stream", BLANK_LINE, lambda body: b"data: " + body + b"\r\n\r\n")
ANTHROPIC_SSE = Waiting(
    "text/event-stream",
    b'event: ping\ndata: {"type":"ping"}\n\n',
    lambda body: b"event: error\ndata: " + body + b"\n\n",
)


def patiently(
    protocol: Protocol, work: Awaitable[Response], every: float, waiting: Waiting = JSON_WAIT
) -> Response:
    """The response `work` builds, sent as it is when it is ready within `every` seconds
    (most are: a fast answer, or an error found before any upstream call). Otherwise the
    200 and its headers go out then, and `waiting.filler` every `every` seconds after, so
    that client and proxy idle timeouts do not end a call while a model thinks. JSON
    parsers skip leading whitespace and SSE clients skip comments, so the client reads a
    valid answer all the same; the price is that a failure found after the 200 can only be
    told in the body (the protocol's own error object, which the SDKs raise)."""
    return _Patient(protocol, work, every, waiting)


class _Patient(Response):
    def __init__(
        self, protocol: Protocol, work: Awaitable[Response], every: float, waiting: Waiting
    ) -> None:
        self.status_code, self.background = 200, None
        # No content-length: the body's length is not known when the headers go out.
        self.raw_headers = [
            (b"content-type", waiting.media_type.encode()),
            (b"cache-control", b"no-cache"),
        ]
        self.protocol, self.work, self.every, self.waiting = protocol, work, every, waiting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.ensure_future(self.work)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.every)
            if done:
                await task.result()(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while not done:
                await send({"type": "http.response.body", "body": self.waiting.filler,
                            "more_body": True})  # fmt: skip
                done, _ = await asyncio.wait({task}, timeout=self.every)
            await self._late(task, send)
        finally:
            if not task.done():
                task.cancel()  # the client left: so does the call it was waiting for
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({task})

    async def _late(self, task: asyncio.Future[Response], send: Send) -> None:
        """The answer after the headers went out: its body, or its error in the body."""
        try:
            response = task.result()
        except Exception:
            log.exception("a patient answer failed after its headers were sent")
            response = error_response(self.protocol, 500, "internal error in the gateway")
        if response.status_code >= 400:
            body = bytes(response.body)
            note(status=response.status_code, error=body.decode("utf-8", "replace")[:2000])
            await send({"type": "http.response.body", "body": self.waiting.late_error(body)})
            return
        if isinstance(response, StreamingResponse):
            async for chunk in response.body_iterator:
                data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": bytes(response.body)})
