"""Load generator for the benchmark (runs in its own process so its CPU is not the
gateway's). Prints one JSON object with latency figures.

Usage: python bench/load.py URL BODY_FILE CONCURRENCY REQUESTS [sse] [hold] [ramp=S] [key=K]
  URL: one, or several joined by commas: the requests take them in turn (so two
       gateways compared share the same moments of a noisy machine).
  `sse`: read the response as a stream and record time to first byte.
  `hold`: open REQUESTS streams together (the many-open-streams scenario); with
          `ramp=S` their starts are spread evenly over S seconds, else all at once.
  `key=K`: send `Authorization: Bearer K` (a client key).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import aiohttp
import orjson
import uvloop


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def main() -> None:
    urls, body_file = sys.argv[1].split(","), sys.argv[2]
    conc, total = int(sys.argv[3]), int(sys.argv[4])
    sse = "sse" in sys.argv[5:]
    hold = "hold" in sys.argv[5:]
    ramp = next((float(a[5:]) for a in sys.argv[5:] if a.startswith("ramp=")), 0.0)
    with open(body_file, "rb") as f:
        body = f.read()
    headers = {"Content-Type": "application/json"}
    key = next((a[4:] for a in sys.argv[5:] if a.startswith("key=")), None)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    latencies: list[float] = []
    ttfbs: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        counter = iter(range(total))

        async def one(number: int) -> None:
            url = urls[number % len(urls)]
            start = time.perf_counter()
            first: float | None = None
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        errors.append(f"{response.status} {(await response.read())[:200]!r}")
                        return
                    if sse:
                        async for _chunk in response.content.iter_any():
                            if first is None:
                                first = time.perf_counter() - start
                    else:
                        await response.read()
            except Exception as exc:  # noqa: BLE001 - counted, reported
                errors.append(repr(exc)[:200])
                return
            latencies.append(time.perf_counter() - start)
            if first is not None:
                ttfbs.append(first)

        async def worker() -> None:
            for number in counter:
                await one(number)

        began = time.perf_counter()

        async def later(number: int, delay: float) -> None:
            await asyncio.sleep(delay)
            await one(number)

        if hold:
            await asyncio.gather(*(later(i, i * ramp / total) for i in range(total)))
        else:
            await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - began
    ms = 1000.0
    print(
        orjson.dumps(
            {
                "requests": len(latencies),
                "errors": len(errors),
                "first_errors": errors[:3],
                "wall_s": wall,
                "rps": len(latencies) / wall if wall else 0,
                "p50_ms": pct(latencies, 50) * ms,
                "p99_ms": pct(latencies, 99) * ms,
                "mean_ms": (statistics.fmean(latencies) * ms) if latencies else None,
                "ttfb_p50_ms": pct(ttfbs, 50) * ms if ttfbs else None,
                "ttfb_p99_ms": pct(ttfbs, 99) * ms if ttfbs else None,
            }
        ).decode()
    )


if __name__ == "__main__":
    uvloop.run(main())
