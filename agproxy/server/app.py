"""The route table and middleware stack of the gateway: the whole HTTP surface on one screen."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from agproxy.admin import accounts as admin_accounts
from agproxy.admin import console_login
from agproxy.admin import dashboard as admin_dashboard
from agproxy.admin import keys as admin_keys
from agproxy.admin import metrics as admin_metrics
from agproxy.admin import monitor as admin_monitor
from agproxy.admin import providers as admin_providers
from agproxy.admin import proxy as admin_proxy
from agproxy.console import STATIC_DIR
from agproxy.frontends import (
    anthropic,
    gemini,
    health,
    images,
    models,
    openai,
    responses,
    responses_compact,
    responses_ws,
)
from agproxy.middleware.auth import AuthMiddleware
from agproxy.middleware.browser import BrowserMiddleware
from agproxy.middleware.disconnect import DisconnectMiddleware
from agproxy.middleware.gate import ServiceGateMiddleware
from agproxy.middleware.headers import SecurityHeadersMiddleware
from agproxy.middleware.hosts import HostCheckMiddleware
from agproxy.middleware.ip_rules import IPRulesMiddleware
from agproxy.middleware.keylimits import KeyLimitsMiddleware
from agproxy.middleware.limits import BodyLimitMiddleware
from agproxy.middleware.monitor import MonitorMiddleware
from agproxy.server.error_handlers import HANDLERS
from agproxy.service import Gateway


async def console_index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "console.html", headers={"Cache-Control": "no-cache"})


# The admin API, mounted under /api: each admin module's route list.
ADMIN_ROUTES = (
    admin_proxy.routes
    + admin_accounts.routes
    + admin_keys.routes
    + admin_providers.routes
    + admin_monitor.routes
    + admin_dashboard.routes
    + console_login.routes
)


def build_app(gateway: Gateway) -> Starlette:
    routes = [
        # Health
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/health", health.healthz, methods=["GET"]),
        # OpenAI
        Route("/v1/models", models.openai_models, methods=["GET"]),
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai.completions, methods=["POST"]),
        Route("/v1/responses", responses.create, methods=["POST"]),
        WebSocketRoute("/v1/responses", responses_ws.websocket),
        Route("/v1/responses/compact", responses_compact.compact, methods=["POST"]),
        Route("/v1/responses/{response_id}", responses.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete, methods=["DELETE"]),
        Route(
            "/v1/responses/{response_id}/input_items", responses.list_input_items, methods=["GET"]
        ),
        Route("/v1/images/generations", images.images_generations, methods=["POST"]),
        Route("/v1/images/edits", images.images_edits, methods=["POST"]),
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
        Mount("/api", routes=ADMIN_ROUTES),
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
        Middleware(KeyLimitsMiddleware, gateway=gateway),  # a client key's limits
        Middleware(BodyLimitMiddleware, gateway=gateway),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=HANDLERS)
    app.state.gateway = gateway
    app.state.logins = {}
    app.state.console_tickets = {}
    gateway.app = app
    return app
