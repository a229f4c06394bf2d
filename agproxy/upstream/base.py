"""The one seam between the pool and any upstream: what the retry policy drives.

Cloud Code Assist implements it today; key-based providers (z.ai) implement the same
surface, so the scheduler and the policy never know which backend they talk to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from agproxy.upstream.cloudcode import Credentials


class Upstream(Protocol):
    async def generate(self, body: Any, creds: Credentials,
                       extra_headers: dict[str, str] | None = None) -> Any:
        """One non-streamed call; the response JSON, or UpstreamError (classified)."""

    def stream(self, body: Any, creds: Credentials,
               extra_headers: dict[str, str] | None = None) -> AsyncIterator[Any]:
        """A streamed call: each event's JSON; UpstreamError before or during the stream."""

    async def close(self) -> None:
        """Release pooled connections."""
