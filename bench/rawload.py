"""A lean load generator for the workers benchmark (bench/workers.py): raw asyncio
protocols on uvloop, requests built once as bytes, responses parsed just enough to
know where they end. It needs a fraction of the CPU aiohttp needs per request (see
bench/workers.py), so on a small machine more of the cores go to the gateway.

Usage: python bench/rawload.py rps   URL BODY_FILE CONCURRENCY REQUESTS
       python bench/rawload.py burst URL BODY_FILE STREAMS
  rps:   CONCURRENCY keep-alive connections, each sending its next request as soon as
         the previous answer is complete, until REQUESTS are answered.
  burst: STREAMS connections opened in the same instant, each sending one streaming
         request; time to first byte is from that instant to the first `data:` event
         of each stream; the streams are then read to their end.
Prints one JSON object, with `cpu_s`: this process's own CPU time during the load.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from urllib.parse import urlsplit

import orjson
import uvloop


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def request_bytes(url: str, body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode() + body


def body_end(buf: bytes, start: int, length: int | None) -> int:
    """Where the body that begins at `start` ends (-1: not all here yet): `length`
    bytes, or chunked."""
    if length is not None:
        end = start + length
        return end if len(buf) >= end else -1
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2 + size + 2
        if len(buf) < pos:
            return -1
        if size == 0:
            return pos


def parse_head(head: bytes) -> tuple[int, int | None]:
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return status, None  # chunked (the gateway's streams)
    return status, int(lower[at + 17 : lower.find(b"\r\n", at + 17)])


class KeepAlive(asyncio.Protocol):
    """One connection of the rps mode: a request, its answer, the next request, …"""

    def __init__(self, run: RpsRun) -> None:
        self.run = run
        self.buf = b""
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        if not self.run.take():
            assert self.transport is not None
            self.transport.close()
            return
        self.started = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            self.buf = buf
            return
        status, length = parse_head(buf[: head_end + 2])
        end = body_end(buf, head_end + 4, length)
        if end < 0:
            self.buf = buf
            return
        self.buf = buf[end:]
        if status == 200:
            self.run.latencies.append(time.perf_counter() - self.started)
        else:
            self.run.errors.append(f"{status} {buf[head_end + 4 : end][:200]!r}")
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.closed()


class RpsRun:
    def __init__(self, request: bytes, total: int, conc: int) -> None:
        self.request = request
        self.left = total
        self.open = conc
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.done = asyncio.get_running_loop().create_future()

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.done.done():
            self.done.set_result(None)


async def rps(url: str, body: bytes, conc: int, total: int) -> dict:
    host, port, request = request_bytes(url, body)
    loop = asyncio.get_running_loop()
    run = RpsRun(request, total, conc)
    cpu0, began = cpu_seconds(), time.perf_counter()
    await asyncio.gather(
        *(loop.create_connection(lambda: KeepAlive(run), host, port) for _ in range(conc))
    )
    await run.done
    wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu0
    lat = run.latencies
    return {
        "requests": len(lat),
        "errors": len(run.errors),
        "first_errors": run.errors[:3],
        "wall_s": wall,
        "rps": len(lat) / wall if wall else 0,
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "cpu_s": cpu,
    }


class Stream(asyncio.Protocol):
    """One stream of the burst mode."""

    def __init__(self, burst: Burst) -> None:
        self.burst = burst
        self.buf = b""
        self.first: float | None = None
        self.status = 0
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.burst.request)  # type: ignore[attr-defined]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.first is None:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            if not self.status:
                self.status = int(self.buf[9:12])
            if self.status != 200:
                self.transport.close()  # an error: counted with what came of it
                return
            if self.buf.find(b"data:", head_end) < 0:
                return
            self.first = time.perf_counter() - self.burst.began
        if self.buf.endswith(b"\r\n0\r\n\r\n"):
            self.finished = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.burst.ended(self, exc)


class Burst:
    def __init__(self, request: bytes, streams: int) -> None:
        self.request = request
        self.left = streams
        self.ttfbs: list[float] = []
        self.errors: list[str] = []
        self.began = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def ended(self, stream: Stream, exc: Exception | None) -> None:
        if stream.first is not None and stream.finished:
            self.ttfbs.append(stream.first)
        else:
            self.errors.append(f"{stream.status} {exc!r} {stream.buf[-200:]!r}")
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


async def burst(url: str, body: bytes, streams: int) -> dict:
    host, port, request = request_bytes(url, body)
    loop = asyncio.get_running_loop()
    run = Burst(request, streams)

    async def connect() -> None:
        try:
            await loop.create_connection(lambda: Stream(run), host, port)
        except OSError as exc:
            run.errors.append(repr(exc))
            run.left -= 1
            if run.left == 0 and not run.done.done():
                run.done.set_result(None)

    cpu0 = cpu_seconds()
    run.began = time.perf_counter()
    await asyncio.gather(*(connect() for _ in range(streams)))
    await asyncio.wait_for(run.done, 120)
    wall, cpu = time.perf_counter() - run.began, cpu_seconds() - cpu0
    return {
        "requests": len(run.ttfbs),
        "errors": len(run.errors),
        "first_errors": run.errors[:3],
        "wall_s": wall,
        "ttfb_p50_ms": pct(run.ttfbs, 50) * 1000,
        "ttfb_p99_ms": pct(run.ttfbs, 99) * 1000,
        "cpu_s": cpu,
    }


async def main() -> None:
    mode, url, body_file = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(body_file, "rb") as f:
        body = f.read()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if mode == "rps":
        result = await rps(url, body, int(sys.argv[4]), int(sys.argv[5]))
    else:
        result = await burst(url, body, int(sys.argv[4]))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    uvloop.run(main())
