"""Web search next to client tools: the gateway runs the searches the model asks for.

The backend refuses `googleSearch` next to function declarations, so a request that has
both offers the model a `web_search(query)` function instead (translate/anthropic.py).
When the model calls it, the gateway runs a search call of its own through the pool
(Google Search grounding only, the query as the prompt), shows the client what was searched
and found (server_tool_use and web_search_tool_result blocks, as Anthropic's own servers
do), hands the findings to the model as the function's response and calls the model again,
all within the client's one request and at most `max_uses` searches. A call of a client
tool ends the turn as usual (stop_reason tool_use).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

from agproxy.frontends.pipeline import stream_generate
from agproxy.pool.policy import Exhausted
from agproxy.service import Gateway
from agproxy.translate.anthropic_search import (
    NextRound,
    SearchDone,
    WebSearch,
    grounded_request,
    model_turn,
    search_results,
    server_tool_id,
)
from agproxy.translate.gemini import SKIP_SIGNATURE
from agproxy.upstream import Failure, UpstreamError

log = logging.getLogger("agproxy.anthropic")

MAX_QUERY_CHARS = 1000


class SearchLoop:
    """One answer's upstream calls: the events of each, a SearchDone after each search the
    gateway ran, a NextRound before each further call."""

    def __init__(
        self,
        gateway: Gateway,
        model: str,
        session: str | None,
        inner: dict[str, Any],
        search: WebSearch,
        whole: bool,
    ) -> None:
        self.gateway, self.model, self.session = gateway, model, session
        self.contents = list(inner["contents"])
        self.inner, self.search, self.whole = inner, search, whole
        calling = (inner.get("toolConfig") or {}).get("functionCallingConfig") or {}
        if calling.get("mode") == "ANY":
            # A forced tool (tool_choice any/tool) is forced for the first step only, as at
            # Anthropic: forced again, the model could only search on and on.
            self.inner = {**inner, "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}}
        self.used = 0
        self.parts: list[dict[str, Any]] = []  # the model's parts in the current call

    def take(self, event: Any) -> Any:
        """An upstream event on its way to the translator: the model's parts are kept for
        the next call, and each search call gets its server_tool_use id."""
        for candidate in (event.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                call = part.get("functionCall")
                if isinstance(call, dict) and call.get("name") == self.search.name:
                    call["id"] = server_tool_id()
                self.parts.append(part)
        return event

    async def rest(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Everything after the first event (which went through `take` already). The
        rounds are bounded: past max_uses a search is answered max_uses_exceeded, and a
        model that goes on asking gets no further call."""
        for rounds in itertools.count():
            try:
                async for event in events:
                    yield self.take(event)
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            calls = [p["functionCall"] for p in self.parts if "functionCall" in p]
            searches = [c for c in calls if c.get("name") == self.search.name]
            responses = []
            for call in searches:
                done = await self._search(call)
                yield done
                responses.append(
                    {
                        "functionResponse": {
                            "name": call["name"],
                            "id": call["id"],
                            "response": {"result": done.for_model()},
                        }
                    }
                )
            if not searches or len(searches) < len(calls) or rounds > self.search.max_uses:
                return  # answered, or a client tool was called: the client's turn
            self.contents.append(model_turn(self.parts, SKIP_SIGNATURE))
            self.contents.append({"role": "user", "parts": responses})
            self.parts = []
            yield NextRound()
            first, events = await self._call({**self.inner, "contents": self.contents})
            yield self.take(first)

    async def _call(self, request: dict[str, Any]) -> tuple[Any, AsyncIterator[Any]]:
        try:
            return await stream_generate(
                self.gateway, self.model, self.session, lambda: request, self.whole
            )
        except Exhausted as exc:
            if self.whole:
                raise  # the client gets the protocol's error response
            # Mid-stream, the relay reports upstream errors in the stream.
            raise exc.error or UpstreamError(Failure.CAPACITY, 503, str(exc)) from exc

    async def _search(self, call: dict[str, Any]) -> SearchDone:
        query = str((call.get("args") or {}).get("query") or "").strip()
        ident = str(call["id"])
        self.used += 1
        if self.used > self.search.max_uses:
            return SearchDone(ident, query, None, error_code="max_uses_exceeded")
        if not query:
            return SearchDone(ident, query, None, error_code="invalid_input")
        if len(query) > MAX_QUERY_CHARS:
            return SearchDone(ident, query, None, error_code="query_too_long")
        request = grounded_request(query, self.search)
        texts: list[str] = []
        grounding: dict[str, Any] = {}
        try:
            first, events = await stream_generate(
                self.gateway, self.model, self.session, lambda: request, True
            )
            for event in [first] + [e async for e in events]:
                for candidate in (event.get("candidates") or [])[:1]:
                    parts = (candidate.get("content") or {}).get("parts") or []
                    texts += [
                        str(p["text"]) for p in parts if p.get("text") and not p.get("thought")
                    ]
                    grounding.update(candidate.get("groundingMetadata") or {})
        except (Exhausted, UpstreamError) as exc:
            log.info("web search for the model failed: %s", exc)
            limited = isinstance(exc, UpstreamError) and exc.kind is Failure.RATE_LIMITED
            return SearchDone(
                ident, query, None, error_code="too_many_requests" if limited else "unavailable"
            )
        results = search_results(grounding, self.search)
        return SearchDone(ident, query, results, summary="".join(texts))
