"""Opening the database: SQLite in the data directory unless `database_url` says otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from agproxy.db.migrations import migrate


def _sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
    # schema changes in a migration are inside its transaction and roll back with it.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer and a crash mid-write loses nothing committed.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def open_database(path_or_url: Path | str) -> Engine:
    """Open (creating and migrating as needed) the database and return its engine."""
    if isinstance(path_or_url, Path):
        # Created 0600 before SQLite touches it: it holds refresh tokens, and SQLite
        # gives its -wal and -shm files the same mode.
        fd = os.open(path_or_url, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        engine = create_engine(f"sqlite:///{path_or_url}")
    else:
        engine = create_engine(path_or_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # IMMEDIATE: take the write lock up front (waiting up to busy_timeout) rather than
        # upgrading a read transaction later, which SQLite refuses at once with "database
        # is locked" when another connection wrote in between.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    migrate(engine)
    return engine
