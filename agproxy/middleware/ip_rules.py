"""IP rules middleware: with `allowed_ips` set, only those addresses (and this machine) get
in, checked first on every path (security/ip_rules.py holds the rule itself)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.protocols import error_response, protocol_of
from agproxy.security.ip_rules import Network, is_allowed, parse_networks
from agproxy.service import Gateway


class IPRulesMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self._rules: tuple[tuple[str, ...], tuple[Network, ...]] = ((), ())

    def _networks(self) -> tuple[Network, ...]:
        entries = self.gateway.settings.allowed_ips
        if entries != self._rules[0]:  # parsed again only when the setting changes
            self._rules = (entries, parse_networks(entries))
        return self._rules[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        networks = self._networks()
        client = scope.get("client")
        host = client[0] if client else None
        if is_allowed(host, networks):
            await self.app(scope, receive, send)
            return
        response = error_response(
            protocol_of(scope["path"]), 403, f"access denied: {host} is not in allowed_ips"
        )
        await response(scope, receive, send)
