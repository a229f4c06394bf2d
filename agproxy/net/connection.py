"""Limits on what a connection may cost before the gateway knows who is calling.

uvicorn's httptools protocol reads headers of any size and number and waits for them
forever; a client (or a hang-up that never came) could hold memory and sockets that
way before auth runs. This protocol adds, from the settings of the moment:
- `header_timeout_seconds`: the request line and headers must arrive within it (408);
- `max_header_bytes` and `max_header_count`: beyond them the request gets 431;
- `idle_timeout_seconds`: a keep-alive connection with no request is closed (uvicorn's
  own keep-alive timer, set per connection from the setting).
Each refusal is answered with `Connection: close` and the connection is closed.

It also notices a client that hangs up on an AI request before its answer starts, and
cancels that request (see middleware/disconnect.py): here it costs nothing per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from agproxy.config import Settings
from agproxy.zones import Zone, zone_of

# Set in the scope of a request whose client hung up before its answer began (see
# middleware/disconnect.py, which ends that request quietly).
HUNG_UP = "agproxy.hung_up"


class _Refused(Exception):
    pass


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    settings: Callable[[], Settings]  # set by limited_protocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.settings()
        self.timeout_keep_alive = current.idle_timeout_seconds  # type: ignore[assignment]
        self._header_timeout = current.header_timeout_seconds
        self._max_bytes = current.max_header_bytes
        self._max_count = current.max_header_count
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._refusal: tuple[int, bytes] | None = None

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        cycle = self.cycle
        task: asyncio.Task[None] | None = getattr(cycle, "agproxy_task", None)
        if (
            cycle is not None
            and task is not None
            and not task.done()
            and not cycle.response_started
            and not cycle.more_body
            and zone_of(cycle.scope["path"]) is Zone.AI
        ):
            cycle.scope[HUNG_UP] = True  # type: ignore[literal-required]
            task.cancel()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn's own, keeping the task so that a hang-up can cancel it.
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        cycle.agproxy_task = task  # type: ignore[attr-defined]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._start_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(self.headers) >= self._max_count:
            self._refuse(
                431,
                f"too many request headers: the limit is {self._max_count} "
                "(setting max_header_count)",
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_bytes:
            self._refuse(
                431,
                f"request headers too large: the limit is {self._max_bytes} "
                "bytes (setting max_header_bytes)",
            )

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = (status, message.encode())
        raise _Refused  # httptools stops parsing; uvicorn calls send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, body = self._refusal
        self._write_and_close(status, body)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._write_and_close(
                408, b"request headers not received in time (setting header_timeout_seconds)"
            )

    def _write_and_close(self, status: int, body: bytes) -> None:
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


def limited_protocol(settings: Callable[[], Settings]) -> type[HttpToolsProtocol]:
    """The protocol class for one listener, reading its limits from `settings` as each
    connection opens (a changed setting applies to the next connection)."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"settings": staticmethod(settings)},
    )
