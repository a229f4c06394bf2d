"""A fake Google upstream for agproxy's tests: OAuth (consent page, token endpoint,
userinfo) and Cloud Code Assist `v1internal`, served over real HTTP by uvicorn in a
background thread. Wire shapes follow /work/shared/reference/UPSTREAM.md §1–§6 and §9.

    fake = FakeGoogle().start()
    acct = fake.add_account(email="a@example.com", project="proj-a")
    fake.inject(Fault.rate_limited(quota_reset_delay="1h2m3.5s"), model="gemini-3-flash")
    ...
    fake.stop()

It imports nothing from agproxy: it is the outside world.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._cloudcode import CloudCode
from ._faults import Fault, format_duration, google_error, parse_duration
from ._generate import (
    GROUNDED_SENTENCES,
    SEARCH_SOURCES,
    StreamCut,
    count_tokens,
    search_queries,
    search_uri,
)
from ._http import json_response, record
from ._oauth import OAuth
from ._state import (
    CLIENT_ID,
    CLIENT_SECRET,
    FALLBACK_PROJECT,
    CodeGrant,
    FakeAccount,
    RecordedRequest,
    Script,
    State,
)

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "FALLBACK_PROJECT",
    "GROUNDED_SENTENCES",
    "SEARCH_SOURCES",
    "FakeAccount",
    "FakeGoogle",
    "Fault",
    "RecordedRequest",
    "count_tokens",
    "format_duration",
    "parse_duration",
    "search_queries",
    "search_uri",
]

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class _QuietCuts(logging.Filter):
    """uvicorn logs the exception that drops a cut stream; that drop is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        return not isinstance(exc, StreamCut)


logging.getLogger("uvicorn.error").addFilter(_QuietCuts())


def build_app(state: State) -> Starlette:
    oauth, cloudcode = OAuth(state), CloudCode(state)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def not_found(request: Request) -> Response:
        record(state, request, None, None, "unknown")
        return json_response(
            google_error(
                404, f"The requested URL {request.url.path} was not found on this server."
            ),
            404,
        )

    return Starlette(
        routes=[
            Route("/token", oauth.token, methods=["POST"]),
            Route("/oauth2/v2/userinfo", oauth.userinfo, methods=["GET"]),
            Route("/o/oauth2/v2/auth", oauth.authorize, methods=["GET"]),
            Route("/v1internal:{method}", cloudcode.rpc, methods=["POST"]),
            Route("/v1internal/operations/{op}", cloudcode.operation, methods=["GET"]),
            # More bases on the same fake (see FakeGoogle.v1internal_at), for endpoint fallback.
            Route("/{base}/v1internal:{method}", cloudcode.rpc, methods=["POST"]),
            Route("/{base}/v1internal/operations/{op}", cloudcode.operation, methods=["GET"]),
            Route("/__fake__/health", health, methods=["GET"]),
            Route("/{path:path}", not_found, methods=ALL_METHODS),
        ]
    )


class FakeGoogle(State):
    """The fake's state (see State) plus its server and the test-facing API."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1internal(self) -> str:
        return self.base_url + "/v1internal"

    def v1internal_at(self, name: str) -> str:
        """Another v1internal base served by this fake ("<base_url>/<name>/v1internal"),
        answering exactly like `v1internal`; RecordedRequest.path tells them apart."""
        return f"{self.base_url}/{name}/v1internal"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def userinfo_url(self) -> str:
        return self.base_url + "/oauth2/v2/userinfo"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/o/oauth2/v2/auth"

    def start(self, timeout: float = 10.0) -> FakeGoogle:
        """Serve on a free 127.0.0.1 port; returns once the server answers HTTP."""
        # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP; without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve([sock])),
            name=f"fake-google-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base_url + "/__fake__/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the fake Google did not answer on port {self.port}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeGoogle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- accounts and tokens ------------------------------------------------------------
    def add_account(
        self,
        email: str = "a@example.com",
        refresh_token: str | None = None,
        project: str | None = "proj-a",
        tier: str = "free-tier",
        paid_tier: tuple[str, str] | None = None,
        models: dict[str, dict[str, Any]] | None = None,
        access_token_ttl: int = 3599,
        name: str | None = None,
        ineligible_tiers: list[dict[str, str]] | None = None,
        windows: dict[str, dict[str, Any]] | None = None,
    ) -> FakeAccount:
        """A Google account the fake knows. project=None: loadCodeAssist names none, and
        onboardUser gives "onboarded-<n>" (unless onboard_fails). models: name ->
        {"remainingFraction": float | None, "resetTime": str, ...extra listing fields};
        default: four models at 1.0, resetting in an hour. windows: quota summary buckets
        to change (bucket id -> {"remainingFraction", "resetTime"}, see set_window); the
        others are full, resetting in 5 hours (gemini-5h, 3p-5h) or a week (gemini-weekly,
        3p-weekly)."""
        return self.create_account(
            email,
            refresh_token,
            project,
            tier,
            paid_tier,
            models,
            access_token_ttl,
            name,
            ineligible_tiers,
            windows,
        )

    def account(self, email: str) -> FakeAccount:
        with self.lock:
            return self.accounts[email]

    def revoke(self, refresh_token: str, access_tokens: bool = True) -> None:
        """Later refreshes answer 400 invalid_grant; by default the account's access tokens
        stop working too, as with a real revoke."""
        with self.lock:
            account = self.account_by_refresh_token(refresh_token)
            if account is None:
                raise KeyError("unknown refresh token")
            account.revoked = True
            if access_tokens:
                self.expire_access_tokens(account.email)

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Every access token issued (to `email`, or to anyone) is expired from now on."""
        with self.lock:
            for token, (owner, _) in list(self.access.items()):
                if email is None or owner == email:
                    self.access[token] = (owner, 0.0)

    def set_quota(
        self,
        email: str,
        model: str,
        remaining_fraction: float | None,
        reset_time: str | None = None,
    ) -> None:
        with self.lock:
            spec = self.accounts[email].models.setdefault(model, {"resetTime": ""})
            spec["remainingFraction"] = remaining_fraction
            if reset_time is not None:
                spec["resetTime"] = reset_time

    def set_window(
        self,
        email: str,
        bucket_id: str,
        remaining_fraction: float | None,
        reset_time: str | None = None,
    ) -> None:
        """One retrieveUserQuotaSummary bucket of the account (gemini-5h, gemini-weekly,
        3p-5h, 3p-weekly). None: the fraction is omitted, which means empty. While a
        bucket is empty (and enforce_quota is on), its group's models answer 429 until
        reset_time, as Google does."""
        with self.lock:
            spec = self.accounts[email].windows.setdefault(bucket_id, {"resetTime": ""})
            spec["remainingFraction"] = remaining_fraction
            if reset_time is not None:
                spec["resetTime"] = reset_time

    def issue_code(
        self,
        email: str,
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
        challenge_method: str = "S256",
        offline: bool = True,
    ) -> str:
        """An authorization code for `email`, as if the user had consented. redirect_uri
        None accepts any at the exchange; with code_challenge the exchange needs PKCE."""
        return self.store_code(
            email, CodeGrant(redirect_uri, code_challenge, challenge_method, offline)
        )

    def token_refresh_count(self, refresh_token: str) -> int:
        """refresh_token grant requests carrying this token (whatever they were answered)."""
        with self.lock:
            return self.refreshes[refresh_token]

    # -- faults, scripts, log ------------------------------------------------------------
    def inject(
        self,
        fault: Fault,
        email: str | None = None,
        model: str | None = None,
        method: str | None = None,
        times: int = 1,
        contains: str | None = None,
    ) -> None:
        """Queue `fault` for the next `times` matching calls (None = any). method is a
        v1internal method ("streamGenerateContent", "fetchAvailableModels", ...),
        "operations", or an OAuth endpoint ("token", "userinfo", "authorize"); method=None
        matches v1internal calls only. contains: only calls whose JSON body holds this
        text (a fault that follows one request, whichever account serves it)."""
        self.queue_fault(fault, email, model, method, times, contains)

    def block_content(self, phrase: str) -> None:
        """Generate calls whose system instruction holds `phrase` get a bare 429."""
        with self.lock:
            self.content_triggers.append(phrase)

    def script(
        self,
        model: str | None = None,
        email: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        finish_reason: str | None = "STOP",
        usage: dict[str, Any] | None = None,
        times: int = 1,
        chunks: list[list[dict[str, Any]]] | None = None,
        raw: list[dict[str, Any]] | None = None,
    ) -> None:
        """The next `times` matching generate calls answer these Gemini `parts` (one SSE
        event per part; `chunks` groups parts per event instead). usage None: computed.
        `raw`: inner `response` objects sent as the events verbatim (merged when not
        streamed) — for promptFeedback, groundingMetadata and other shapes."""
        if parts is None and chunks is None and raw is None:
            raise ValueError("script needs parts, chunks or raw")
        self.add_script(
            Script(list(parts or []), finish_reason, usage, chunks, raw), email, model, times
        )

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received since the last reset(), oldest first."""
        return self.recorded()

    def calls(self, rpc: str | None = None, email: str | None = None) -> list[RecordedRequest]:
        """Recorded requests of one kind ("streamGenerateContent", "token", ...) and/or
        account."""
        return [
            r
            for r in self.recorded()
            if (rpc is None or r.rpc == rpc) and (email is None or r.account_email == email)
        ]

    def reset(self) -> None:
        """Forget faults, scripts and recorded requests and restore the switches
        (consent_email, onboard_fails, enforce_quota, ...); accounts and tokens stay."""
        self.clear()
