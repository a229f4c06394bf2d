"""Where agproxy keeps its state, and how files holding secrets are written."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

CONFIG_FILE = "config.json"
DATABASE_FILE = "agproxy.db"
RUNTIME_FILE = "server.json"
LOCK_FILE = ".config.lock"
SERVE_LOCK_FILE = ".serve.lock"


def data_dir() -> Path:
    """`$AGPROXY_DATA_DIR` when set and non-blank, else `~/.agproxy`."""
    value = os.environ.get("AGPROXY_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".agproxy"


def ensure_data_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half.

    The temporary file is created with `mode` before any byte is written, so a
    secret never sits in a world-readable file, even for a moment.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def file_lock(directory: Path) -> Iterator[None]:
    """Serialize read-modify-write of the config between the server and CLI processes."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class AlreadyServing(Exception):
    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def hold_serve_lock(directory: Path) -> int:
    """Claim the data directory for this `agproxy serve` until the process ends.

    A second gateway on the same directory would overwrite server.json and share the
    database's pool state behind this one's back. The lock file names its holder (pid
    and address), so the refusal can say which gateway runs. The kernel drops the lock
    when the process dies, even by kill -9: no stale lock to clean up.
    """
    fd = os.open(directory / SERVE_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise AlreadyServing(holder) from None
    return fd


def describe_serve_lock(fd: int, text: str) -> None:
    """Write who holds the lock (read by a refused second gateway)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
