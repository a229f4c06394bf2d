"""The database layer: open_database, forward-only migrations, and tables.py against the schema.

Each test runs on a real SQLite file in a temp dir and on a new database of a real
PostgreSQL server (the `store` and `store_url` fixtures); the SQLite file's own
properties (its mode, its pragmas) are tested on SQLite alone. No mocks.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from agproxy.db import MIGRATIONS, migrate, open_database, tables


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "x.db"


@pytest.fixture
def sqlite_engine(db_path: Path) -> Iterator[sa.Engine]:
    eng = open_database(db_path)
    yield eng
    eng.dispose()


@pytest.fixture
def engine(store: sa.Engine) -> sa.Engine:
    """A migrated store, on SQLite and on PostgreSQL."""
    return store


@pytest.fixture
def bare(store_url: str) -> Iterator[sa.Engine]:
    """An empty store not migrated yet (no pragmas: as an older release left it)."""
    eng = sa.create_engine(store_url)
    yield eng
    eng.dispose()


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def recorded(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT version, name FROM schema_migrations ORDER BY version")
            )
        ]


def pragma(engine: sa.Engine, name: str) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"PRAGMA {name}")).scalar()


# -- opening ---------------------------------------------------------------------------


def test_open_creates_private_file(db_path: Path, sqlite_engine: sa.Engine) -> None:
    assert db_path.is_file()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_wal_file_is_private_too(db_path: Path, sqlite_engine: sa.Engine) -> None:
    with sqlite_engine.begin() as conn:
        conn.execute(sa.insert(tables.revisions).values(name="r", value=1))
        wal = db_path.with_name(db_path.name + "-wal")
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("journal_mode", "wal"),
        ("foreign_keys", 1),
        ("busy_timeout", 10000),
        ("synchronous", 1),  # NORMAL
    ],
)
def test_connection_pragmas(sqlite_engine: sa.Engine, name: str, expected: object) -> None:
    assert pragma(sqlite_engine, name) == expected


def test_expected_tables_exist(engine: sa.Engine) -> None:
    assert {"accounts", "account_quotas", "schema_migrations", "revisions"} <= table_names(engine)


def test_one_row_per_migration_in_order(engine: sa.Engine) -> None:
    assert recorded(engine) == [(i, m.__name__) for i, m in enumerate(MIGRATIONS, 1)]


def test_migrate_again_applies_nothing(engine: sa.Engine) -> None:
    assert migrate(engine) == []
    assert len(recorded(engine)) == len(MIGRATIONS)


def test_reopen_existing_database_keeps_data(store_url: str, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(tables.revisions).values(name="accounts", value=7))
    engine.dispose()
    again = open_database(store_url)
    try:
        with again.connect() as conn:
            assert conn.execute(sa.select(tables.revisions.c.value)).scalar() == 7
        assert len(recorded(again)) == len(MIGRATIONS)
    finally:
        again.dispose()


def test_fresh_migrate_returns_every_name(bare: sa.Engine) -> None:
    assert migrate(bare) == [m.__name__ for m in MIGRATIONS]
    assert migrate(bare) == []


def test_processes_starting_at_once_migrate_the_schema_once(store_url: str) -> None:
    """Gateways and CLI commands started together on one new store: one applies each
    migration, the others wait for it and find it applied."""
    opening = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from agproxy.db import open_database; open_database({store_url!r})",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in opening:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    eng = sa.create_engine(store_url)
    try:
        assert recorded(eng) == [(i, m.__name__) for i, m in enumerate(MIGRATIONS, 1)]
    finally:
        eng.dispose()


def test_a_new_file_another_process_is_still_setting_up_is_waited_for(db_path: Path) -> None:
    """Workers of one serve open a new file at the same moment. While one of them writes
    the file's first transaction in rollback mode, SQLite refuses the other's switch to
    WAL at once ("database is locked", without its busy wait): opening keeps trying."""
    first = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    first.execute("CREATE TABLE setting_up (x)")
    first.execute("BEGIN IMMEDIATE")
    first.execute("INSERT INTO setting_up VALUES (1)")
    release = threading.Timer(0.6, lambda: first.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        eng = open_database(db_path)
    finally:
        release.join()
        first.close()
    try:
        assert time.monotonic() - started >= 0.5  # it did meet the lock
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert recorded(eng) == [(i, m.__name__) for i, m in enumerate(MIGRATIONS, 1)]
    finally:
        eng.dispose()


# -- versions ------------------------------------------------------------------------


def test_newer_schema_is_refused(engine: sa.Engine) -> None:
    newer = len(MIGRATIONS) + 1
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, 'm_future', 0)"
            ),
            {"v": newer},
        )
    with pytest.raises(RuntimeError, match="newer agproxy") as info:
        migrate(engine)
    assert str(newer) in str(info.value)


def test_newer_schema_is_refused_by_open_database(store_url: str, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'm099', 0)"
            )
        )
    engine.dispose()
    with pytest.raises(RuntimeError, match="newer agproxy"):
        open_database(store_url)


def m_test_add_widgets(conn: sa.Connection) -> None:
    conn.execute(sa.text("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT)"))


def m_test_add_gadgets(conn: sa.Connection) -> None:
    # Depends on widgets existing: proves order.
    conn.execute(sa.text("INSERT INTO widgets (id, name) VALUES (1, 'from-gadgets')"))
    conn.execute(sa.text("CREATE TABLE gadgets (id INTEGER PRIMARY KEY)"))


def test_extra_migrations_applied_once_in_order(engine: sa.Engine) -> None:
    extended = [*MIGRATIONS, m_test_add_widgets, m_test_add_gadgets]
    assert migrate(engine, extended) == ["m_test_add_widgets", "m_test_add_gadgets"]
    n = len(MIGRATIONS)
    assert recorded(engine)[n:] == [(n + 1, "m_test_add_widgets"), (n + 2, "m_test_add_gadgets")]
    assert {"widgets", "gadgets"} <= table_names(engine)
    assert migrate(engine, extended) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM widgets")).scalars().all() == ["from-gadgets"]
    # The old release's list is now "older" than the database.
    with pytest.raises(RuntimeError, match="newer agproxy"):
        migrate(engine)


def test_failing_migration_is_not_recorded_and_later_ones_do_not_run(engine: sa.Engine) -> None:
    def m_test_boom(conn: sa.Connection) -> None:
        conn.execute(sa.text("INSERT INTO revisions (name, value) VALUES ('boom', 1)"))
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        migrate(engine, [*MIGRATIONS, m_test_boom, m_test_add_widgets])
    assert len(recorded(engine)) == len(MIGRATIONS)
    assert "widgets" not in table_names(engine)
    with engine.connect() as conn:  # DML done before the failure was rolled back
        assert (
            conn.execute(sa.text("SELECT count(*) FROM revisions WHERE name = 'boom'")).scalar()
            == 0
        )


def m_test_partial(conn: sa.Connection) -> None:
    conn.execute(sa.text("CREATE TABLE partial_t (id INTEGER)"))
    raise ValueError("fails after DDL")


def test_failing_migration_ddl_is_rolled_back(engine: sa.Engine) -> None:
    with pytest.raises(ValueError):
        migrate(engine, [*MIGRATIONS, m_test_partial])
    assert len(recorded(engine)) == len(MIGRATIONS)
    assert "partial_t" not in table_names(engine)


def test_failed_migration_can_be_retried(engine: sa.Engine) -> None:
    with pytest.raises(ValueError):
        migrate(engine, [*MIGRATIONS, m_test_partial])

    def m_test_partial_fixed(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE partial_t (id INTEGER)"))

    assert migrate(engine, [*MIGRATIONS, m_test_partial_fixed]) == ["m_test_partial_fixed"]


# -- tables.py matches the migrated schema ------------------------------------------------


@pytest.mark.parametrize("table", list(tables.metadata.sorted_tables), ids=lambda t: t.name)
def test_tables_py_matches_migrated_schema(engine: sa.Engine, table: sa.Table) -> None:
    insp = sa.inspect(engine)
    live = {c["name"]: c for c in insp.get_columns(table.name)}
    assert set(live) == set(table.c.keys())
    for column in table.c:
        assert live[column.name]["nullable"] == column.nullable, column.name
        assert live[column.name]["type"]._type_affinity is column.type._type_affinity, column.name
    assert set(insp.get_pk_constraint(table.name)["constrained_columns"]) == {
        c.name for c in table.primary_key.columns
    }
    live_fks = {
        (
            tuple(fk["constrained_columns"]),
            fk["referred_table"],
            tuple(fk["referred_columns"]),
            (fk.get("options") or {}).get("ondelete"),
        )
        for fk in insp.get_foreign_keys(table.name)
    }
    declared = {
        ((fk.parent.name,), fk.column.table.name, (fk.column.name,), fk.ondelete)
        for fk in table.foreign_keys
    }
    assert live_fks == declared


def test_every_migrated_table_is_in_tables_py(engine: sa.Engine) -> None:
    assert table_names(engine) - {"schema_migrations"} == set(tables.metadata.tables)


def full_account(account_id: str, email: str) -> dict:
    return {
        "id": account_id,
        "email": email,
        "display_name": "Test User",
        "refresh_token": "1//refresh",
        "access_token": "ya29.access",
        "access_token_expires_at": 1234.5,
        "oauth_client": "antigravity",
        "project_id": "proj-1",
        "tier": "free-tier",
        "enabled": True,
        "status": "ok",
        "status_reason": None,
        "status_changed_at": 10.0,
        "sort_order": 3,
        "created_at": 100.0,
        "last_used_at": 200.0,
        "proxy_url": "http://proxy:1",
        "status_url": "https://accounts.google.com/signin/continue?x=1",
    }


def test_full_account_row_round_trips(engine: sa.Engine) -> None:
    row = full_account(str(uuid.uuid4()), "a@example.com")
    assert set(row) == set(tables.accounts.c.keys())
    with engine.begin() as conn:
        conn.execute(sa.insert(tables.accounts).values(**row))
    with engine.connect() as conn:
        got = conn.execute(sa.select(tables.accounts)).mappings().one()
    assert dict(got) == row


def test_server_defaults_fill_optional_columns(engine: sa.Engine) -> None:
    # Columns tables.py marks NOT NULL but which the migration gives defaults for.
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accounts (id, email, refresh_token, created_at) "
                "VALUES ('id1', 'b@example.com', 'r', :t)"
            ),
            {"t": time.time()},
        )
    with engine.connect() as conn:
        got = conn.execute(sa.select(tables.accounts)).mappings().one()
    assert got["enabled"] is True
    assert got["status"] == "ok"
    assert got["sort_order"] == 0


def test_email_is_unique(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(tables.accounts).values(**full_account("a", "same@example.com")))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.insert(tables.accounts).values(**full_account("b", "same@example.com")))


def test_deleting_account_cascades_quotas(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for aid in ("a1", "a2"):
            conn.execute(sa.insert(tables.accounts).values(**full_account(aid, f"{aid}@x.com")))
            for model in ("gemini-2.5-pro", "claude-sonnet-4-5"):
                conn.execute(
                    sa.insert(tables.account_quotas).values(
                        account_id=aid,
                        model=model,
                        remaining_fraction=0.5,
                        reset_at=1.0,
                        fetched_at=2.0,
                        max_output_tokens=8192,
                    )
                )
    with engine.begin() as conn:
        conn.execute(sa.delete(tables.accounts).where(tables.accounts.c.id == "a1"))
    with engine.connect() as conn:
        left = conn.execute(
            sa.select(tables.account_quotas.c.account_id, tables.account_quotas.c.model)
        ).all()
    assert sorted(left) == [("a2", "claude-sonnet-4-5"), ("a2", "gemini-2.5-pro")]


def test_quota_for_missing_account_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.insert(tables.account_quotas).values(account_id="ghost", model="m", fetched_at=1.0)
        )


def test_deleting_account_cascades_quota_windows(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for aid in ("a1", "a2"):
            conn.execute(sa.insert(tables.accounts).values(**full_account(aid, f"{aid}@x.com")))
            conn.execute(
                sa.insert(tables.account_quota_windows).values(
                    account_id=aid,
                    bucket_id="3p-weekly",
                    model_group="3p",
                    window_kind="weekly",
                    remaining_fraction=None,
                    reset_at=5.0,
                    fetched_at=2.0,
                )
            )
    with engine.begin() as conn:
        conn.execute(sa.delete(tables.accounts).where(tables.accounts.c.id == "a1"))
    with engine.connect() as conn:
        left = conn.execute(sa.select(tables.account_quota_windows.c.account_id)).all()
    assert left == [("a2",)]


def test_m006_adds_the_windows_table_to_a_database_of_the_release_before(bare: sa.Engine) -> None:
    assert MIGRATIONS[5].__name__ == "m006_quota_windows"
    migrate(bare, MIGRATIONS[:5])
    old = {k: v for k, v in full_account("a1", "a1@x.com").items() if k != "status_url"}
    with bare.begin() as conn:
        conn.execute(sa.insert(tables.accounts).values(**old))
    assert "account_quota_windows" not in table_names(bare)
    assert migrate(bare)[:1] == ["m006_quota_windows"]
    with bare.connect() as conn:
        assert conn.execute(sa.select(tables.accounts.c.email)).scalar() == "a1@x.com"
        assert conn.execute(sa.select(tables.account_quota_windows)).all() == []


def test_m007_keeps_cooldowns_and_status_links_on_a_database_of_the_release_before(
    bare: sa.Engine,
) -> None:
    assert MIGRATIONS[6].__name__ == "m007_cooldowns_and_status_links"
    migrate(bare, MIGRATIONS[:6])
    old = {k: v for k, v in full_account("a1", "a1@x.com").items() if k != "status_url"}
    with bare.begin() as conn:
        conn.execute(sa.insert(tables.accounts).values(**old))
    assert migrate(bare)[:1] == ["m007_cooldowns_and_status_links"]
    with bare.begin() as conn:
        assert conn.execute(sa.select(tables.accounts.c.status_url)).scalar() is None
        conn.execute(
            sa.insert(tables.account_cooldowns).values(account_id="a1", model="*", until=9e9)
        )
        assert conn.execute(sa.select(tables.account_cooldowns.c.until)).scalar() == 9e9


def test_m008_adds_client_keys_and_the_key_column(bare: sa.Engine) -> None:
    assert MIGRATIONS[7].__name__ == "m008_client_keys"
    migrate(bare, MIGRATIONS[:7])
    assert "client_keys" not in table_names(bare)
    assert migrate(bare)[:1] == ["m008_client_keys"]
    with bare.connect() as conn:
        assert conn.execute(sa.select(tables.client_keys)).all() == []
        assert conn.execute(sa.select(tables.request_logs.c.key_name)).all() == []


def test_m009_adds_stored_responses(bare: sa.Engine) -> None:
    assert MIGRATIONS[8].__name__ == "m009_stored_responses"
    migrate(bare, MIGRATIONS[:8])
    assert "stored_responses" not in table_names(bare)
    assert migrate(bare)[:1] == ["m009_stored_responses"]
    row = {"id": "resp_1", "owner": None, "created_at": 1.0, "previous_id": None}
    with bare.begin() as conn:
        conn.execute(sa.insert(tables.stored_responses).values(**row, input="[]", response="{}"))
        assert conn.execute(sa.select(tables.stored_responses.c.id)).scalar() == "resp_1"


def test_long_text_big_numbers_and_exact_times_fit(engine: sa.Engine) -> None:
    """What SQLite always kept: text longer than a column's declared length (a client's
    user agent), integers past 32 bits (a key's daily_tokens), wall-clock times to the
    microsecond. PostgreSQL keeps them too (m010)."""
    now = time.time()
    agent = "Mozilla/5.0 " * 100
    key = {"id": "k1", "name": "n" * 100, "prefix": "sk-abcde", "digest": "d" * 64}
    with engine.begin() as conn:
        conn.execute(
            sa.insert(tables.request_logs).values(
                id="r1",
                started_at=now,
                protocol="openai",
                method="POST",
                path="/v1/" + "x" * 2000,
                status=200,
                duration_ms=1.25,
                user_agent=agent,
                input_tokens=3_000_000_000,
            )
        )
        conn.execute(
            sa.insert(tables.client_keys).values(
                **key, daily_tokens=10**12, enabled=True, created_at=now, expires_at=now + 0.5
            )
        )
    with engine.connect() as conn:
        log = conn.execute(sa.select(tables.request_logs)).mappings().one()
        stored = conn.execute(sa.select(tables.client_keys)).mappings().one()
    assert (log["user_agent"], log["started_at"], log["input_tokens"]) == (
        agent,
        now,
        3_000_000_000,
    )
    assert len(log["path"]) == 2004
    assert (stored["daily_tokens"], stored["expires_at"]) == (10**12, now + 0.5)
