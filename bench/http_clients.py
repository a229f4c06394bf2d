"""Which async HTTP client should carry upstream traffic? Measure, don't guess.

Runs a tiny local HTTP server (uvicorn + a raw ASGI app answering a 1 KiB JSON body,
and an SSE stream of 20 events) and drives it with aiohttp and httpx, each with one
pooled keep-alive client, N requests at concurrency C. Prints wall time and process
CPU per request for each client. Usage: python bench/http_clients.py [N] [C]
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

import aiohttp
import httpx
import uvicorn

BODY = b'{"response":{"candidates":[{"content":{"parts":[{"text":"' + b"x" * 900 + b'"}]}}]}}'
EVENT = b"data: " + BODY[:200] + b"\n\n"


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/sse":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for _ in range(20):
            await send({"type": "http.response.body", "body": EVENT, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def serve() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="error", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    time.sleep(1.0)
    return port


async def run_aiohttp(url: str, n: int, c: int, stream: bool) -> None:
    conn = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(connector=conn) as session:
        sem = asyncio.Semaphore(c)

        async def one() -> None:
            async with sem, session.post(url, data=b'{"a":1}') as r:
                if stream:
                    async for _line in r.content:
                        pass
                else:
                    await r.read()

        await asyncio.gather(*(one() for _ in range(n)))


async def run_httpx(url: str, n: int, c: int, stream: bool) -> None:
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(limits=limits) as client:
        sem = asyncio.Semaphore(c)

        async def one() -> None:
            async with sem:
                if stream:
                    async with client.stream("POST", url, content=b'{"a":1}') as r:
                        async for _line in r.aiter_lines():
                            pass
                else:
                    r = await client.post(url, content=b'{"a":1}')
                    r.read()

        await asyncio.gather(*(one() for _ in range(n)))


def measure(name: str, fn, url: str, n: int, c: int, stream: bool) -> None:  # type: ignore[no-untyped-def]
    import uvloop

    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    runner.run(fn(url, 50, c, stream))  # warm-up
    t0, cpu0 = time.perf_counter(), time.thread_time()
    runner.run(fn(url, n, c, stream))
    wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    runner.close()
    kind = "sse " if stream else "json"
    print(f"{name:8} {kind}  {n / wall:8.0f} req/s   client CPU {cpu / n * 1e6:7.0f} µs/req")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    port = serve()
    for stream in (False, True):
        url = f"http://127.0.0.1:{port}/" + ("sse" if stream else "json")
        for name, fn in (("aiohttp", run_aiohttp), ("httpx", run_httpx)):
            measure(name, fn, url, n, c, stream)


if __name__ == "__main__":
    main()
