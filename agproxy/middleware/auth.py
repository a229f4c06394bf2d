"""Auth middleware: the api key or a client key for AI routes (per auth_mode), the admin
password for /api.

One credential per request (several different ones get 400), and failed attempts are
throttled per client address (security/throttle.py) and logged without the secret.
"""

from __future__ import annotations

import logging
import math

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.keys import ClientKey
from agproxy.keys.gate import CLIENT_KEY
from agproxy.protocols import Protocol, error_response, protocol_of
from agproxy.security.keys import SEVERAL_KEYS, SeveralKeys, key_matches, presented_key
from agproxy.security.throttle import AuthThrottle
from agproxy.service import Gateway
from agproxy.zones import Zone, zone_of

log = logging.getLogger("agproxy.security")

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
        self.throttle = AuthThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        zone = zone_of(path)
        if zone is Zone.CONSOLE:
            await self.app(scope, receive, send)
            return
        settings = self.gateway.settings
        if zone is Zone.ADMIN:
            protocol, secret, refusal = Protocol.OPENAI, settings.admin_secret, ADMIN_REQUIRED
            allow_query = False
        else:
            mode = self.gateway.effective_auth_mode()
            if mode == "off" or (mode == "all_except_health" and zone is Zone.HEALTH):
                await self._open(scope, receive, send)
                return
            protocol = protocol_of(path)
            secret, refusal = settings.api_key, ""
            allow_query = protocol is Protocol.GOOGLE

        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = self.throttle.blocked_for(address)
        if wait:
            response = error_response(
                protocol,
                429,
                f"too many failed authentications from {address}; try again in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
            await response(scope, receive, send)
            return
        try:
            key = presented_key(scope, allow_query)
        except SeveralKeys:
            await error_response(protocol, 400, SEVERAL_KEYS)(scope, receive, send)
            return
        if key_matches(key, secret):
            self.throttle.succeeded(address)
            await self.app(scope, receive, send)
            return
        client_key = self.gateway.keys.lookup(key) if key and zone is not Zone.ADMIN else None
        if client_key is not None:
            self.throttle.succeeded(address)
            await self._with_client_key(client_key, protocol, scope, receive, send)
            return
        self._failed(address, scope.get("method", "WEBSOCKET"), path)
        message = refusal or (WRONG_KEY if key is not None else MISSING_KEY)
        await error_response(protocol, 401, message)(scope, receive, send)

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No key is required; a client key sent all the same still counts (its limits
        and usage apply), the owner's key or none passes as it is."""
        keys = self.gateway.keys
        if keys.by_digest:
            try:
                key = presented_key(scope, protocol_of(scope["path"]) is Protocol.GOOGLE)
            except SeveralKeys:
                key = None
            client_key = keys.lookup(key) if key else None
            if client_key is not None:
                protocol = protocol_of(scope["path"])
                await self._with_client_key(client_key, protocol, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _with_client_key(
        self, key: ClientKey, protocol: Protocol, scope: Scope, receive: Receive, send: Send
    ) -> None:
        refusal = self.gateway.keys.refusal(key)  # disabled or expired: 401, saying which
        if refusal is not None:
            await error_response(protocol, 401, refusal)(scope, receive, send)
            return
        scope[CLIENT_KEY] = key
        await self.app(scope, receive, send)

    def _failed(self, address: str, method: str, path: str) -> None:
        """Count the failure against the address, and log it (never the key)."""
        failures, block = self.throttle.failed(address)
        if block:
            log.warning(
                "authentication failed from %s on %s %s (%d in a row); refusing it for %.0f s",
                address,
                method,
                path,
                failures,
                block,
            )
        elif failures <= 3 or failures % 10 == 0:
            log.warning(
                "authentication failed from %s on %s %s (%d in a row)",
                address,
                method,
                path,
                failures,
            )
