"""A small real SOCKS5 server for the tests: RFC 1928 CONNECT, with no authentication or
with RFC 1929 username/password, on a free 127.0.0.1 port, in a thread of its own.

    with SocksServer(login=("alice", "pw")) as socks:
        ...  # point a client at socks.url("socks5h")
        assert socks.connects == [Connect("localhost", 8080, "domain")]

It records every destination it connected to and every login it was offered. It imports
nothing from agproxy: it is the outside world.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

VERSION = 5
NO_AUTH, USER_PASSWORD, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CONNECT = 1
IPV4, DOMAIN, IPV6 = 1, 3, 4
SUCCEEDED, FAILURE, REFUSED, COMMAND_NOT_SUPPORTED = 0x00, 0x01, 0x05, 0x07


@dataclass(frozen=True)
class Connect:
    host: str
    port: int
    kind: str  # how the client named the host: "ipv4", "ipv6" or "domain"


@dataclass
class SocksServer:
    login: tuple[str, str] | None = None  # required user and password; None: no auth
    connects: list[Connect] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # user, password, ok
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, scheme: str = "socks5", user: str | None = None, password: str = "") -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> SocksServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()

        async def main() -> None:
            server = await asyncio.start_server(self._serve, sock=sock)
            ready.set()
            await self._stopping.wait()
            server.close()
            others = asyncio.all_tasks() - {asyncio.current_task()}
            for task in others:  # the connections still open
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        def run() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="socks5", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    def __enter__(self) -> SocksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one client ------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await self._greet(reader, writer):
                await self._connect(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Method selection (RFC 1928 §3) and, when a login is required, RFC 1929."""
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != VERSION:
            return False
        wanted = USER_PASSWORD if self.login else NO_AUTH
        if wanted not in methods:
            writer.write(bytes([VERSION, NO_ACCEPTABLE]))
            return False
        writer.write(bytes([VERSION, wanted]))
        if not self.login:
            return True
        _subversion, length = await reader.readexactly(2)
        user = (await reader.readexactly(length)).decode()
        (length,) = await reader.readexactly(1)
        password = (await reader.readexactly(length)).decode()
        ok = (user, password) == self.login
        self.logins.append((user, password, ok))
        writer.write(bytes([1, SUCCEEDED if ok else FAILURE]))
        return ok

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The request (RFC 1928 §4): CONNECT only, then bytes both ways until one side ends."""
        version, command, _reserved, kind = await reader.readexactly(4)
        if kind == IPV4:
            host, named = str(ipaddress.IPv4Address(await reader.readexactly(4))), "ipv4"
        elif kind == IPV6:
            host, named = str(ipaddress.IPv6Address(await reader.readexactly(16))), "ipv6"
        else:
            (length,) = await reader.readexactly(1)
            host, named = (await reader.readexactly(length)).decode(), "domain"
        port = int.from_bytes(await reader.readexactly(2), "big")
        if version != VERSION or command != CONNECT:
            writer.write(_reply(COMMAND_NOT_SUPPORTED))
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.write(_reply(REFUSED))
            return
        self.connects.append(Connect(host, port, named))
        writer.write(_reply(SUCCEEDED))
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


def _reply(code: int) -> bytes:
    return bytes([VERSION, code, 0, IPV4, 0, 0, 0, 0, 0, 0])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()
