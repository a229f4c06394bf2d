"""`agproxy serve --workers N`: N processes on one port sharing state through Redis,
started, stopped and moved together, restarted when one dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from conftest import Gateway, add_to, agproxy_env, free_port, google_env, launch, ready

MODEL = "gemini-3-flash"


def processes(gw: Gateway, want: int, **expect: Any) -> list[dict[str, Any]]:
    """The gateway's process list once it has `want` entries whose fields match `expect`
    (each process renews its own entry every 2 s)."""
    deadline = time.monotonic() + 8
    while True:
        try:
            listed = gw.admin("GET", "/api/proxy/status").json()["processes"]
        except httpx.TransportError:
            listed = []
        matching = [p for p in listed if all(p.get(k) == v for k, v in expect.items())]
        if len(matching) == want and len(listed) == want:
            return listed
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {want} processes with {expect}: {listed}")
        time.sleep(0.2)


def test_workers_need_redis(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agproxy", "serve", "--workers", "2"],
        env=agproxy_env(tmp_path / "gw"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--workers 2 needs redis_url" in result.stdout + result.stderr


def test_two_workers_serve_one_port_and_switch_together(
    tmp_path: Path, fake_google: Any, own_redis: Any
) -> None:
    gw = ready(
        launch(
            tmp_path / "gw",
            serve_args=("--workers", "2"),
            **google_env(fake_google),
            AGPROXY_REDIS_URL=own_redis.url,
        )
    )
    try:
        tag = uuid.uuid4().hex[:6]
        add_to(gw, fake_google.add_account(email=f"w-{tag}@example.com"))
        listed = processes(gw, 2, running=True)
        assert {p["worker"] for p in listed} == {0, 1}
        assert len({p["pid"] for p in listed}) == 2 and all(p["same_serve"] for p in listed)
        parent = psutil.Process(gw.proc.pid)
        assert {c.pid for c in parent.children()} == {p["pid"] for p in listed}

        # The kernel spreads new connections over both workers.
        for i in range(40):
            answer = httpx.post(
                gw.base_url + "/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": f"hi {i}"}]},
                timeout=30,
            )
            assert answer.status_code == 200
        deadline = time.monotonic() + 6
        while True:
            listed = processes(gw, 2)
            if all(p["requests"] > 0 for p in listed) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert sum(p["requests"] for p in listed) >= 40
        assert all(p["requests"] > 0 for p in listed), listed

        # A stop through any worker stops both; a start with a new port moves both.
        stopped = gw.cli("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        processes(gw, 2, running=False)
        new_port = free_port()
        assert gw.cli("config", "set", "port", str(new_port)).returncode == 0
        started = gw.cli("start")
        assert started.returncode == 0, started.stdout + started.stderr
        old_port, gw.port = gw.port, new_port
        processes(gw, 2, running=True, listen=f"127.0.0.1:{new_port}")
        deadline = time.monotonic() + 3  # the old listener lets the start's answer out first
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", old_port)) != 0:
                    break
            assert time.monotonic() < deadline, "a worker still listens on the old port"
            time.sleep(0.1)

        # A worker that dies is started again.
        victim = listed[1]["pid"]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            pids = {c.pid for c in parent.children()}
            if len(pids) == 2 and victim not in pids:
                break
            assert time.monotonic() < deadline, "the dead worker was not started again"
            time.sleep(0.2)
        assert "exited with status -9; starting it again" in gw.wait_for_log("starting it again")
        processes(gw, 2, running=True, listen=f"127.0.0.1:{new_port}")
    finally:
        children = psutil.Process(gw.proc.pid).children() if gw.proc.poll() is None else []
        assert gw.stop() == 0
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]


def test_a_second_serve_on_the_port_of_workers_is_refused(
    tmp_path: Path, fake_google: Any, own_redis: Any
) -> None:
    """SO_REUSEPORT is set only by the workers of one serve: another gateway (without
    --workers) on their port is told the port is taken, not let in beside them."""
    port = free_port()
    gw = ready(
        launch(
            tmp_path / "one",
            port=port,
            serve_args=("--workers", "2"),
            **google_env(fake_google),
            AGPROXY_REDIS_URL=own_redis.url,
        )
    )
    try:
        other = subprocess.run(
            [sys.executable, "-m", "agproxy", "serve"],
            env=agproxy_env(tmp_path / "two", AGPROXY_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert other.returncode == 1, (other.stdout, other.stderr, gw.log())
        assert "failed to bind address" in other.stdout + other.stderr
    finally:
        assert gw.stop() == 0


def _open_store(directory: str, answers: Any) -> None:
    from agproxy.db import open_database

    try:
        open_database(Path(directory) / "agproxy.db").dispose()
        answers.put("ok")
    except Exception as exc:  # reported by the test
        answers.put(repr(exc))


def test_workers_opening_a_new_sqlite_store_at_once_all_get_it(tmp_path: Path) -> None:
    """The workers of a first `serve --workers N` create and migrate the data directory's
    database together: each waits for the others' locks, none fails."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for round_ in range(5):
        answers = context.Queue()
        directory = tmp_path / f"round{round_}"
        directory.mkdir()
        procs = [
            context.Process(target=_open_store, args=(str(directory), answers)) for _ in range(4)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
        assert [answers.get(timeout=5) for _ in procs] == ["ok"] * 4
