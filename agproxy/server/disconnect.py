"""Client hang-ups before the first byte: cancel the handler, and the upstream call with it.

Once the request body is in, the only message `receive` can still bring is
`http.disconnect`. One task per AI request waits for it. If it comes before the handler
has started its response, the handler is cancelled (no quota spent on an answer nobody
reads) and returns without a response, which the monitor records as 499. Once the
response has started, the message is handed to whoever asks for it (StreamingResponse
listens for it itself). No polling: the task sleeps in the server's `receive`.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agproxy.server.zones import Zone, zone_of


class DisconnectMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or zone_of(scope["path"]) is not Zone.AI:
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        watch = _Watch(receive, send, task)
        try:
            await self.app(scope, watch.receive, watch.send)
        except asyncio.CancelledError:
            # Our own cancel ends the request quietly; any other (shutdown) goes on.
            if not watch.cancelled or task.uncancel() > 0:
                raise
        finally:
            watch.stop()


class _Watch:
    __slots__ = ("_receive", "_send", "task", "watcher", "started", "cancelled")

    def __init__(self, receive: Receive, send: Send, task: asyncio.Task[object]) -> None:
        self._receive = receive
        self._send = send
        self.task = task
        self.watcher: asyncio.Task[Message] | None = None
        self.started = False
        self.cancelled = False

    async def receive(self) -> Message:
        if self.watcher is not None:
            # The watcher owns the server's receive now: share what it got. `wait` (not
            # awaiting the task itself) so that a cancelled caller leaves the watcher be.
            await asyncio.wait((self.watcher,))
            return self.watcher.result()
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.watcher = asyncio.get_running_loop().create_task(self._watch())
        return message

    async def _watch(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.started:
            self.cancelled = True
            self.task.cancel()
        return message

    async def send(self, message: Message) -> None:
        self.started = True
        await self._send(message)

    def stop(self) -> None:
        if self.watcher is not None and not self.watcher.done():
            self.watcher.cancel()
