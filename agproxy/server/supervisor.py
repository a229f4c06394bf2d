"""`agproxy serve --workers N`: N gateway processes on one port, one parent watching them.

The parent holds the data directory's serve lock and starts N ordinary `agproxy serve`
processes, each told which worker it is (AGPROXY_WORKER). Each binds the port with
SO_REUSEPORT, so the kernel spreads new connections among them, and each is a whole
gateway: console, admin API, AI routes. They share state through Redis (`redis_url`,
required) and the store. A worker that dies is started again; one that keeps dying at
start-up stops the lot. SIGINT/SIGTERM to the parent stop every worker cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from types import FrameType

from agproxy.config import ConfigError, ConfigStore
from agproxy.shared.workers import WORKER_ENV, WorkerRole

MAX_WORKERS = 64
CRASH_WINDOW = 10.0  # a worker that exits this soon after starting…
CRASHES_ALLOWED = 3  # …this many times in a row stops the gateway: it will not come up
POLL_SECONDS = 0.2
NEEDS_REDIS = (
    "error: --workers {n} needs redis_url: the workers share cooldowns, sticky sessions, "
    "token refreshes and client-key limits through Redis. Install it (Debian: apt install "
    "redis-server) and set it, e.g. `agproxy config set redis_url redis://127.0.0.1:6379/0`"
)


def serve_workers(
    store: ConfigStore, echo: Callable[[str], None], count: int, log_level: str
) -> int:
    """Run `count` workers until a signal; the exit status of the whole."""
    from agproxy.server.runner import claim_data_dir

    try:
        settings = store.load()
    except ConfigError as exc:
        echo(f"error: {exc.message}")
        return 2
    if not 1 <= count <= MAX_WORKERS:
        echo(f"error: --workers must be between 1 and {MAX_WORKERS}")
        return 2
    if not settings.redis_url:
        echo(NEEDS_REDIS.format(n=count))
        return 2
    if claim_data_dir(store, echo, f"pid {os.getpid()} with {count} workers") is None:
        return 1
    return Supervisor(store, count, log_level).run(echo)


class Supervisor:
    def __init__(self, store: ConfigStore, count: int, log_level: str) -> None:
        self.store = store
        self.log_level = log_level
        self.group = uuid.uuid4().hex[:12]
        self.count = count
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.started: dict[int, float] = {}
        self.crashes: dict[int, int] = {}
        self.stopping = False

    def _start(self, index: int) -> None:
        role = WorkerRole(self.group, index, self.count)
        env = {**os.environ, WORKER_ENV: role.env()}
        self.workers[index] = subprocess.Popen(
            [sys.executable, "-m", "agproxy", "serve", "--log-level", self.log_level], env=env
        )
        self.started[index] = time.monotonic()

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:  # a second Ctrl+C: don't wait for in-flight requests
            for proc in self.workers.values():
                if proc.poll() is None:
                    proc.kill()
        self.stopping = True
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def run(self, echo: Callable[[str], None]) -> int:
        signal.signal(signal.SIGINT, self._signal)
        signal.signal(signal.SIGTERM, self._signal)
        for index in range(self.count):
            self._start(index)
        status = 0
        while self.workers:
            time.sleep(POLL_SECONDS)
            for index, proc in list(self.workers.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self.workers[index]
                if self.stopping:
                    continue
                if code in (1, 2):  # the port is taken, the config is broken: say so once
                    echo(f"error: worker {index} could not start (status {code}); stopping")
                    status = code
                    self._signal(signal.SIGTERM, None)
                    continue
                quick = time.monotonic() - self.started[index] < CRASH_WINDOW
                self.crashes[index] = self.crashes.get(index, 0) + 1 if quick else 0
                if self.crashes[index] >= CRASHES_ALLOWED:
                    echo(
                        f"error: worker {index} exited {CRASHES_ALLOWED} times at start-up "
                        f"(status {code}); stopping the gateway"
                    )
                    status = 1
                    self._signal(signal.SIGTERM, None)
                    continue
                echo(f"worker {index} exited with status {code}; starting it again")
                self._start(index)
        return status
