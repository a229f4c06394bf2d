"""Host check: a request must name this gateway in its Host header.

A web page can make a browser talk to 127.0.0.1 under a name it controls (DNS
rebinding: evil.example resolves first to the attacker, then to 127.0.0.1), and the
browser then treats the gateway as that page's own origin. Such a request carries the
attacker's name in Host. Accepted are: no Host at all (HTTP/1.0 tools), any IP
address literal (a rebinding attack needs a name), `localhost`, this machine's host
name (and its `.local` mDNS form), and the `allowed_hosts` setting (exact names,
`.example.com` for a domain and its subdomains, or `*` to switch the check off, e.g.
behind a reverse proxy that checks names itself).
"""

from __future__ import annotations

import ipaddress
import socket

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.frontends.errors import error_response, protocol_of
from agproxy.service import Gateway


def host_name(header: bytes) -> str:
    """The name part of a Host header, lower case, without port or IPv6 brackets."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    name, _, _ = text.partition(":")
    return name.rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _machine_names() -> frozenset[str]:
    names = {"localhost"}
    hostname = socket.gethostname().lower().rstrip(".")
    if hostname:
        names |= {hostname, hostname + ".local", hostname.split(".")[0]}
    return frozenset(names)


def host_allowed(name: str, machine: frozenset[str], allowed: tuple[str, ...]) -> bool:
    if not name or name in machine or is_ip_literal(name):
        return True
    for entry in allowed:
        if entry == "*" or entry == name:
            return True
        if entry.startswith(".") and (name == entry[1:] or name.endswith(entry)):
            return True
    return False


VERDICTS_KEPT = 256


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.machine = _machine_names()
        # Clients send the same Host on every request: its verdict is remembered (per
        # allowed_hosts value), so the check costs a dict lookup.
        self._verdicts: dict[bytes, bool] = {}
        self._rules: tuple[str, ...] = ()

    def _allowed(self, value: bytes) -> bool:
        rules = self.gateway.settings.allowed_hosts
        if rules is not self._rules:
            self._rules, self._verdicts = rules, {}
        verdict = self._verdicts.get(value)
        if verdict is None:
            verdict = host_allowed(host_name(value), self.machine, rules)
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[value] = verdict
        return verdict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"host":
                    if not self._allowed(value):
                        host = host_name(value)
                        response = error_response(
                            protocol_of(scope["path"]), 403,
                            f"the host name {host[:100]!r} is not one this gateway answers to "
                            "(a guard against DNS rebinding); add it to the allowed_hosts setting")
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
