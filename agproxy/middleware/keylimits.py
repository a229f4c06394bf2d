"""Client keys' limits around an AI request (keys/gate.py says what they are): counted when
it starts, settled with the upstream's token counts when it ends. Requests with the
owner's key, or with none, pass through untouched."""

from __future__ import annotations

import contextlib

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.keys.gate import CLIENT_KEY, KeyRefusal
from agproxy.monitor import note
from agproxy.monitor.record import used
from agproxy.protocols import error_response, protocol_of
from agproxy.service import Gateway


def _estimate(scope: Scope) -> int:
    """Tokens a request is expected to use before it has: its body's size / 4."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return max(1, int(value) // 4)
            except ValueError:
                return 1
    return 1


class KeyLimitsMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.keys = gateway.keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = scope.get(CLIENT_KEY) if scope["type"] == "http" else None
        if key is None:
            await self.app(scope, receive, send)
            if self.keys.shares and scope["type"] == "http":
                self.keys.spent(None, *used())
            return
        note(key_name=key.name)
        with contextlib.ExitStack() as counting:
            try:
                shared = await self.keys.admit_shared_rate(key)
                counting.enter_context(self.keys.counted(key, _estimate(scope), used, shared))
            except KeyRefusal as refusal:
                refused = error_response(
                    protocol_of(scope["path"]), refusal.status, refusal.message, refusal.headers
                )
                await refused(scope, receive, send)
                return
            await self.app(scope, receive, send)
