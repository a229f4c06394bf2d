"""How errors no route handled become answers: in the path's protocol, never a traceback.

- HTTP errors (404 with a hint at the likely mistake, 405) in the path's protocol.
- A client key refused a model or over its quota share: 403 or 429, in its protocol.
- A database kept locked by another program (a backup, a `sqlite3` shell) past the busy
  timeout, or a PostgreSQL store that is down: 503 with Retry-After, not a 500: nothing
  is wrong with the gateway.
- Anything else is a fault of agproxy: 500 with `Connection: close`, logged as one line.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from pathlib import PurePath

from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends.notfound import hint_for
from agproxy.keys.gate import KeyRefusal
from agproxy.monitor.redact import redact
from agproxy.protocols import error_response, protocol_of

log = logging.getLogger("agproxy.server")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path, method = request.url.path, request.method
    if exc.status_code == 404:
        message = hint_for(method, path)
    elif exc.status_code == 405:
        message = f"method {method} is not allowed on {path}"
    else:
        message = exc.detail
    return error_response(protocol_of(path), exc.status_code, message, headers=exc.headers)


# An unhandled error is logged as one line with its last frames, at most once every
# UNHANDLED_LOG_EVERY seconds per exception type (the others counted into the next line):
# a client repeating a request that trips a bug must not fill the log with tracebacks.
UNHANDLED_LOG_EVERY = 10.0
_unhandled: dict[str, tuple[float, int]] = {}  # type → (time of its last line, not logged)


class _AnsweredHere(logging.Filter):
    """Starlette re-raises an error after its handler answered, and uvicorn then logs the
    whole traceback: dropped for errors unexpected_error has already logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "agproxy_logged", False)


logging.getLogger("uvicorn.error").addFilter(_AnsweredHere())


async def unexpected_error(request: Request, exc: Exception) -> Response:
    kind = type(exc).__name__
    now = time.monotonic()
    last, unlogged = _unhandled.get(kind, (float("-inf"), 0))
    if now - last >= UNHANDLED_LOG_EVERY:
        _unhandled[kind] = (now, 0)
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        where = " < ".join(
            f"{PurePath(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames)
        )
        gateway = getattr(request.app.state, "gateway", None)
        secrets = (gateway.settings.api_key, gateway.settings.admin_password) if gateway else ()
        detail = redact(" ".join(str(exc).split())[:200], secrets)
        more = f" (and {unlogged} more since the last line)" if unlogged else ""
        log.error(
            "unhandled %s on %s %s: %s [at %s]%s",
            kind,
            request.method,
            request.url.path,
            detail,
            where,
            more,
        )
    else:
        _unhandled[kind] = (last, unlogged + 1)
    with contextlib.suppress(AttributeError):  # a few built-in exceptions take no attributes
        exc.agproxy_logged = True  # type: ignore[attr-defined]
    # The connection is closed after this answer (uvicorn sees the error re-raised): the
    # client must know, or its next request on the kept-alive connection fails.
    return error_response(
        protocol_of(request.url.path),
        500,
        f"internal error in agproxy: {kind}; see the gateway log",
        headers={"Connection": "close"},
    )


def _unavailable(exc: Exception) -> tuple[str, str] | None:
    """(what the log says, what the client is told) when the store is there but cannot
    answer now: nothing is wrong with the gateway, so 503 rather than 500."""
    if not isinstance(exc, OperationalError):
        return None
    if "locked" in str(exc.orig).lower():
        return (
            "the database is locked by another program",
            "the database is locked by another program (a backup, a sqlite3 shell?); "
            "try again in a few seconds",
        )
    if type(exc.orig).__module__.startswith("psycopg"):
        # PostgreSQL down or restarting: the request path (the pool) does not need it, so
        # AI requests go on; what reads the store (admin, monitor) is told to come back.
        return (
            "the store (PostgreSQL) is not reachable",
            "the store (PostgreSQL, store_url) is not reachable; try again in a few seconds",
        )
    return None


async def database_error(request: Request, exc: Exception) -> Response:
    why = _unavailable(exc)
    if why is None:
        return await unexpected_error(request, exc)
    log.warning("%s; answered %s %s with 503", why[0], request.method, request.url.path)
    return error_response(protocol_of(request.url.path), 503, why[1], headers={"Retry-After": "5"})


async def key_refused(request: Request, exc: Exception) -> Response:
    """A client key's model allow-list or quota share, checked where the model is routed."""
    assert isinstance(exc, KeyRefusal)
    return error_response(protocol_of(request.url.path), exc.status, exc.message, exc.headers)


HANDLERS = {
    HTTPException: http_error,
    KeyRefusal: key_refused,
    OperationalError: database_error,
    Exception: unexpected_error,
}
