"""Security headers: the console's pages get a strict Content-Security-Policy (scripts and
styles only from the gateway itself, no framing) and nosniff; the admin API and health
answers get nosniff. The AI routes answer only JSON and event streams with their type
set, to API clients: they are left alone, so no stream chunk pays for a wrapper."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agproxy.zones import Zone, zone_of

NOSNIFF = [(b"x-content-type-options", b"nosniff")]
CONSOLE = NOSNIFF + [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        zone = zone_of(scope["path"]) if scope["type"] == "http" else Zone.AI
        if zone is Zone.AI:
            await self.app(scope, receive, send)
            return
        extra = CONSOLE if zone is Zone.CONSOLE else NOSNIFF

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, sending)
