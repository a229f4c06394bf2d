"""Listening sockets served by uvicorn, movable to a new address while the process runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from agproxy.config import Settings
from agproxy.net.connection import limited_protocol

log = logging.getLogger("agproxy.server")

WS_QUEUED_MESSAGES = 4


class BindError(Exception):
    def __init__(self, host: str, port: int, exc: OSError) -> None:
        reason = f"{exc.strerror} (os error {exc.errno})" if exc.strerror else str(exc)
        self.message = f"failed to start server: failed to bind address {host}:{port}: {reason}"
        super().__init__(self.message)


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind and listen now, so a taken port is reported before anything else happens.
    `reuse_port`: the workers of one `serve --workers N` all bind it (SO_REUSEPORT; the
    kernel spreads new connections among them). A port held without it stays refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Lets a restarted gateway reuse a port still in TIME_WAIT; never one in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise BindError(host, port, exc) from exc
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    # The gateway owns signal handling for all its listeners.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Listener:
    host: str
    port: int
    server: _Server
    task: asyncio.Task[None]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


def serve_socket(app: ASGIApp, sock: socket.socket, settings: Callable[[], Settings]) -> Listener:
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        http=limited_protocol(settings),
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings().shutdown_timeout),
        # The Responses API's WebSocket: a message is a request body, under the same cap;
        # few wait unread while one is answered (Codex sends one at a time).
        ws_max_size=settings().max_body_bytes,
        ws_max_queue=WS_QUEUED_MESSAGES,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"listener {host}:{port}")
    return Listener(host, port, server, task)


async def close_listener(listener: Listener, force: bool = False) -> None:
    """Stop accepting, let in-flight requests finish (bounded by the graceful timeout)."""
    listener.server.should_exit = True
    if force:
        listener.server.force_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await listener.task
