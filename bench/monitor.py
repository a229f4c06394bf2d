"""Benchmark: what recording requests in the monitor costs.

Runs the same load through the gateway with `monitor_enabled` off and on (the
records' middleware and metrics run in both; "on" adds the queue, the batched
SQLite writes and retention), alternating the two over several rounds so that a
noisy machine affects both alike, and calls the fake upstream directly in each round
as the reference. Reports median p50/p99 per setting, the p50 the monitor adds, and
checks that every request of the "on" rounds was written (nothing lost).

Usage: python bench/monitor.py [--quick]
"""

from __future__ import annotations

import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from run import (  # noqa: E402
    CLIENT_BODY,
    DIRECT_BODY,
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
ROUNDS = 2 if QUICK else 4
COUNT = 400 if QUICK else 1500


def main() -> None:
    fake_port = free_port()
    fake = start_fake(fake_port)
    fake_url = f"http://127.0.0.1:{fake_port}"
    direct = f"{fake_url}/v1internal:generateContent"
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    written_expected = 0
    data = Path(tempfile.mkdtemp(prefix="agproxy-bench-monitor-"))
    try:
        for round_no in range(ROUNDS):
            for setting in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
                port = free_port()
                env = gateway_env(data, fake_url, port)
                env["AGPROXY_MONITOR_ENABLED"] = "true" if setting == "on" else "false"
                if not (data / "agproxy.db").exists():
                    for n in range(4):
                        subprocess.run(
                            [
                                PY,
                                "-m",
                                "agproxy",
                                "accounts",
                                "add",
                                "--refresh-token",
                                f"bench{n}",
                            ],
                            env=env,
                            check=True,
                            capture_output=True,
                        )
                proc, _ = start_gateway(env, port)
                gateway = psutil.Process(proc.pid)
                url = f"http://127.0.0.1:{port}/v1beta/models/{MODEL}:generateContent"
                try:
                    for conc in (1, 16):
                        count = COUNT // 3 if conc == 1 else COUNT
                        load(url, CLIENT_BODY, conc, 200)  # warm-up
                        reference = load(direct, DIRECT_BODY, conc, count)
                        cpu0 = tree_cpu(gateway)
                        through = load(url, CLIENT_BODY, conc, count)
                        cpu = tree_cpu(gateway) - cpu0
                        assert through["errors"] == 0, through["first_errors"]
                        if setting == "on":
                            written_expected += 200 + count
                        results.setdefault((setting, conc), []).append(
                            {
                                "p50": through["p50_ms"],
                                "p99": through["p99_ms"],
                                "direct_p50": reference["p50_ms"],
                                "rps": through["rps"],
                                "cpu": cpu * 1000 / count,
                            }
                        )
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
    finally:
        fake.send_signal(signal.SIGTERM)
        fake.wait(10)

    written = (
        sqlite3.connect(data / "agproxy.db")
        .execute("SELECT count(*) FROM request_logs")
        .fetchone()[0]
    )
    print(f"{ROUNDS} rounds, monitor off and on alternating; medians of the rounds\n")
    print("| conc | monitor | req/s | p50 ms | p99 ms | direct p50 ms | CPU ms/req |")
    print("|---|---|---|---|---|---|---|")
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    for conc in (1, 16):
        for setting in ("off", "on"):
            r = med[(setting, conc)]
            print(
                f"| {conc} | {setting} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
                f"{r['direct_p50']:.3f} | {r['cpu']:.3f} |"
            )
    print()
    for conc in (1, 16):
        off, on = med[("off", conc)], med[("on", conc)]
        added = on["p50"] - off["p50"]
        print(
            f"concurrency {conc}: the monitor adds {added:+.3f} ms to the p50 "
            f"({added / off['p50'] * 100:+.1f} %), {on['cpu'] - off['cpu']:+.3f} ms CPU "
            f"per request"
        )
    print(
        f"\nrecords written in the 'on' rounds: {written} of {written_expected} requests"
        f" ({'nothing lost' if written == written_expected else 'LOST RECORDS'})"
    )


if __name__ == "__main__":
    main()
