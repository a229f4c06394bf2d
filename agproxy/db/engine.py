"""Opening the store: SQLite in the data directory unless `store_url` names another
SQLite file or a PostgreSQL database."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError

from agproxy.addresses import mask_url
from agproxy.datadir import DATABASE_FILE
from agproxy.db.migrations import migrate

if TYPE_CHECKING:
    from agproxy.config import Settings

# Connections kept open to PostgreSQL, and how many more a burst may open: the request
# path never waits for the store (records and last-used times are written in batches),
# so these serve the background tasks, the admin API's reads and the Responses API.
POOL_SIZE = 5
POOL_OVERFLOW = 15
# A server that does not answer fails the start (or a request) after this, not after
# the operating system gives up on the connection, minutes later.
CONNECT_TIMEOUT_SECONDS = 10
# How long opening a SQLite file keeps trying while other processes hold it: the workers
# of one serve open it at the same moment, and a few of SQLite's locks (switching a new
# file to WAL, recovering a WAL) answer "database is locked" at once, without waiting.
SQLITE_OPEN_PATIENCE_SECONDS = 20.0


class StoreError(Exception):
    """The store cannot be opened (a PostgreSQL server that does not answer or refuses the
    login, a file that cannot be created); the message names it with its password masked."""


def _sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
    # schema changes in a migration are inside its transaction and roll back with it.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer and a crash mid-write loses nothing committed.
    # The wait first: switching a new file to WAL takes a lock that another process
    # opening it at the same moment (the workers of one serve) may hold.
    cur.execute("PRAGMA busy_timeout=10000")
    # Set once, kept in the file: asking again would take the lock for nothing.
    if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite(path: Path) -> Engine:
    # Created 0600 before SQLite touches it: it holds refresh tokens, and SQLite
    # gives its -wal and -shm files the same mode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", _sqlite_pragmas)
    # IMMEDIATE: take the write lock up front (waiting up to busy_timeout) rather than
    # upgrading a read transaction later, which SQLite refuses at once with "database
    # is locked" when another connection wrote in between.
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def _postgres(url: str) -> Engine:
    # The URL's own options (?connect_timeout=30) win over these.
    defaults = {"application_name": "agproxy", "connect_timeout": CONNECT_TIMEOUT_SECONDS}
    given = make_url(url).query
    return create_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        # A restarted server (or one that dropped idle connections) costs a reconnect,
        # not a failed query.
        pool_pre_ping=True,
        connect_args={k: v for k, v in defaults.items() if k not in given},
    )


def open_database(path_or_url: Path | str) -> Engine:
    """Open (creating and migrating as needed) the database and return its engine: a
    SQLite file's path, or a `sqlite:///` or `postgresql+psycopg://` URL."""
    if isinstance(path_or_url, str) and path_or_url.startswith("sqlite:///"):
        path_or_url = Path(path_or_url.removeprefix("sqlite:///"))
    if isinstance(path_or_url, str):
        return _migrated(_postgres(path_or_url))
    deadline = time.monotonic() + SQLITE_OPEN_PATIENCE_SECONDS
    while True:
        try:
            return _migrated(_sqlite(path_or_url))
        except DBAPIError as exc:
            if "database is locked" not in str(exc.orig) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _migrated(engine: Engine) -> Engine:
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def store_location(settings: Settings, data_dir: Path) -> Path | str:
    """Where the store is: a SQLite file's path (a relative `sqlite:///` path is in the
    data directory), or a PostgreSQL URL."""
    url = settings.store_url
    if url is None:
        return data_dir / DATABASE_FILE
    if not url.startswith("sqlite:///"):
        return url
    path = Path(url.removeprefix("sqlite:///")).expanduser()
    return path if path.is_absolute() else data_dir / path


def open_store(settings: Settings, data_dir: Path) -> Engine:
    """The store this data directory's settings name, opened and migrated; StoreError
    when it cannot be reached."""
    where = store_location(settings, data_dir)
    try:
        return open_database(where)
    except (DBAPIError, OSError) as exc:
        shown = where if isinstance(where, Path) else mask_url(where)
        reason = getattr(exc, "orig", None) or exc
        detail = " ".join(str(reason).split())
        raise StoreError(f"cannot open the store {shown}: {detail}") from exc
