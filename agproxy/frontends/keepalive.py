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
from agproxy.net.connection import HUNG_UP
from agproxy.protocols import Protocol, error_response

log = logging.getLogger("agproxy.keepalive")
FIRST = asyncio.FIRST_COMPLETED

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
        # The work runs in this task; only a timer waits beside it, so a quick answer (the
        # most common by far) costs no extra task.
        filler = _Filler(scope, receive, send, self.raw_headers, self.waiting, self.every)
        timer = asyncio.get_running_loop().call_later(self.every, filler.begin)
        try:
            response = await self.work
        except Exception:
            if not filler.began:
                raise
            log.exception("a patient answer failed after its headers were sent")
            response = error_response(self.protocol, 500, "internal error in the gateway")
        finally:
            timer.cancel()
            if filler.began:
                with anyio.CancelScope(shield=True):  # even when the client left
                    await filler.stop()
        if filler.began:
            await self._late(response, send)
        else:
            await response(scope, receive, send)

    async def _late(self, response: Response, send: Send) -> None:
        """The answer after the headers went out: its body, or its error in the body."""
        if response.status_code >= 400:
            body = bytes(response.body)
            note(status=response.status_code, error=body.decode("utf-8", "replace")[:2000])
            await send({"type": "http.response.body", "body": self.waiting.late_error(body)})
            return
        if isinstance(response, StreamingResponse):
            chunks = response.body_iterator
            try:
                async for chunk in chunks:
                    data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            finally:
                if isinstance(chunks, AsyncGenerator):
                    await chunks.aclose()  # the upstream stream closes with it
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": bytes(response.body)})


class _Filler:
    """Once begun: the headers, then the filler every `every` seconds until stopped; a
    client that leaves meanwhile cancels the task that waits for the answer (and the
    upstream call with it), as a hang-up before the headers does (net/connection.py).
    Stopping waits for a send under way to finish: a send is never cut in two."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        waiting: Waiting,
        every: float,
    ) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.headers, self.filler, self.every = headers, waiting.filler, every
        self.owner = asyncio.current_task()
        self.task: asyncio.Task[None] | None = None
        self.stopping: asyncio.Future[None] | None = None

    @property
    def began(self) -> bool:
        return self.task is not None

    def begin(self) -> None:
        self.stopping = asyncio.get_running_loop().create_future()
        self.task = asyncio.ensure_future(self._run(self.stopping))

    async def _run(self, stopping: asyncio.Future[None]) -> None:
        gone = asyncio.ensure_future(self._disconnect())
        try:
            await self.send({"type": "http.response.start", "status": 200, "headers": self.headers})
            while not stopping.done():
                await self.send({"type": "http.response.body", "body": self.filler,
                                 "more_body": True})  # fmt: skip
                await asyncio.wait({stopping, gone}, timeout=self.every, return_when=FIRST)
                if gone.done() and self.owner is not None and not stopping.done():
                    self.scope[HUNG_UP] = True
                    self.owner.cancel()
                    return
        finally:
            gone.cancel()

    async def _disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    async def stop(self) -> None:
        if self.task is None or self.stopping is None:
            return
        if not self.stopping.done():
            self.stopping.set_result(None)
        await asyncio.wait({self.task})
        if not self.task.cancelled() and self.task.exception() is not None:
            log.debug("keep-alive sender ended: %r", self.task.exception())
