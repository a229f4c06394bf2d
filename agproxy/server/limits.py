"""Request body limit: a body over `max_body_bytes` gets 413 in the path's protocol."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agproxy.frontends.errors import error_response, protocol_of
from agproxy.service import Gateway


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.gateway.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await self._refuse(scope, receive, send, limit)
                    return
                break
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(protocol_of(scope["path"]), 413,
                                  f"request body too large: the limit is {limit} bytes "
                                  "(setting max_body_bytes)")
        await response(scope, receive, send)
