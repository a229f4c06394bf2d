"""Client keys' limits around an AI request (keys/gate.py says what they are): counted when
it starts, settled with the upstream's token counts when it ends. Requests with the
owner's key, or with none, pass through untouched."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.keys.gate import CLIENT_KEY, CURRENT_KEY, KeyRefusal
from agproxy.monitor import note
from agproxy.monitor.record import current
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


def _used() -> tuple[str | None, int | None]:
    """The routed model and the tokens the upstream reported; 0 for a request that failed
    without any, None when unknown (the estimate then stands)."""
    record = current()
    if record is None:
        return None, None
    if record.input_tokens is None:
        return record.routed_model, 0 if record.status >= 400 else None
    tokens = record.input_tokens + (record.output_tokens or 0) + (record.thinking_tokens or 0)
    return record.routed_model, tokens


class KeyLimitsMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.keys = gateway.keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = scope.get(CLIENT_KEY) if scope["type"] == "http" else None
        if key is None:
            await self.app(scope, receive, send)
            if self.keys.shares and scope["type"] == "http":
                self.keys.spent(None, *_used())
            return
        note(key_name=key.name)
        try:
            held = self.keys.admit(key, _estimate(scope))
        except KeyRefusal as refusal:
            refused = error_response(
                protocol_of(scope["path"]), refusal.status, refusal.message, refusal.headers
            )
            await refused(scope, receive, send)
            return
        token = CURRENT_KEY.set(key)
        try:
            await self.app(scope, receive, send)
        finally:
            CURRENT_KEY.reset(token)
            model, tokens = _used()
            self.keys.done(key, held, tokens)
            self.keys.spent(key, model, tokens)
