"""Benchmark: what the gateway adds on top of calling the upstream directly.

Starts a lean fake upstream (bench/fake_upstream.py, answering at once) and
`agproxy serve` with four accounts, then for each scenario runs the same load
(bench/load.py, its own process) against the fake directly and through the gateway,
in the same run, and reports requests/s, added p50/p99 latency, added stream
time-to-first-byte and the gateway's CPU milliseconds per request (all its
processes). Also: time until /healthz answers 200, idle RSS, 1,000 concurrent
open streams with peak RSS, and the CPU per request of a pool of 1,000 accounts
against one of 3 (bench/pool_size.py). Then bench/workers.py: one process against
--workers 2.

Usage: python bench/run.py [--quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # make_client_key uses this checkout's agproxy too
PY = sys.executable
QUICK = "--quick" in sys.argv
MODEL = "gemini-3-flash"
CLIENT_BODY = {
    "contents": [{"role": "user", "parts": [{"text": "Hello, please introduce yourself"}]}]
}
CHAT_BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Hello, please introduce yourself"}],
}
MESSAGES_BODY = {**CHAT_BODY, "max_tokens": 256}
DIRECT_BODY = {
    "project": "bench-project",
    "model": MODEL,
    "userAgent": "antigravity",
    "requestType": "agent",
    "requestId": "agent/1/abcd",
    "request": CLIENT_BODY,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, want: int | None = None) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            status = httpx.get(url, timeout=1).status_code
            if want is None or status == want:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} not ready")


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def load(url: str, body: dict, conc: int, count: int, *flags: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    out = subprocess.run(
        [PY, str(HERE / "load.py"), url, f.name, str(conc), str(count), *flags],
        capture_output=True,
        text=True,
        timeout=600,
    )
    os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def start_fake(port: int, hold: float = 0.0) -> subprocess.Popen:
    args = [PY, str(HERE / "fake_upstream.py"), str(port)]
    if hold:
        args += ["--stream-hold", str(hold)]
    proc = subprocess.Popen(args)
    wait_http(f"http://127.0.0.1:{port}/nothing")
    return proc


def gateway_env(data: Path, fake: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGPROXY_")}
    env.update(
        {
            "AGPROXY_DATA_DIR": str(data),
            "AGPROXY_PORT": str(port),
            "AGPROXY_AUTH_MODE": "off",
            "AGPROXY_UPSTREAM_BASE_URLS": f"{fake}/v1internal",
            "AGPROXY_OAUTH_TOKEN_URL": f"{fake}/token",
            "AGPROXY_OAUTH_USERINFO_URL": f"{fake}/oauth2/v2/userinfo",
            "AGPROXY_QUOTA_REFRESH_MINUTES": "0",
            # This checkout's agproxy, not the one an editable install points at.
            "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
        }
    )
    return env


def benched_agproxy(env: dict[str, str]) -> str:
    """Where the gateway's agproxy comes from: this checkout, or the bench stops (an
    editable install elsewhere would silently bench other code)."""
    found = subprocess.run(
        [PY, "-c", "import agproxy; print(agproxy.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(ROOT):
        raise SystemExit(f"the gateway would import agproxy from {found}, not from {ROOT}")
    return str(Path(found).parent)


def make_client_key(data: Path) -> str:
    """A client key with every limit set high enough never to refuse the bench."""
    from agproxy.db import open_database
    from agproxy.keys import KeyStore

    engine = open_database(data / "agproxy.db")
    try:
        _, secret = KeyStore(engine).create(
            "bench", rpm=10**7, tpm=10**12, concurrency=10**4, daily_tokens=10**13, quota_share=100
        )
    finally:
        engine.dispose()
    return secret


def start_gateway(env: dict[str, str], port: int) -> tuple[subprocess.Popen, float]:
    began = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "agproxy", "serve", "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", want=200)
    return proc, time.perf_counter() - began


def scenario(
    name: str,
    gw_url: str,
    direct_url: str,
    gateway: psutil.Process,
    conc: int,
    count: int,
    *flags: str,
    client_body: dict = CLIENT_BODY,
    direct_flags: tuple[str, ...] | None = None,
) -> dict:
    direct_flags = flags if direct_flags is None else direct_flags
    load(direct_url, DIRECT_BODY, conc, min(count, 200), *direct_flags)  # warm-up
    load(gw_url, client_body, conc, min(count, 200), *flags)
    direct = load(direct_url, DIRECT_BODY, conc, count, *direct_flags)
    cpu0 = tree_cpu(gateway)
    through = load(gw_url, client_body, conc, count, *flags)
    cpu = tree_cpu(gateway) - cpu0
    row = {
        "scenario": name,
        "concurrency": conc,
        "requests": through["requests"],
        "errors": through["errors"],
        "rps": through["rps"],
        "direct_rps": direct["rps"],
        "added_p50_ms": through["p50_ms"] - direct["p50_ms"],
        "added_p99_ms": through["p99_ms"] - direct["p99_ms"],
        "cpu_ms_per_req": cpu * 1000 / max(through["requests"], 1),
    }
    if "sse" in flags:
        row["added_ttfb_p50_ms"] = through["ttfb_p50_ms"] - direct["ttfb_p50_ms"]
    if through["errors"]:
        row["first_errors"] = through["first_errors"]
    return row


def peak_rss_during(proc: psutil.Process, work) -> tuple[object, int]:  # type: ignore[no-untyped-def]
    peak = [tree_rss(proc)]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc))
            time.sleep(0.02)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        result = work()
    finally:
        done.set()
        thread.join()
    return result, peak[0]


def main() -> None:
    fake_port, gw_port = free_port(), free_port()
    fake = start_fake(fake_port)
    fake_url = f"http://127.0.0.1:{fake_port}"
    data = Path(tempfile.mkdtemp(prefix="agproxy-bench-"))
    env = gateway_env(data, fake_url, gw_port)
    benched = benched_agproxy(env)
    for n in range(4):
        subprocess.run(
            [PY, "-m", "agproxy", "accounts", "add", "--refresh-token", f"bench{n}"],
            env=env,
            check=True,
            capture_output=True,
        )
    client_key = make_client_key(data)
    gw_proc, ready_s = start_gateway(env, gw_port)
    gateway = psutil.Process(gw_proc.pid)
    time.sleep(0.5)
    idle_rss = tree_rss(gateway)
    gw = f"http://127.0.0.1:{gw_port}/v1beta/models/{MODEL}"
    direct = f"{fake_url}/v1internal"
    n = 500 if QUICK else 3000
    rows = []
    try:
        for conc in (1, 16, 64):
            rows.append(
                scenario(
                    "gemini generate",
                    f"{gw}:generateContent",
                    f"{direct}:generateContent",
                    gateway,
                    conc,
                    n if conc > 1 else n // 3,
                )
            )
        for conc in (1, 16):
            rows.append(
                scenario(
                    "gemini stream",
                    f"{gw}:streamGenerateContent?alt=sse",
                    f"{direct}:streamGenerateContent?alt=sse",
                    gateway,
                    conc,
                    n if conc > 1 else n // 3,
                    "sse",
                )
            )
        # OpenAI chat always streams upstream: compare with the same streamed call.
        chat_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        upstream_stream = f"{direct}:streamGenerateContent?alt=sse"
        for conc in (1, 16):
            rows.append(
                scenario(
                    "openai chat",
                    chat_url,
                    upstream_stream,
                    gateway,
                    conc,
                    n if conc > 1 else n // 3,
                    client_body=CHAT_BODY,
                    direct_flags=("sse",),
                )
            )
            rows.append(
                scenario(
                    "openai chat stream",
                    chat_url,
                    upstream_stream,
                    gateway,
                    conc,
                    n if conc > 1 else n // 3,
                    "sse",
                    client_body={**CHAT_BODY, "stream": True},
                )
            )
        # The same chat with a client key that has every limit (none reached): what
        # counting them costs, against the owner's rows above.
        rows.append(
            scenario(
                "openai chat (client key)",
                chat_url,
                upstream_stream,
                gateway,
                16,
                n,
                f"key={client_key}",
                client_body=CHAT_BODY,
                direct_flags=("sse",),
            )
        )
        messages_url = f"http://127.0.0.1:{gw_port}/v1/messages"
        for conc in (1, 16):
            rows.append(
                scenario(
                    "anthropic messages",
                    messages_url,
                    upstream_stream,
                    gateway,
                    conc,
                    n if conc > 1 else n // 3,
                    client_body=MESSAGES_BODY,
                    direct_flags=("sse",),
                )
            )
            rows.append(
                scenario(
                    "anthropic messages stream",
                    messages_url,
                    upstream_stream,
                    gateway,
                    conc,
                    n if conc > 1 else n // 3,
                    "sse",
                    client_body={**MESSAGES_BODY, "stream": True},
                )
            )
    finally:
        gw_proc.send_signal(signal.SIGTERM)
        gw_proc.wait(30)
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)

    # 1,000 concurrent open streams: the fake holds each stream open for 6 s after its
    # first event. Opened over 2 s (all 1,000 are then open together for 4 s), and
    # once more all in the same instant (a burst: time to first byte is then bound by
    # the CPU needed to accept and start 1,000 requests).
    fake = start_fake(fake_port, hold=6.0)
    gw_proc, _ = start_gateway(env, gw_port)
    gateway = psutil.Process(gw_proc.pid)
    try:
        streams, peak = peak_rss_during(
            gateway,
            lambda: load(
                f"{gw}:streamGenerateContent?alt=sse",
                CLIENT_BODY,
                1000,
                1000,
                "sse",
                "hold",
                "ramp=2",
            ),
        )
        burst, burst_peak = peak_rss_during(
            gateway,
            lambda: load(
                f"{gw}:streamGenerateContent?alt=sse", CLIENT_BODY, 1000, 1000, "sse", "hold"
            ),
        )
    finally:
        gw_proc.send_signal(signal.SIGTERM)
        gw_proc.wait(30)
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)

    print(f"agproxy from {benched}")
    print(
        f"ready (/healthz 200) after start: {ready_s * 1000:.0f} ms; idle RSS "
        f"{idle_rss / 2**20:.0f} MB\n"
    )
    print(
        "| scenario | conc | req/s (direct) | added p50 ms | added p99 ms | "
        "added TTFB p50 ms | gateway CPU ms/req | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ttfb = f"{r['added_ttfb_p50_ms']:.2f}" if "added_ttfb_p50_ms" in r else "-"
        print(
            f"| {r['scenario']} | {r['concurrency']} | {r['rps']:.0f} ({r['direct_rps']:.0f}) "
            f"| {r['added_p50_ms']:.2f} | {r['added_p99_ms']:.2f} | {ttfb} | "
            f"{r['cpu_ms_per_req']:.2f} | {r['errors']} |"
        )
    for label, result, rss in (
        ("opened over 2 s", streams, peak),
        ("opened at once", burst, burst_peak),
    ):
        print(
            f"\n1,000 concurrent streams, {label}: {result['requests']} completed, "
            f"{result['errors']} errors, TTFB p50 {result['ttfb_p50_ms']:.0f} ms, "
            f"p99 {result['ttfb_p99_ms']:.0f} ms; gateway peak RSS {rss / 2**20:.0f} MB"
        )
        if result["errors"]:
            print("   first errors:", result["first_errors"])
    for r in rows:
        if r.get("first_errors"):
            print(r["scenario"], r["concurrency"], "errors:", r["first_errors"])

    import pool_size  # imports this module's helpers: imported once they are defined

    pool_size.main()


if __name__ == "__main__":
    main()
    from workers import main as workers_main  # one process against --workers 2

    workers_main()
