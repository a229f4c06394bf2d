"""The seams between the request pipeline and the upstreams.

Each provider is two parts: a wire client that raises `UpstreamError` already classified
(the same `Failure` kinds whatever the backend), and the credentials it rotates under one
resilience policy, with the same retries, cooldowns, failover and monitor attempts:
- the Google pool: `CloudCodeClient` (the `Upstream` surface below, speaking the Gemini
  pivot) driven by pool/policy.py over the accounts;
- z.ai: `ZaiClient.forward` (Anthropic requests passed through as they are) driven by
  pool/keyring.py over its keys.
A front end asks the providers in the order `Gateway.plan` gives, moving to the next when
one raises `Exhausted` (no account or key left).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from agproxy.upstream.cloudcode import Credentials
from agproxy.upstream.errors import Failure, UpstreamError, answer_text


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


Check = Callable[[str], UpstreamError | None]


async def open_stream(
    events: AsyncIterator[Any], whole: bool, check: Check | None = None
) -> tuple[Any, AsyncIterator[Any]]:
    """The first event of a streamed call and the rest, for a retry policy's attempt.

    An answer that ends before its first event is an UpstreamError, so the attempt is
    retried (nothing reached the client yet). `whole` (the client asked for one JSON
    answer, not a stream): the rest is read here too, so a stream that breaks mid-way
    fails this attempt and is retried, instead of failing after the policy let go.
    `check` reads the answer's text (the first event's, or the whole answer's) and names
    an error the backend sent as an answer, which then fails the attempt as any error.
    """
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise UpstreamError(
            Failure.TRANSPORT, 502, "the upstream answered with an empty stream"
        ) from None
    if not whole:
        if check is not None and (error := check(answer_text(first))) is not None:
            await events.aclose()  # type: ignore[attr-defined]
            raise error
        return first, events
    rest = [event async for event in events]
    if check is not None:
        error = check("".join(answer_text(event) for event in (first, *rest)))
        if error is not None:
            raise error
    return first, _replay(rest)


async def _replay(events: list[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event
