"""Client hang-ups before the first byte: cancel the handler, and the upstream call with it.

The connection protocol (net/connection.py) notices the hang-up when the connection
is lost, at no cost to requests whose client stays: if the request's body was in and no
answer had started, it marks the scope with HUNG_UP and cancels the request's task, so
no quota is spent on an answer nobody reads. This middleware turns that cancellation
into a quiet end without a response, which the monitor records as 499. Any other
cancellation (shutdown) goes on as it came. Once a response has started, a hang-up is
left to the response (StreamingResponse listens for it itself).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from agproxy.net.connection import HUNG_UP


class DisconnectMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not scope.get(HUNG_UP) or task is None or task.uncancel() > 0:
                raise
