"""The route table and middleware stack of the gateway: the whole HTTP surface on one screen."""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from pathlib import PurePath

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agproxy.admin import accounts as admin_accounts
from agproxy.admin import console_login
from agproxy.admin import dashboard as admin_dashboard
from agproxy.admin import metrics as admin_metrics
from agproxy.admin import monitor as admin_monitor
from agproxy.admin import proxy as admin_proxy
from agproxy.console import STATIC_DIR
from agproxy.frontends import anthropic, gemini, health, models, openai
from agproxy.frontends.errors import error_response, protocol_of
from agproxy.frontends.notfound import hint_for
from agproxy.monitor.middleware import MonitorMiddleware
from agproxy.monitor.redact import redact
from agproxy.security.auth import AuthMiddleware
from agproxy.security.cors import BrowserMiddleware
from agproxy.security.hosts import HostCheckMiddleware
from agproxy.security.ip_rules import IPRulesMiddleware
from agproxy.server.disconnect import DisconnectMiddleware
from agproxy.server.gate import ServiceGateMiddleware
from agproxy.server.headers import SecurityHeadersMiddleware
from agproxy.server.limits import BodyLimitMiddleware
from agproxy.service import Gateway

log = logging.getLogger("agproxy.server")


async def console_index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "console.html", headers={"Cache-Control": "no-cache"})


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
        where = " < ".join(f"{PurePath(f.filename).name}:{f.lineno} {f.name}"
                           for f in reversed(frames))
        gateway = getattr(request.app.state, "gateway", None)
        secrets = (gateway.settings.api_key, gateway.settings.admin_password) if gateway else ()
        detail = redact(" ".join(str(exc).split())[:200], secrets)
        more = f" (and {unlogged} more since the last line)" if unlogged else ""
        log.error("unhandled %s on %s %s: %s [at %s]%s", kind, request.method,
                  request.url.path, detail, where, more)
    else:
        _unhandled[kind] = (last, unlogged + 1)
    with contextlib.suppress(AttributeError):  # a few built-in exceptions take no attributes
        exc.agproxy_logged = True  # type: ignore[attr-defined]
    # The connection is closed after this answer (uvicorn sees the error re-raised): the
    # client must know, or its next request on the kept-alive connection fails.
    return error_response(protocol_of(request.url.path), 500,
                          f"internal error in agproxy: {kind}; see the gateway log",
                          headers={"Connection": "close"})


def build_app(gateway: Gateway) -> Starlette:
    routes = [
        # Health
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/health", health.healthz, methods=["GET"]),
        # OpenAI
        Route("/v1/models", models.openai_models, methods=["GET"]),
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai.completions, methods=["POST"]),
        Route("/v1/responses", openai.responses, methods=["POST"]),
        Route("/v1/images/generations", openai.images_generations, methods=["POST"]),
        # Anthropic
        Route("/v1/messages", anthropic.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic.count_tokens, methods=["POST"]),
        Route("/v1/api/event_logging", anthropic.event_logging, methods=["POST"]),
        Route("/v1/api/event_logging/batch", anthropic.event_logging, methods=["POST"]),
        Route("/v1/models/{target}", models.openai_model, methods=["GET"]),
        # Gemini (also under /v1: newer google-genai releases call v1)
        Route("/v1beta/models", models.gemini_models, methods=["GET"]),
        Route("/v1beta/models/{target}", gemini.get_model, methods=["GET"]),
        Route("/v1beta/models/{target}", gemini.call_model, methods=["POST"]),
        Route("/v1/models/{target}", gemini.call_model, methods=["POST"]),
        # Admin API and console
        Mount("/api", routes=(admin_proxy.routes + admin_accounts.routes
                              + admin_monitor.routes + admin_dashboard.routes
                              + console_login.routes)),
        Route("/metrics", admin_metrics.metrics, methods=["GET"]),
        Route("/auth/callback", admin_accounts.auth_callback, methods=["GET"]),
        Route("/auth/ticket", console_login.exchange, methods=["POST"]),
        Route("/", console_index, methods=["GET"]),
        Mount("/console", StaticFiles(directory=STATIC_DIR), name="console"),
    ]
    middleware = [
        # Outermost first: who may connect, under which name, from which web page.
        Middleware(IPRulesMiddleware, gateway=gateway),
        Middleware(SecurityHeadersMiddleware),
        Middleware(HostCheckMiddleware, gateway=gateway),
        Middleware(BrowserMiddleware, gateway=gateway),
        # The monitor sees requests the gate or auth refuse too: "why does my client get
        # 401/503?" is answered there.
        Middleware(MonitorMiddleware, gateway=gateway),
        Middleware(DisconnectMiddleware),  # a hang-up before the answer cancels the handler
        Middleware(ServiceGateMiddleware, gateway=gateway),
        Middleware(AuthMiddleware, gateway=gateway),
        Middleware(BodyLimitMiddleware, gateway=gateway),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: http_error, Exception: unexpected_error})
    app.state.gateway = gateway
    app.state.logins = {}
    app.state.console_tickets = {}
    gateway.app = app
    return app
