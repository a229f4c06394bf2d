"""Auth middleware: the api key for AI routes (per auth_mode), the admin password for /api."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.frontends.errors import Protocol, error_response, protocol_of
from agproxy.security.keys import key_matches, presented_keys
from agproxy.server.zones import Zone, zone_of
from agproxy.service import Gateway

MISSING_KEY = (
    "missing API key: send the gateway's api_key as 'Authorization: Bearer <key>', "
    "'x-api-key: <key>' or 'x-goog-api-key: <key>'"
)
WRONG_KEY = "invalid API key: the key sent does not match the gateway's api_key"
ADMIN_REQUIRED = (
    "the admin API needs the admin password (or the api_key when no admin_password is set) "
    "as 'Authorization: Bearer <password>'"
)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        zone = zone_of(path)
        if zone is Zone.CONSOLE:
            await self.app(scope, receive, send)
            return
        settings = self.gateway.settings
        if zone is Zone.ADMIN:
            keys = presented_keys(scope, allow_query=False)
            if not key_matches(keys, settings.admin_secret):
                response = error_response(Protocol.OPENAI, 401, ADMIN_REQUIRED)
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        mode = self.gateway.effective_auth_mode()
        if mode == "off" or (mode == "all_except_health" and zone is Zone.HEALTH):
            await self.app(scope, receive, send)
            return
        protocol = protocol_of(path)
        keys = presented_keys(scope, allow_query=protocol is Protocol.GOOGLE)
        if not key_matches(keys, settings.api_key):
            response = error_response(protocol, 401, WRONG_KEY if keys else MISSING_KEY)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
