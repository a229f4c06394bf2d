"""The fake upstream of bench/fake_upstream.py (same endpoints, same answers) without
uvicorn and ASGI: raw asyncio protocols on uvloop with the httptools parser, answering
from the parser's callbacks, no task per request. It needs a fraction of the CPU per
request, which on a small machine is CPU left to the gateway (bench/workers.py).

Usage: python bench/lean_upstream.py PORT [--stream-hold S]
"""

from __future__ import annotations

import asyncio
import socket
import sys

import httptools
import orjson
import uvloop
from fake_upstream import EVENTS, LOAD, MODELS, REPLY

HOLD = 0.0
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
NOT_FOUND = b'{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def answer(payload: bytes, status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        len(payload),
        payload,
    )


GENERATED = answer(REPLY)
FIRST, LAST = STREAM_HEAD + chunk(EVENTS[0]), chunk(EVENTS[1]) + b"0\r\n\r\n"


class Fake(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = b""
        self.auth = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.body, self.auth = b"", b"", b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.auth = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        transport = self.transport
        assert transport is not None
        path = self.url.partition(b"?")[0]
        if path.endswith(b":streamGenerateContent"):
            transport.write(FIRST)
            if HOLD:
                asyncio.get_running_loop().call_later(HOLD, self._finish, transport)
            else:
                transport.write(LAST)
        elif path.endswith(b":generateContent"):
            transport.write(GENERATED)
        else:
            transport.write(self._other(path))
        if not self.parser.should_keep_alive():
            transport.close()

    @staticmethod
    def _finish(transport: asyncio.Transport) -> None:
        if not transport.is_closing():
            transport.write(LAST)

    def _other(self, path: bytes) -> bytes:
        if path.endswith(b":countTokens"):
            return answer(b'{"totalTokens": 5}')
        if path == b"/token":
            form = dict(p.split("=", 1) for p in self.body.decode().split("&") if "=" in p)
            token = "ya29." + form.get("refresh_token", "x")
            return answer(
                orjson.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
            )
        if path.endswith(b"/userinfo"):
            email = self.auth.decode().rsplit(".", 1)[-1] + "@example.com"
            return answer(orjson.dumps({"email": email}))
        if path.endswith(b":loadCodeAssist"):
            return answer(LOAD)
        if path.endswith(b":fetchAvailableModels"):
            return answer(MODELS)
        return answer(NOT_FOUND, b"404 Not Found")


async def main() -> None:
    global HOLD
    port = int(sys.argv[1])
    if "--stream-hold" in sys.argv:
        HOLD = float(sys.argv[sys.argv.index("--stream-hold") + 1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    # create_server listens again, with its own backlog (100 unless told): 1,000
    # connections at once would overflow it and wait a second for a SYN to be resent.
    server = await asyncio.get_running_loop().create_server(Fake, sock=sock, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
