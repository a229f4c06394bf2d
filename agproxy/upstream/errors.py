"""What an upstream failure means for the request and for the account."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp
import aiohttp_socks
import orjson

from agproxy.upstream.durations import find_retry_delay

# What a failed connection raises: aiohttp's errors, and aiohttp-socks' own (a SOCKS proxy
# that refuses the login or the destination raises no aiohttp error).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    aiohttp.ClientError,
    aiohttp_socks.ProxyError,
    aiohttp_socks.ProxyConnectionError,
    aiohttp_socks.ProxyTimeoutError,
)


class Failure(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429: cool the account down, try another
    CAPACITY = "capacity"  # 429 MODEL_CAPACITY_EXHAUSTED, 500/503/529: transient
    AUTH_EXPIRED = "auth_expired"  # 401: refresh the token once, retry
    FORBIDDEN = "forbidden"  # 403: the account may not use this
    NOT_FOUND = "not_found"  # 404: this account/endpoint does not serve the model
    INVALID_REQUEST = "invalid_request"  # 400: the request is bad, not the account
    TRANSPORT = "transport"  # connection failed or timed out
    # A bare 429 that follows the request's content, not the account (pool/policy.py
    # decides): returned to the client as a 400, nothing cools down.
    CONTENT_BLOCKED = "content_blocked"
    # The backend refuses this client's version: every account will, so it is returned at
    # once, naming the settings to change.
    OUTDATED_CLIENT = "outdated_client"
    OTHER = "other"


@dataclass
class UpstreamError(Exception):
    """A failed upstream call, classified. `body` is the parsed JSON error when there is one."""

    kind: Failure
    status: int
    message: str
    reason: str | None = None
    retry_after: float | None = None
    body: Any = None
    validation_url: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.kind}: {self.message}"


def _error_info(body: Any) -> tuple[str | None, str | None]:
    """(reason, validation_url) from the ErrorInfo details."""
    reason = url = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        for detail in error.get("details") or []:
            if not isinstance(detail, dict):
                continue
            reason = reason or detail.get("reason")
            metadata = detail.get("metadata") or {}
            if isinstance(metadata, dict):
                url = url or metadata.get("validation_url") or metadata.get("appeal_url")
    return reason, url


def classify(status: int, raw: bytes, retry_after_header: str | None = None) -> UpstreamError:
    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("status") or status)
    elif isinstance(body, dict) and "error_description" in body:  # OAuth style
        message = f"{body.get('error')}: {body['error_description']}"
    else:
        message = raw.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    reason, validation_url = _error_info(body)
    retry_after: float | None = None
    if retry_after_header:
        try:
            retry_after = float(retry_after_header)
        except ValueError:
            retry_after = None
    if retry_after is None and body is not None:
        retry_after = find_retry_delay(body)

    if status == 429:
        kind = Failure.CAPACITY if reason == "MODEL_CAPACITY_EXHAUSTED" else Failure.RATE_LIMITED
    elif status == 401:
        kind = Failure.AUTH_EXPIRED
    elif status == 403:
        kind = Failure.FORBIDDEN
    elif status == 404:
        kind = Failure.NOT_FOUND
    elif status in (400, 413, 422):
        kind = Failure.INVALID_REQUEST
    elif status in (408, 500, 502, 503, 504, 529):
        kind = Failure.CAPACITY
    else:
        kind = Failure.OTHER
    return UpstreamError(kind, status, message, reason, retry_after, body, validation_url)


def is_bare_429(error: UpstreamError) -> bool:
    """A 429 that names no quota reason and no delay: what Google sends when it refuses a
    request's content as well as when an account is briefly limited."""
    return (
        error.status == 429
        and error.kind is Failure.RATE_LIMITED
        and error.reason is None
        and error.retry_after is None
    )


ANSWER_WAS_ERROR = "ANSWER_WAS_ERROR"  # reason of an error the backend sent as an answer
_RETIRED = re.compile(
    r"([\w.\-]+) is no longer available\. Please switch to ([\w.\-]*[\w\-])", re.IGNORECASE
)


def answer_text(event: Any, limit: int = 4000) -> str:
    """The answer's text in a Gemini response (enveloped or not), up to `limit` chars."""
    body = event.get("response", event) if isinstance(event, dict) else None
    candidates = body.get("candidates") if isinstance(body, dict) else None
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        return ""
    parts = (candidates[0].get("content") or {}).get("parts")
    texts = [
        p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)
    ]
    return "".join(texts)[:limit]


def error_in_answer(text: str, patterns: Sequence[str]) -> UpstreamError | None:
    """An answer (200 OK) whose text is one of the backend's error sentences, as the
    failure it is; None for a real answer."""
    lowered = text.lower()
    found = next((p for p in patterns if p.lower() in lowered), None)
    if found is None:
        return None
    said = " ".join(text.split())[:300]
    retired = _RETIRED.search(text)
    if retired:
        old, new = retired.groups()
        message = (
            f"model {old} is no longer available upstream; it suggests {new}. Map {old} to "
            f"{new} (model_mapping) or ask for {new}. Upstream said: {said}"
        )
        return UpstreamError(
            Failure.NOT_FOUND, 404, message, ANSWER_WAS_ERROR, body={"successor": new}
        )
    if "no longer supported" in lowered:
        message = (
            "the upstream refuses this client version; set upstream_client_version (and "
            f"upstream_user_agent) to the current Antigravity release. Upstream said: {said}"
        )
        return UpstreamError(Failure.OUTDATED_CLIENT, 502, message, ANSWER_WAS_ERROR)
    return UpstreamError(
        Failure.CAPACITY, 502, f"the upstream answered with an error: {said}", ANSWER_WAS_ERROR
    )


def describe(exc: BaseException) -> str:
    """What went wrong on the connection, in words that name no URL, host or address: the
    text reaches clients, and the upstream's address is the operator's business (aiohttp's
    own messages carry it: "Cannot connect to host 10.0.0.5:8443 ...")."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    socks = _describe_socks(exc)
    if socks:
        return socks
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake failed"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return _with_errno("could not connect to the proxy", exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _with_errno("could not connect", exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection closed before the answer was complete"
    if isinstance(exc, aiohttp.InvalidURL):
        return "the configured URL is not valid"
    if isinstance(exc, orjson.JSONDecodeError):
        return "the answer was not valid JSON"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return type(exc).__name__


def _describe_socks(exc: BaseException) -> str | None:
    """aiohttp-socks' errors. A refusal's text is python-socks' fixed wording for the
    SOCKS reply ("Username and password authentication failure", "Host unreachable"); a
    connection error's names the proxy's address, so only its errno is kept."""
    if isinstance(exc, aiohttp_socks.ProxyTimeoutError):
        return "the SOCKS proxy timed out"
    if isinstance(exc, aiohttp_socks.ProxyConnectionError):
        cause = exc.__cause__
        errno = cause.errno if isinstance(cause, OSError) else None
        return "could not connect to the proxy" + (f" ({os.strerror(errno)})" if errno else "")
    if isinstance(exc, aiohttp_socks.ProxyError):
        return f"the SOCKS proxy refused: {exc}"
    return None


def _with_errno(text: str, exc: aiohttp.ClientConnectorError) -> str:
    errno = exc.os_error.errno if exc.os_error is not None else None
    return f"{text} ({os.strerror(errno)})" if errno else text
