"""The seam between the request pipeline and an upstream: what frontends/pipeline.py
drives through the retry policy.

Cloud Code Assist (`CloudCodeClient`) implements it. z.ai does not yet: its requests are
passed through byte for byte by frontends/zai.py, outside the policy; making it (and
other key-based providers) implement this surface is the open part of issue 12.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from agproxy.upstream.cloudcode import Credentials
from agproxy.upstream.errors import Failure, UpstreamError


class Upstream(Protocol):
    async def generate(
        self, body: Any, creds: Credentials, extra_headers: dict[str, str] | None = None
    ) -> Any:
        """One non-streamed call; the response JSON, or UpstreamError (classified)."""

    def stream(
        self, body: Any, creds: Credentials, extra_headers: dict[str, str] | None = None
    ) -> AsyncIterator[Any]:
        """A streamed call: each event's JSON; UpstreamError before or during the stream."""

    async def close(self) -> None:
        """Release pooled connections."""


async def open_stream(events: AsyncIterator[Any], whole: bool) -> tuple[Any, AsyncIterator[Any]]:
    """The first event of a streamed call and the rest, for a retry policy's attempt.

    An answer that ends before its first event is an UpstreamError, so the attempt is
    retried (nothing reached the client yet). `whole` (the client asked for one JSON
    answer, not a stream): the rest is read here too, so a stream that breaks mid-way
    fails this attempt and is retried, instead of failing after the policy let go.
    """
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise UpstreamError(
            Failure.TRANSPORT, 502, "the upstream answered with an empty stream"
        ) from None
    if not whole:
        return first, events
    rest = [event async for event in events]
    return first, _replay(rest)


async def _replay(events: list[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event
