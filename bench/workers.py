"""Benchmark: one gateway process against `agproxy serve --workers 2`.

Three gateways run side by side on one fake upstream, each on its own port and data
directory (four accounts): today's default (one process, no Redis), one process with
`redis_url` set, and `--workers 2` with `redis_url` set. The last two each have a
throwaway redis-server of their own that the bench starts and stops, so between them
the worker count is the only difference. Measured for each:

- Gemini generateContent (not streamed) at concurrency 16: requests/s, and the CPU
  milliseconds per request of the gateway's processes (and of its redis-server);
- 1,000 streams opened in the same instant: time to first byte, p50 and p99, from that
  instant (connecting included); the fake holds every stream open HOLD s after its
  first event, so all 1,000 are open together.

The load generator, the fake and Redis share the machine's cores with the gateway. How
they are kept from starving its workers (measured on a 2-core machine, --workers 2):
- the load generator is bench/rawload.py (raw asyncio protocols on uvloop, requests
  prebuilt as bytes): 0.02-0.04 ms of CPU per request, against 0.11-0.13 ms for
  bench/load.py's aiohttp client (and 0.07 s start-up per run against 0.2 s); the fake
  is bench/lean_upstream.py (httptools, no ASGI): 0.015-0.025 ms per request, against
  0.05-0.08 ms for bench/fake_upstream.py (uvicorn). Together
  they cost about a tenth of the gateway's CPU per request instead of half of it: in
  an A/B run, --workers 2 went from 2,322 to 3,373 req/s and its 1,000-stream TTFB
  p50 from 486 to 258 ms;
- both run at nice NICE, so that a worker wanting a core gets it first. Measured: no
  effect beyond the noise either way (pinning them to one core instead was a little
  worse: it takes that core from a worker), kept for the intent;
- each gateway is warmed up (its upstream pool too) before anything is measured; then
  several rounds alternate the three gateways, and the medians are reported;
- before each measurement the bench waits (QUIET_WAIT s at most) until other programs
  use less than QUIET_CORES cores, and it reports what they used during the
  measurements. Contention on the host (other virtual machines) is invisible from
  inside: it shows as a higher gateway CPU ms per request.

Usage: python bench/workers.py [--quick]   (also run at the end of bench/run.py)
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).parent))
from run import (  # noqa: E402
    CLIENT_BODY,
    DIRECT_BODY,
    MODEL,
    PY,
    free_port,
    gateway_env,
    tree_cpu,
    wait_http,
)

HERE = Path(__file__).parent
QUICK = "--quick" in sys.argv
RPS_ROUNDS = 1 if QUICK else 5
BURST_ROUNDS = 1 if QUICK else 3
RPS_CONCURRENCY = 16
RPS_REQUESTS = 1000 if QUICK else 2000
STREAMS = 1000
HOLD = 1.5  # seconds each stream stays open after its first event
QUIET_CORES = 0.15  # before each measurement, wait until other programs use less…
QUIET_WAIT = 5.0  # …but at most this long
STOP_WAIT = 30.0
NICE = 10  # the load generator's and the fake's priority (higher: lower priority)
TTFB_GOAL_MS = 250
RPS_GOAL = 1.4


def lower_priority() -> None:
    os.nice(NICE)


def start_fake(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [PY, str(HERE / "lean_upstream.py"), str(port), "--stream-hold", str(HOLD)],
        preexec_fn=lower_priority,
    )
    wait_http(f"http://127.0.0.1:{port}/nothing")
    return proc


def start_redis() -> tuple[subprocess.Popen[bytes], str, Path]:
    """A redis-server of its own (as tests/servers.py starts them): free port, no saving."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt install redis-server)")
    port, directory = free_port(), Path(tempfile.mkdtemp(prefix="agproxy-bench-redis-"))
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return proc, url, directory
            time.sleep(0.05)
    finally:
        client.close()
    proc.kill()
    raise RuntimeError(f"redis-server did not answer on port {port}")


@dataclass
class Setup:
    label: str
    workers: int
    redis_url: str | None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None
    redis_ps: psutil.Process | None = None
    log: Path | None = None
    log_lines: list[str] = field(default_factory=list)
    hung: bool = False
    rps: list[dict[str, float]] = field(default_factory=list)
    bursts: list[dict[str, float]] = field(default_factory=list)

    def stop(self) -> None:
        """Wait for the SIGTERM sent to end it; one that hangs is killed (and reported)."""
        assert self.proc is not None and self.ps is not None
        try:
            self.proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.hung = True
            for p in [*self.ps.children(recursive=True), self.ps]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            self.proc.wait(10)

    def url(self, method: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1beta/models/{MODEL}:{method}"

    def cpu(self) -> float:
        assert self.ps is not None
        return tree_cpu(self.ps)

    def worker_cpu(self) -> list[float]:
        """Each serving process's CPU: the workers under `--workers N`, else the one."""
        assert self.ps is not None
        kids = self.ps.children() or [self.ps]
        out = []
        for p in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                out.append(t.user + t.system)
        return out

    def redis_cpu(self) -> float:
        if self.redis_ps is None:
            return 0.0
        t = self.redis_ps.cpu_times()
        return t.user + t.system


def redis_calls(url: str | None) -> int:
    """Commands the redis-server has run (but INFO itself)."""
    if url is None:
        return 0
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def prepare(data: Path, fake_url: str) -> None:
    """A data directory with four accounts (copied for each gateway)."""
    env = gateway_env(data, fake_url, free_port())

    def add(n: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [PY, "-m", "agproxy", "accounts", "add", "--refresh-token", f"bench{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    first = [add(0)]  # creates the database; the other three together
    for proc in first + [add(n) for n in range(1, 4) if first[0].wait() == 0]:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(err.decode())


def start(setup: Setup, data: Path, fake_url: str) -> None:
    env = gateway_env(data, fake_url, setup.port)
    if setup.redis_url:
        env["AGPROXY_REDIS_URL"] = setup.redis_url
    setup.log = data / "serve.log"
    with setup.log.open("wb") as log:
        setup.proc = subprocess.Popen(
            [PY, "-m", "agproxy", "serve", "--log-level", "warning"]
            + ["--workers", str(setup.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    setup.ps = psutil.Process(setup.proc.pid)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def rawload(body_file: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [PY, str(HERE / "rawload.py"), *args[:2], body_file, *args[2:]],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lower_priority,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


class Meter:
    """CPU spent during one measurement: by the gateway under test, its redis-server,
    the fake, the load generator, and everything else on the machine."""

    def __init__(self, setup: Setup, setups: list[Setup], fake: psutil.Process) -> None:
        self.setup, self.setups, self.fake = setup, setups, fake

    def __enter__(self) -> Meter:
        self.t0 = self._sample()
        return self

    def _sample(self) -> dict[str, Any]:
        return {
            "gw": self.setup.cpu(),
            "workers": self.setup.worker_cpu(),
            "redis": self.setup.redis_cpu(),
            "fake": tree_cpu(self.fake),
            "ours": sum(s.cpu() + s.redis_cpu() for s in self.setups)
            + tree_cpu(self.fake)
            + sum(psutil.Process().cpu_times()[:2])
            + children_cpu(),
            "busy": machine_busy(),
            "wall": time.perf_counter(),
        }

    def __exit__(self, *exc: object) -> None:
        t1 = self._sample()
        self.spent = {k: t1[k] - self.t0[k] for k in ("gw", "redis", "fake", "wall")}
        workers = [b - a for a, b in zip(self.t0["workers"], t1["workers"], strict=False)]
        self.spent["split"] = max(workers) / max(sum(workers), 1e-9) if len(workers) > 1 else 1
        others = (t1["busy"] - self.t0["busy"]) - (t1["ours"] - self.t0["ours"])
        self.spent["others_cores"] = max(others, 0.0) / self.spent["wall"]


WAITED = [0.0]


def settle(setups: list[Setup], fake: psutil.Process) -> None:
    """Wait (QUIET_WAIT s at most) until other programs leave the cores to the bench."""
    began = time.perf_counter()
    while time.perf_counter() - began < QUIET_WAIT:
        with Meter(setups[0], setups, fake) as m:
            time.sleep(0.25)
        if m.spent["others_cores"] < QUIET_CORES:
            break
    WAITED[0] += time.perf_counter() - began


def rps_round(setup: Setup, setups: list[Setup], fake: psutil.Process, body: str) -> None:
    settle(setups, fake)
    calls = redis_calls(setup.redis_url)
    with Meter(setup, setups, fake) as m:
        res = rawload(
            body, "rps", setup.url("generateContent"), str(RPS_CONCURRENCY), str(RPS_REQUESTS)
        )
    calls = redis_calls(setup.redis_url) - calls
    n = max(res["requests"], 1)
    setup.rps.append(
        {
            "rps": res["rps"],
            "p50_ms": res["p50_ms"],
            "errors": res["errors"],
            "cpu_ms": m.spent["gw"] * 1000 / n,
            "redis_ms": m.spent["redis"] * 1000 / n,
            "redis_calls": calls / n,
            "fake_ms": m.spent["fake"] * 1000 / n,
            "load_ms": res["cpu_s"] * 1000 / n,
            "split": m.spent["split"],
            "others": m.spent["others_cores"],
        }
    )
    if res["errors"]:
        print(f"  {setup.label}: errors {res['first_errors']}", file=sys.stderr)


def burst_round(setup: Setup, setups: list[Setup], fake: psutil.Process, body: str) -> None:
    settle(setups, fake)
    with Meter(setup, setups, fake) as m:
        res = rawload(body, "burst", setup.url("streamGenerateContent?alt=sse"), str(STREAMS))
    n = max(res["requests"], 1)
    setup.bursts.append(
        {
            "p50": res["ttfb_p50_ms"],
            "p99": res["ttfb_p99_ms"],
            "errors": res["errors"],
            "cpu_ms": m.spent["gw"] * 1000 / n,
            "load_s": res["cpu_s"],
            "split": m.spent["split"],
            "others": m.spent["others_cores"],
        }
    )
    if res["errors"]:
        print(f"  {setup.label}: errors {res['first_errors']}", file=sys.stderr)


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def rounds(rows: list[dict[str, float]], key: str) -> str:
    return " / ".join(f"{r[key]:.0f}" for r in rows)


def report(setups: list[Setup], floor: dict[str, Any], wall: float) -> None:
    print(
        f"\n## One process against --workers 2 ({wall:.0f} s; medians of {RPS_ROUNDS} req/s "
        f"rounds and {BURST_ROUNDS} burst rounds, the gateways alternating)\n"
    )
    print(
        f"| gateway | gemini c{RPS_CONCURRENCY} req/s (rounds) | gateway CPU ms/req "
        "(+ redis-server) | 1,000 streams at once: TTFB p50 / p99 ms (p50 of each round) | "
        "gateway CPU ms/stream | errors |"
    )
    print("|---|---|---|---|---|---|")
    for s in setups:
        redis_part = f" (+ {med(s.rps, 'redis_ms'):.3f})" if s.redis_url else ""
        errors = sum(r["errors"] for r in s.rps + s.bursts)
        print(
            f"| {s.label} | {med(s.rps, 'rps'):.0f} ({rounds(s.rps, 'rps')}) | "
            f"{med(s.rps, 'cpu_ms'):.3f}{redis_part} | "
            f"{med(s.bursts, 'p50'):.0f} / {med(s.bursts, 'p99'):.0f} "
            f"({rounds(s.bursts, 'p50')}) | {med(s.bursts, 'cpu_ms'):.2f} | {errors} |"
        )
    one, two = setups[1], setups[2]
    ratio = med(two.rps, "rps") / med(one.rps, "rps")
    each = ", ".join(f"{b['rps'] / a['rps']:.2f}" for a, b in zip(one.rps, two.rps, strict=True))
    p50 = med(two.bursts, "p50")
    print(
        f"\n--workers 2 against 1 process, both with Redis: c{RPS_CONCURRENCY} req/s "
        f"x{ratio:.2f} (each round: {each}; goal >= {RPS_GOAL}: "
        f"{'met' if ratio >= RPS_GOAL else 'NOT met'}); 1,000-stream TTFB p50 {p50:.0f} ms "
        f"(goal <= {TTFB_GOAL_MS} ms: {'met' if p50 <= TTFB_GOAL_MS else 'NOT met'})"
    )
    print(
        f"the same burst straight to the fake (load generator, kernel and fake alone): TTFB "
        f"p50 {floor['ttfb_p50_ms']:.0f} / p99 {floor['ttfb_p99_ms']:.0f} ms"
    )
    every = [r for s in setups for r in s.rps]
    streams = [r for s in setups for r in s.bursts]
    print(
        f"CPU outside the gateway: load generator (bench/rawload.py, nice {NICE}) "
        f"{med(every, 'load_ms'):.3f} ms per request, {med(streams, 'load_s') * 1000:.0f} ms "
        f"per 1,000-stream burst; fake upstream (bench/lean_upstream.py, nice {NICE}) "
        f"{med(every, 'fake_ms'):.3f} ms per request"
    )
    print(
        "--workers 2: the busier worker's share of the workers' CPU "
        f"{med(two.rps, 'split') * 100:.0f} % at c{RPS_CONCURRENCY} ({RPS_CONCURRENCY} "
        f"keep-alive connections spread by SO_REUSEPORT), {med(two.bursts, 'split') * 100:.0f} "
        "% in the bursts; Redis commands per request: "
        + ", ".join(f"{s.label} {med(s.rps, 'redis_calls'):.2f}" for s in setups if s.redis_url)
    )
    print(
        "CPU used by other programs during the measurements, in cores (req/s rounds / "
        "bursts): "
        + ", ".join(
            f"{s.label} {med(s.rps, 'others'):.2f} / {med(s.bursts, 'others'):.2f}" for s in setups
        )
        + f"; {WAITED[0]:.0f} s spent waiting for them to drop below {QUIET_CORES} before "
        "the measurements. Contention on the host (other virtual machines) does not show "
        "there: it shows as more gateway CPU ms per request."
    )
    slow = [s.label for s in setups if med(s.bursts, "p99") > HOLD * 1000]
    if slow:
        print(f"note: TTFB p99 above the {HOLD:.0f} s hold for {slow}: not all were open at once")
    for s in setups:
        lines = s.log_lines
        down = [line for line in lines if "went away" in line or "not reachable" in line]
        if down:
            print(
                f"warning: {s.label}: the Redis link went down {len(down)} time(s) (requests "
                f"then skip Redis until it is back): {down[0][-150:]}"
            )
        if s.hung:
            print(f"warning: {s.label} did not stop within {STOP_WAIT:.0f} s of SIGTERM: killed")
        other = [line for line in lines if line not in down and "ERROR" in line]
        if other:
            print(f"warning: {s.label}: {len(other)} error lines in its log: {other[0][-200:]}")


def main() -> None:
    began = time.perf_counter()
    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    fake = start_fake(fake_port)
    fake_ps = psutil.Process(fake.pid)
    redises = [start_redis(), start_redis()]
    template = Path(tempfile.mkdtemp(prefix="agproxy-bench-workers-"))
    setups = [
        Setup("1 process, no Redis (default)", 1, None),
        Setup("1 process + Redis", 1, redises[0][1]),
        Setup("--workers 2 + Redis", 2, redises[1][1]),
    ]
    setups[1].redis_ps = psutil.Process(redises[0][0].pid)
    setups[2].redis_ps = psutil.Process(redises[1][0].pid)
    bodies = []
    for payload in (CLIENT_BODY, DIRECT_BODY):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(payload, f)
        bodies.append(f.name)
    body, direct_body = bodies
    try:
        prepare(template / "seed", fake_url)
        for i, s in enumerate(setups):
            shutil.copytree(template / "seed", template / str(i))
            start(s, template / str(i), fake_url)
        for s in setups:
            wait_http(f"http://127.0.0.1:{s.port}/healthz", timeout=60, want=200)
        time.sleep(1.0)  # every worker up (the first to answer is not the last)
        for s in setups:  # warm-up: connections, caches, the upstream pool
            rawload(body, "rps", s.url("generateContent"), str(RPS_CONCURRENCY), "500")
            rawload(body, "burst", s.url("streamGenerateContent?alt=sse"), str(STREAMS))
        floor = rawload(
            direct_body, "burst", f"{fake_url}/v1internal:streamGenerateContent?alt=sse", "1000"
        )
        for n in range(RPS_ROUNDS):
            for s in setups if n % 2 == 0 else setups[::-1]:
                rps_round(s, setups, fake_ps, body)
        for n in range(BURST_ROUNDS):
            for s in setups if n % 2 == 0 else setups[::-1]:
                burst_round(s, setups, fake_ps, body)
    finally:
        for s in setups:
            if s.proc is not None:
                s.proc.send_signal(signal.SIGTERM)
        for s in setups:
            if s.proc is not None:
                s.stop()
            if s.log is not None:
                s.log_lines = s.log.read_text(errors="replace").splitlines()
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)
        for proc, _, directory in redises:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(directory, ignore_errors=True)
        for name in bodies:
            os.unlink(name)
        shutil.rmtree(template, ignore_errors=True)
    report(setups, floor, time.perf_counter() - began)


if __name__ == "__main__":
    main()
