"""Keep-alives: a stream whose upstream is silent (a model thinking for minutes) still
sends something every `stream_ping_seconds`, so that clients and reverse proxies with
idle timeouts do not give up on it.

Each protocol has its own harmless filler, one its SDKs skip:
- Anthropic: an `event: ping` (the API's own);
- OpenAI (chat and Responses): an SSE comment line;
- Gemini: a blank line between SSE events (google-genai parses any other line as JSON),
  or whitespace between the elements of the JSON-array stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio

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
