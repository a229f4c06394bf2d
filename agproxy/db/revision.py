"""Change counters other processes poll (one row each in `revisions`): a cheap way for a
running gateway to notice accounts or keys changed by the CLI, on SQLite and Postgres."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects.postgresql import insert as postgres_insert

from agproxy.db.tables import revisions


def bump(conn: Connection, name: str) -> None:
    if conn.dialect.name == "postgresql":
        # Two processes bumping a counter that has no row yet would both insert it (no
        # lock is taken up front there, as SQLite's BEGIN IMMEDIATE does): one statement.
        conn.execute(
            postgres_insert(revisions)
            .values(name=name, value=1)
            .on_conflict_do_update(
                index_elements=[revisions.c.name], set_={"value": revisions.c.value + 1}
            )
        )
        return
    updated = conn.execute(
        sa.update(revisions).where(revisions.c.name == name).values(value=revisions.c.value + 1)
    )
    if updated.rowcount == 0:
        conn.execute(sa.insert(revisions).values(name=name, value=1))


def read(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(sa.select(revisions.c.value).where(revisions.c.name == name)).scalar()
    return int(value or 0)
