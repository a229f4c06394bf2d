"""IP rules: with `allowed_ips` set, only those addresses (and this machine) get in.

Checked first, before auth, on every path (console and admin API included): a
LAN-exposed gateway can then be limited to known machines. The address is the TCP
peer's; X-Forwarded-For is not trusted (any client could write it).
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.frontends.errors import error_response, protocol_of
from agproxy.service import Gateway

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def is_allowed(host: str | None, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # This machine always gets in, so a rule can never lock its owner out of the console.
    return address.is_loopback or any(address in network for network in networks)


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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        networks = self._networks()
        client = scope.get("client")
        host = client[0] if client else None
        if is_allowed(host, networks):
            await self.app(scope, receive, send)
            return
        response = error_response(protocol_of(scope["path"]), 403,
                                  f"access denied: {host} is not in allowed_ips")
        await response(scope, receive, send)
