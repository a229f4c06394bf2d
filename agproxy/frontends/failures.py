"""Turning a failed request (after the retry policy) into the client's error response."""

from __future__ import annotations

import math

from starlette.responses import Response

from agproxy.pool.policy import Exhausted
from agproxy.protocols import Protocol, error_response
from agproxy.upstream import Failure, UpstreamError


def _status_for(error: UpstreamError) -> int:
    """The upstream's status as the client gets it. The upstream's own 500 becomes 502:
    a 500 from agproxy then always means a fault of agproxy itself."""
    if error.kind is Failure.TRANSPORT or not 400 <= error.status < 600 or error.status == 500:
        return 502
    return error.status


def upstream_failure(protocol: Protocol, error: UpstreamError) -> Response:
    """An upstream error returned as it is (a 400 the client must fix, say)."""
    status = _status_for(error)
    return error_response(protocol, status, f"upstream: {error.message}")


def exhausted(protocol: Protocol, failure: Exhausted) -> Response:
    """No attempt succeeded: 502 or the upstream's 5xx when the upstream failed the
    request itself, 429 with Retry-After when accounts are cooling down, 503 when none can
    serve, else the last upstream error's status."""
    no_account, error = failure.no_account, failure.error
    retry_after = no_account.retry_after if no_account is not None else None
    if error is not None and error.kind in (Failure.CAPACITY, Failure.TRANSPORT):
        # The upstream failed this request (no account is to blame, none cooled down):
        # what happened, as a 502 for a broken, empty or unreachable answer, else the
        # upstream's own 5xx (503 for capacity), never a 429 the client did not earn.
        transport = error.kind is Failure.TRANSPORT
        status = _status_for(error) if transport or 500 <= error.status < 600 else 503
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
        return error_response(
            protocol,
            status,
            f"upstream failed for this request on every attempt: {error.message}",
            headers=headers,
        )
    if error is not None and error.kind in (Failure.FORBIDDEN, Failure.AUTH_EXPIRED):
        # Every account that could serve was refused: no account is available, which is
        # not the client's permission problem (a 403 would log Claude Code out).
        return error_response(
            protocol,
            503,
            f"no account can serve this request; the last one was refused: {error.message}",
        )
    if error is not None and error.kind is Failure.NOT_FOUND:
        # No account serves the model (a retired one names its successor): a 404, not a
        # 429 for the short cooldowns the 404s set.
        return upstream_failure(protocol, error)
    if no_account is not None and no_account.retry_after is not None:
        seconds = max(1, math.ceil(no_account.retry_after))
        message = no_account.message
        if error is not None:
            message += f" (last upstream error: {error.message})"
        return error_response(protocol, 429, message, headers={"Retry-After": str(seconds)})
    if error is not None:
        if error.kind is Failure.RATE_LIMITED:
            headers = {"Retry-After": str(max(1, math.ceil(error.retry_after or 1)))}
            return error_response(protocol, 429, f"upstream: {error.message}", headers=headers)
        return upstream_failure(protocol, error)
    assert no_account is not None
    return error_response(protocol, 503, no_account.message)
