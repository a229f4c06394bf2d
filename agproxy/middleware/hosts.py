"""Host check middleware: a request must name this gateway in its Host header (the rule and
why it stops DNS rebinding: security/hosts.py)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.protocols import error_response, protocol_of
from agproxy.security.hosts import host_allowed, host_name, machine_names
from agproxy.service import Gateway

VERDICTS_KEPT = 256


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.machine = machine_names()
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
        if scope["type"] in ("http", "websocket"):
            for name, value in scope["headers"]:
                if name == b"host":
                    if not self._allowed(value):
                        host = host_name(value)
                        response = error_response(
                            protocol_of(scope["path"]),
                            403,
                            f"the host name {host[:100]!r} is not one this gateway answers to "
                            "(a guard against DNS rebinding); add it to the allowed_hosts setting",
                        )
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
