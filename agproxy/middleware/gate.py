"""Service gate: while the proxy service is stopped, AI routes and /healthz answer 503."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.protocols import error_response, protocol_of
from agproxy.service import Gateway
from agproxy.zones import Zone, zone_of

NOT_RUNNING = (
    "the proxy service is not running: start it in the console, with `agproxy start`, "
    "or with POST /api/proxy/start"
)


class ServiceGateMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and not self.gateway.running
            and scope.get("method") != "OPTIONS"
            and zone_of(scope["path"]) in (Zone.AI, Zone.HEALTH)
        ):
            response = error_response(protocol_of(scope["path"]), 503, NOT_RUNNING)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
