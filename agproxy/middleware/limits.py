"""Request body limits: one body over `max_body_bytes` gets 413 in the path's protocol,
and large bodies together may hold at most `max_inflight_body_bytes`.

A body is parsed, translated and serialized again for the upstream, so each large one
in flight costs a few times its size; without a shared budget, a handful at once could
take gigabytes. Bodies under LARGE_BODY never wait (chat turns are small); larger ones
reserve their size as it arrives and wait, up to BUDGET_WAIT seconds, for others to
finish; a body alone is always let through.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agproxy.protocols import error_response, protocol_of
from agproxy.service import Gateway

LARGE_BODY = 1024 * 1024
BUDGET_WAIT = 15.0


class BodyTooLarge(Exception):
    pass


class GatewayBusy(Exception):
    pass


class BodyBudget:
    """Bytes of large request bodies in flight, shared by every request."""

    def __init__(self) -> None:
        self.used = 0
        self._freed = asyncio.Condition()

    async def take(self, size: int, limit: int) -> None:
        async with self._freed:
            try:
                await asyncio.wait_for(
                    self._freed.wait_for(lambda: self.used == 0 or self.used + size <= limit),
                    BUDGET_WAIT,
                )
            except TimeoutError:
                raise GatewayBusy from None
            self.used += size

    async def give_back(self, size: int) -> None:
        if size:
            async with self._freed:
                self.used -= size
                self._freed.notify_all()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.budget = BodyBudget()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.gateway.settings
        limit, budget_limit = settings.max_body_bytes, settings.max_inflight_body_bytes
        declared = 0
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit():
                    declared = int(value)
                    if declared > limit:
                        await self._refuse(scope, receive, send, limit)
                        return
                break
        received = reserved = 0

        async def counting_receive() -> Message:
            nonlocal received, reserved
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            wanted = max(received, declared)
            if wanted > LARGE_BODY and wanted > reserved:
                await self.budget.take(wanted - reserved, budget_limit)
                reserved = wanted
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._refuse(scope, receive, send, limit)
        except GatewayBusy:
            response = error_response(
                protocol_of(scope["path"]),
                503,
                "the gateway is busy with other large requests (setting "
                "max_inflight_body_bytes); retry in a few seconds",
                headers={"Retry-After": "5"},
            )
            await response(scope, receive, send)
        finally:
            await self.budget.give_back(reserved)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(
            protocol_of(scope["path"]),
            413,
            f"request body too large: the limit is {limit} bytes (setting max_body_bytes)",
        )
        await response(scope, receive, send)
