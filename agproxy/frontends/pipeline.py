"""What every AI route does once its request is translated into the Gemini pivot: call the
upstream through the resilience policy, then relay the answer as it streams (with
keep-alives) or collect it into one.

A front end declares only what is its own: how to parse its request, its error shape,
and its `Frames`: how upstream events become the bytes its clients read.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from starlette.responses import Response, StreamingResponse

from agproxy.frontends.failures import exhausted, upstream_failure
from agproxy.frontends.keepalive import JSON_WAIT, Waiting, patiently, pinged
from agproxy.pool.policy import Attempt, Exhausted
from agproxy.protocols import Protocol as ClientProtocol
from agproxy.providers.registry import Providers, Target
from agproxy.service import Gateway
from agproxy.translate.envelope import wrap
from agproxy.translate.rewrites import rewrite_system
from agproxy.upstream import Upstream, UpstreamError, open_stream
from agproxy.upstream.base import Check
from agproxy.upstream.errors import error_in_answer

log = logging.getLogger("agproxy.providers")


class Frames(Protocol):
    """A stream translator as the relay drives it: upstream events in, client bytes out."""

    keepalive: bytes  # what a silent upstream is covered with, every stream_ping_seconds

    def start(self) -> Iterable[bytes]: ...

    def feed(self, event: Any) -> Iterable[bytes]: ...

    def finish(self) -> Iterable[bytes]: ...

    def failed(self, error: UpstreamError) -> Iterable[bytes]: ...


async def stream_generate(
    gateway: Gateway,
    model: str,
    session: str | None,
    inner: Callable[[], dict[str, Any]],
    whole: bool,
) -> tuple[Any, AsyncIterator[Any]]:
    """The first event of the answer and the rest, through the policy (which picks the
    account, retries and cools). `inner` gives the Gemini request at each attempt (a front
    end may change it between policy runs). `whole`: the client wants one answer, so the
    whole stream is read inside the attempt and a break mid-way is retried."""
    client: Upstream = gateway.accounts.client
    rules = gateway.settings.prompt_rewrites
    check = answer_check(gateway)

    def rewritten() -> dict[str, Any]:
        return rewrite_system(inner(), rules)

    async def attempt(a: Attempt) -> tuple[Any, AsyncIterator[Any]]:
        request = wrap(rewritten(), a.model, a.creds.project or "", a.account.id)
        return await open_stream(client.stream(request, a.creds), whole=whole, check=check)

    providers = gateway.providers
    target = gateway.provider_for(model)
    if target is not None:
        others = [t for t in providers.serving(model) if t != target]
        return await _through(providers, [target, *others], rewritten, whole, check)
    try:
        return await gateway.policy.run(model, session, attempt)
    except Exhausted as failure:  # the providers listing the model are its fallback
        fallbacks = providers.serving(model)
        if not fallbacks:
            raise
        log.info("no Google account left for %s; asking %s", model, fallbacks[0].name)
        return await _through(providers, fallbacks, rewritten, whole, check, failure)


async def _through(
    providers: Providers,
    targets: list[Target],
    inner: Callable[[], dict[str, Any]],
    whole: bool,
    check: Check | None,
    failure: Exhausted | None = None,
) -> tuple[Any, AsyncIterator[Any]]:
    """The first of `targets` that has a key left answers; the last Exhausted otherwise."""
    for target in targets:
        try:
            return await providers.stream(target, inner, whole, check)
        except Exhausted as exc:
            failure = exc
    assert failure is not None
    raise failure


def answer_check(gateway: Gateway) -> Check | None:
    """The test that tells an error the backend sent as an answer (answer_error_patterns)."""
    patterns = gateway.settings.answer_error_patterns
    if not patterns:
        return None
    return lambda text: error_in_answer(text, patterns)


async def collect(feed: Callable[[Any], object], first: Any, events: AsyncIterator[Any]) -> None:
    """Every event of a non-streamed answer into `feed` (the translator keeps the sum)."""
    feed(first)
    async for event in events:
        feed(event)


async def relay(
    frames: Frames, first: Any, events: AsyncIterator[Any], every: float
) -> AsyncGenerator[bytes, None]:
    """The client's stream: translated as it arrives, a keep-alive whenever the upstream is
    silent for `every` seconds, an error in the protocol's terms when it breaks."""
    try:
        for frame in frames.start():
            yield frame
        for frame in frames.feed(first):
            yield frame
        async with pinged(events, every) as upstream_events:
            async for event in upstream_events:
                if event is None:
                    yield frames.keepalive
                    continue
                for frame in frames.feed(event):
                    yield frame
        for frame in frames.finish():
            yield frame
    except UpstreamError as error:
        for frame in frames.failed(error):
            yield frame
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def event_stream(body: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingResponse:
    return StreamingResponse(
        body, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"}
    )


def respond(
    protocol: ClientProtocol,
    work: Awaitable[Response],
    every: float,
    waiting: Waiting = JSON_WAIT,
    refused: Callable[[UpstreamError], Response] | None = None,
) -> Response:
    """The answer `work` builds, the client kept waiting with keep-alives while it is not
    ready (see keepalive.patiently). A request that failed upstream gets the protocol's
    error: `exhausted` when no account was left, else `refused` (by default the upstream's
    error as it is)."""
    return patiently(protocol, _answered(protocol, work, refused), every, waiting)


async def _answered(
    protocol: ClientProtocol,
    work: Awaitable[Response],
    refused: Callable[[UpstreamError], Response] | None,
) -> Response:
    try:
        return await work
    except Exhausted as failure:
        return exhausted(protocol, failure)
    except UpstreamError as error:
        return refused(error) if refused else upstream_failure(protocol, error)
