"""The Cloud Code Assist (`v1internal`) client: headers, endpoint fallback, JSON and SSE calls.

Every call goes to `<base>:<method>` for each configured base in order; a 408, 404,
5xx or a transport error moves on to the next base, anything else is the answer.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agproxy.config import Settings
from agproxy.upstream.errors import (
    TRANSPORT_ERRORS,
    Failure,
    UpstreamError,
    classify,
    describe,
)
from agproxy.upstream.sessions import Sessions
from agproxy.upstream.sse import SSEDecoder

log = logging.getLogger("agproxy.upstream")

FALLBACK_STATUSES = frozenset({408, 404}) | frozenset(range(500, 600))
# No total deadline for generation (long answers stream for minutes); what bounds a
# call is 20 s to connect and 300 s of upstream silence. Fewer timers per request, too.
GENERATE_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=20, sock_read=300)
SHORT_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=10)
CALL_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, orjson.JSONDecodeError)
PLACEHOLDER_PROJECTS = frozenset({"", "test-project", "project-id"})
SESSION_ID = str(uuid.uuid4())  # x-vscode-sessionid: one per process, like the IDE


def machine_id() -> str:
    """A stable id for this machine (hashed, so the OS id itself is not sent)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw:
            return hashlib.sha256(raw.encode()).hexdigest()
    return hashlib.sha256(str(uuid.getnode()).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one upstream call needs from an account."""

    access_token: str
    project: str | None = None
    proxy: str | None = None  # outbound HTTP(S) or SOCKS5 proxy URL for this account


class CloudCodeClient:
    def __init__(self, settings: Callable[[], Settings]) -> None:
        self.settings = settings
        self.sessions = Sessions()
        self._machine_id = machine_id()

    async def close(self) -> None:
        await self.sessions.close()

    # -- headers ---------------------------------------------------------
    def headers(
        self, creds: Credentials, quota_style: bool = False, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        settings = self.settings()
        if quota_style:
            agent = f"vscode/1.X.X (Antigravity/{settings.upstream_client_version})"
        else:
            agent = settings.upstream_user_agent
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {creds.access_token}",
            "User-Agent": agent,
            "x-client-name": "antigravity",
            "x-client-version": settings.upstream_client_version,
            "x-machine-id": self._machine_id,
            "x-vscode-sessionid": SESSION_ID,
        }
        if creds.project and creds.project not in PLACEHOLDER_PROJECTS and not quota_style:
            headers["x-goog-user-project"] = creds.project
        if extra:
            headers.update(extra)
        return headers

    def _urls(self, method: str, query: str | None) -> list[str]:
        suffix = f":{method}" + (f"?{query}" if query else "")
        return [base + suffix for base in self.settings().upstream_base_urls]

    # -- plain JSON calls ------------------------------------------------
    async def call(
        self,
        method: str,
        body: Any,
        creds: Credentials,
        *,
        quota_style: bool = False,
        timeout: aiohttp.ClientTimeout = SHORT_TIMEOUT,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        """POST `body` to `<base>:<method>` with fallback; the parsed JSON, or UpstreamError."""
        headers = self.headers(creds, quota_style, extra_headers)
        return await self._json_with_fallback(
            "POST", self._urls(method, None), headers, creds, timeout, orjson.dumps(body)
        )

    async def get(self, path: str, creds: Credentials) -> Any:
        """GET `<base>/<path>` (long-running operations) with fallback."""
        urls = [f"{base}/{path}" for base in self.settings().upstream_base_urls]
        return await self._json_with_fallback(
            "GET", urls, self.headers(creds, quota_style=True), creds, SHORT_TIMEOUT, None
        )

    async def _json_with_fallback(
        self,
        method: str,
        urls: list[str],
        headers: dict[str, str],
        creds: Credentials,
        timeout: aiohttp.ClientTimeout,
        data: bytes | None,
    ) -> Any:
        last: UpstreamError | None = None
        with self.sessions.lease(creds.proxy) as way:
            for url in urls:
                try:
                    async with way.session.request(
                        method, url, data=data, headers=headers, timeout=timeout, proxy=way.proxy
                    ) as response:
                        raw = await response.read()
                        if response.status < 300:
                            return orjson.loads(raw) if raw else {}
                        last = classify(response.status, raw, response.headers.get("Retry-After"))
                        if response.status not in FALLBACK_STATUSES:
                            raise last
                except CALL_ERRORS as exc:
                    last = _transport(url, f"the upstream call failed: {describe(exc)}", exc)
        assert last is not None
        raise last

    async def generate(
        self, body: Any, creds: Credentials, extra_headers: dict[str, str] | None = None
    ) -> Any:
        """`generateContent` (not streamed): the unwrapped Gemini response."""
        return _unwrap(
            await self.call(
                "generateContent",
                body,
                creds,
                timeout=GENERATE_TIMEOUT,
                extra_headers=extra_headers,
            )
        )

    # -- streaming -------------------------------------------------------
    async def stream(
        self, body: Any, creds: Credentials, extra_headers: dict[str, str] | None = None
    ) -> AsyncIterator[Any]:
        """`streamGenerateContent?alt=sse`: yields each event's (unwrapped) JSON.

        Raises UpstreamError before the first event when every base failed. Closing the
        iterator (client gone) closes the upstream connection at once.
        """
        data = orjson.dumps(body)
        headers = self.headers(creds, extra=extra_headers)
        last: UpstreamError | None = None
        with self.sessions.lease(creds.proxy) as way:
            for url in self._urls("streamGenerateContent", "alt=sse"):
                try:
                    response = await way.session.post(
                        url, data=data, headers=headers, timeout=GENERATE_TIMEOUT, proxy=way.proxy
                    )
                except TRANSPORT_ERRORS as exc:
                    last = _transport(url, f"the upstream call failed: {describe(exc)}", exc)
                    continue
                async with response:
                    if response.status >= 300:
                        raw = await response.read()
                        last = classify(response.status, raw, response.headers.get("Retry-After"))
                        if response.status in FALLBACK_STATUSES:
                            continue
                        raise last
                    decoder = SSEDecoder()
                    try:
                        async for chunk in response.content.iter_any():
                            for event in decoder.feed(chunk):
                                yield _unwrap(event)
                    except TRANSPORT_ERRORS as exc:
                        raise _transport(
                            url, f"the answer broke off mid-stream: {describe(exc)}", exc
                        ) from exc
                    for event in decoder.flush():
                        yield _unwrap(event)
                    return
        assert last is not None
        raise last


def _unwrap(payload: Any) -> Any:
    """v1internal wraps Gemini responses in {"response": ...}; accept both forms."""
    if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
        return payload["response"]
    return payload


def _transport(url: str, message: str, exc: BaseException) -> UpstreamError:
    """A transport failure: the client's message names no URL; the log says which base."""
    log.info("%s: %s (%s)", url, message, str(exc) or type(exc).__name__)
    return UpstreamError(Failure.TRANSPORT, 502, message)
