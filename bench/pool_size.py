"""Benchmark: does a big pool cost more per request than a small one?

Runs two gateways side by side on one fake upstream, one with 3 accounts and one with
1,000 (imported in one `agproxy accounts import`), and sends both the same Gemini
generate load at the same time, the requests alternating between them, so a noisy
machine (background work, a busy core) affects both alike. Two kinds of request: one
conversation (every request carries the same first user text, so the sticky session
keeps it on one account) and no conversation (a text of 10 characters or fewer has no
session key, so every request is a fresh pick in the rotation). Reports the gateway's
CPU milliseconds per request for each pool, the difference, and whether it stays
within 0.05 ms (the goal: a pool of any size costs the same).

Usage: python bench/pool_size.py [--quick]  (bench/run.py runs it too)
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from run import (  # noqa: E402
    CLIENT_BODY,
    MODEL,
    PY,
    free_port,
    gateway_env,
    load,
    start_fake,
    start_gateway,
    tree_cpu,
)

QUICK = "--quick" in sys.argv
SIZES = (3, 1000)
BUDGET_MS = 0.05
ROUNDS = 3 if QUICK else 4
COUNT = 300 if QUICK else 600  # requests per gateway and round
WARM_UP = 300  # requests per gateway before the rounds
NO_SESSION_BODY = {"contents": [{"role": "user", "parts": [{"text": "Hi there"}]}]}
LOADS = (  # (name, body, concurrency)
    ("one conversation (sticky)", CLIENT_BODY, 1),
    ("no conversation (rotation)", NO_SESSION_BODY, 1),
    ("no conversation (rotation)", NO_SESSION_BODY, 16),
)


def cpu_time(proc: psutil.Process) -> float:
    """CPU seconds of the process's threads and its children's. Linux's schedstat counts
    nanoseconds; psutil's figures tick in 10 ms, 0.01 ms on a round of 1,000 requests,
    a fifth of the budget. psutil's where there is no schedstat."""
    if not Path("/proc/self/task").is_dir():
        return tree_cpu(proc)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        for task in Path(f"/proc/{p.pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError):  # a thread that has just ended
                total += int(task.read_text().split()[0])
    return total / 1e9


def start_pool(fake_url: str, size: int) -> tuple[subprocess.Popen[bytes], str]:
    """A gateway with `size` accounts (the fake accepts any refresh token); its URL."""
    data = Path(tempfile.mkdtemp(prefix=f"agproxy-bench-pool{size}-"))
    port = free_port()
    env = gateway_env(data, fake_url, port)
    tokens = data / "tokens.txt"
    tokens.write_text("".join(f"pool{size}-{n}\n" for n in range(size)))
    began = time.perf_counter()
    subprocess.run(
        [PY, "-m", "agproxy", "accounts", "import", str(tokens)],
        env=env,
        check=True,
        capture_output=True,
    )
    print(f"{size:,} accounts imported in {time.perf_counter() - began:.1f} s", flush=True)
    proc, _ = start_gateway(env, port)
    return proc, f"http://127.0.0.1:{port}/v1beta/models/{MODEL}:generateContent"


class Row(NamedTuple):
    load: str
    concurrency: int
    small: float  # CPU ms per request, medians of the rounds
    big: float
    difference: float  # median of the rounds' differences: both served each round together


def measure(fake_url: str) -> list[Row]:
    gateways = {size: start_pool(fake_url, size) for size in SIZES}
    processes = {size: psutil.Process(proc.pid) for size, (proc, _) in gateways.items()}
    cpu: dict[tuple[int, int], list[float]] = {}  # (load, size) → CPU ms/request per round
    try:
        for round_no in range(ROUNDS + 1):  # the first round warms up, not counted
            order = SIZES if round_no % 2 == 0 else SIZES[::-1]
            urls = ",".join(gateways[size][1] for size in order)
            for index, (_, body, conc) in enumerate(LOADS):
                before = {size: cpu_time(p) for size, p in processes.items()}
                done = load(urls, body, conc, len(SIZES) * (COUNT if round_no else WARM_UP))
                assert done["errors"] == 0, done["first_errors"]
                for size, p in processes.items():
                    used = (cpu_time(p) - before[size]) * 1000 / COUNT
                    if round_no:
                        cpu.setdefault((index, size), []).append(used)
    finally:
        for proc, _ in gateways.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    rows = []
    for index, (name, _, conc) in enumerate(LOADS):
        small, big = cpu[(index, SIZES[0])], cpu[(index, SIZES[1])]
        differences = [b - s for s, b in zip(small, big, strict=True)]
        rows.append(
            Row(
                name,
                conc,
                statistics.median(small),
                statistics.median(big),
                statistics.median(differences),
            )
        )
    return rows


def report(rows: list[Row]) -> None:
    print(
        f"\nPool size: gateway CPU ms per request, {SIZES[0]} accounts against {SIZES[1]:,}; "
        f"Gemini generate, both gateways loaded together, medians of {ROUNDS} rounds of "
        f"{COUNT} requests each (the difference: the median of the rounds' differences)\n"
    )
    print(f"| load | conc | {SIZES[0]} accounts | {SIZES[1]:,} accounts | difference | within |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        within = "yes" if r.difference <= BUDGET_MS else "NO"
        print(
            f"| {r.load} | {r.concurrency} | {r.small:.3f} | {r.big:.3f} | "
            f"{r.difference:+.3f} | {within} ({BUDGET_MS} ms) |"
        )


def main() -> None:
    fake_port = free_port()
    fake = start_fake(fake_port)
    try:
        rows = measure(f"http://127.0.0.1:{fake_port}")
    finally:
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)
    report(rows)


if __name__ == "__main__":
    main()
