"""Forward-only schema migrations.

Each migration is a function applied once, in order, inside one transaction, and
recorded in `schema_migrations`. Never edit a migration that has shipped: add the
next one. DDL is written with SQLAlchemy constructs so the same list runs on
SQLite and Postgres. PostgreSQL enforces what SQLite only reads as a hint (see m010):
new columns are sa.Text, sa.BigInteger and sa.Float, never VARCHAR(n) or INTEGER.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

Migration = Callable[[Connection], None]


def m001_accounts(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "accounts",
        md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200)),
        sa.Column("refresh_token", sa.Text, nullable=False),
        sa.Column("access_token", sa.Text),
        sa.Column("access_token_expires_at", sa.Float),
        sa.Column("oauth_client", sa.String(64)),
        sa.Column("project_id", sa.String(200)),
        sa.Column("tier", sa.String(32)),
        # enabled: the user's switch. status: what the backend said of the account.
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("status", sa.String(32), nullable=False, server_default="ok"),
        sa.Column("status_reason", sa.Text),
        sa.Column("status_changed_at", sa.Float),
        sa.Column("sort_order", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float),
    )
    sa.Table(
        "account_quotas",
        md,
        sa.Column(
            "account_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("remaining_fraction", sa.Float),
        sa.Column("reset_at", sa.Float),
        sa.Column("fetched_at", sa.Float, nullable=False),
    )
    md.create_all(conn)


def m002_proxy_limits_revisions(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE accounts ADD COLUMN proxy_url VARCHAR(500)"))
    conn.execute(sa.text("ALTER TABLE account_quotas ADD COLUMN max_output_tokens INTEGER"))
    # Bumped on every change other processes must notice (accounts added from the CLI
    # while a gateway runs); a cheap poll of one row, on SQLite and Postgres alike.
    sa.Table(
        "revisions",
        sa.MetaData(),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    ).create(conn)


def m003_request_logs(conn: Connection) -> None:
    md = sa.MetaData()
    table = sa.Table(
        "request_logs",
        md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("requested_model", sa.String(200)),
        sa.Column("routed_model", sa.String(200)),
        sa.Column("provider", sa.String(16)),
        sa.Column("account", sa.String(320)),  # masked email
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("ttfb_ms", sa.Float),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("thinking_tokens", sa.Integer),
        sa.Column("cached_tokens", sa.Integer),
        sa.Column("attempts", sa.Text),  # JSON list of {account, outcome, ms}
        sa.Column("error", sa.Text),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("request_body", sa.Text),  # only with monitor_capture_bodies; redacted
        sa.Column("response_body", sa.Text),
    )
    table.create(conn)
    sa.Index("ix_request_logs_started_at", table.c.started_at).create(conn)
    sa.Index("ix_request_logs_status", table.c.status).create(conn)
    sa.Index("ix_request_logs_account", table.c.account).create(conn)


def m004_request_log_account_id(conn: Connection) -> None:
    # Masked emails can coincide (a***e@x for alice@x and anne@x): statistics group by id.
    conn.exec_driver_sql("ALTER TABLE request_logs ADD COLUMN account_id VARCHAR(36)")


def m005_request_log_user_agent(conn: Connection) -> None:
    # Which tool sent it (claude-cli/…, OpenAI/Python …): the first thing asked when
    # a client misbehaves.
    conn.exec_driver_sql("ALTER TABLE request_logs ADD COLUMN user_agent VARCHAR(200)")


def m006_quota_windows(conn: Connection) -> None:
    # retrieveUserQuotaSummary's buckets: per model group (gemini, 3p = Claude and GPT), a
    # 5-hour and a weekly window. An empty weekly window keeps the account away from that
    # group's models until it resets, for days if need be.
    md = sa.MetaData()
    sa.Table("accounts", md, sa.Column("id", sa.String(36), primary_key=True))  # FK target
    sa.Table(
        "account_quota_windows",
        md,
        sa.Column(
            "account_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("bucket_id", sa.String(64), primary_key=True),  # gemini-weekly, 3p-5h, …
        sa.Column("model_group", sa.String(32), nullable=False),  # gemini, 3p
        sa.Column("window_kind", sa.String(16), nullable=False),  # 5h, weekly
        sa.Column("remaining_fraction", sa.Float),  # NULL: empty (Google omits it)
        sa.Column("reset_at", sa.Float),
        sa.Column("fetched_at", sa.Float, nullable=False),
    ).create(conn)


def m007_cooldowns_and_status_links(conn: Connection) -> None:
    # Cooldowns outlive a restart: until when (wall clock) an account should not be asked
    # for a model ("*": any model).
    sa.Table(
        "account_cooldowns",
        sa.MetaData(),
        sa.Column("account_id", sa.String(36), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("until", sa.Float, nullable=False),
    ).create(conn)
    # The link that goes with an account's state (Google's "verify your account" page).
    conn.exec_driver_sql("ALTER TABLE accounts ADD COLUMN status_url VARCHAR(1000)")


def m008_client_keys(conn: Connection) -> None:
    # Keys the owner gives to users and tools, each with its own limits. Only a digest of
    # the secret is kept (see keys/store.py), and its first characters to tell keys apart.
    sa.Table(
        "client_keys",
        sa.MetaData(),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("models", sa.Text),  # JSON list of id patterns; NULL: every model
        sa.Column("expires_at", sa.Float),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("concurrency", sa.Integer),
        sa.Column("daily_tokens", sa.Integer),
        sa.Column("quota_share", sa.Float),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("rotated_at", sa.Float),
    ).create(conn)
    # Which client key a request came with (its name; never the secret).
    conn.exec_driver_sql("ALTER TABLE request_logs ADD COLUMN key_name VARCHAR(100)")
    conn.exec_driver_sql("CREATE INDEX ix_request_logs_key_name ON request_logs (key_name)")


def m009_stored_responses(conn: Connection) -> None:
    # The Responses API's stored responses (`store`, `previous_response_id`): one row per
    # turn, linked to the turn it continued (see responses/store.py).
    sa.Table(
        "stored_responses",
        sa.MetaData(),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(100)),  # the client key's name; NULL: the gateway's
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("previous_id", sa.String(64)),
        sa.Column("input", sa.Text, nullable=False),  # JSON: this turn's input items
        sa.Column("response", sa.Text, nullable=False),  # JSON: the response object
    ).create(conn)
    conn.exec_driver_sql(
        "CREATE INDEX ix_stored_responses_created_at ON stored_responses (created_at)"
    )


# Every table as of migration 10 but schema_migrations.
_TABLES_AT_M010 = (
    "accounts",
    "account_quotas",
    "account_quota_windows",
    "account_cooldowns",
    "revisions",
    "request_logs",
    "client_keys",
    "stored_responses",
)


def m010_postgres_column_types(conn: Connection) -> None:
    # SQLite takes text of any length in a VARCHAR(200) and 64-bit numbers in an INTEGER;
    # PostgreSQL refuses both, and the monitor would then fail a whole batch over one
    # long user agent or path, a client key its daily_tokens above 2^31. Give PostgreSQL
    # SQLite's types: TEXT (no slower there than VARCHAR) and BIGINT. Floats are already
    # DOUBLE PRECISION there. Nothing to do on SQLite.
    if conn.dialect.name != "postgresql":
        return
    found = conn.execute(
        sa.text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ANY(:tables) "
            "AND data_type IN ('character varying', 'integer') "
            "ORDER BY table_name, ordinal_position"
        ),
        {"tables": list(_TABLES_AT_M010)},
    ).all()
    changes: dict[str, list[str]] = {}
    for table, column, kind in found:
        wide = "TEXT" if kind == "character varying" else "BIGINT"
        changes.setdefault(table, []).append(f'ALTER COLUMN "{column}" TYPE {wide}')
    for table, alters in changes.items():  # one statement per table: one rewrite each
        conn.exec_driver_sql(f'ALTER TABLE "{table}" {", ".join(alters)}')


MIGRATIONS: list[Migration] = [
    m001_accounts,
    m002_proxy_limits_revisions,
    m003_request_logs,
    m004_request_log_account_id,
    m005_request_log_user_agent,
    m006_quota_windows,
    m007_cooldowns_and_status_links,
    m008_client_keys,
    m009_stored_responses,
    m010_postgres_column_types,
]
# pg_advisory_xact_lock's key: a number of agproxy's own ("agproxy" in ASCII).
MIGRATION_LOCK = 0x616770726F7879

_applied = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def _one_at_a_time(conn: Connection) -> None:
    """Hold the migration lock until this transaction ends, on PostgreSQL: two gateways
    starting at once on one empty database must not both run migration 1. (SQLite's
    BEGIN IMMEDIATE already lets one writer in at a time.)"""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def _applied_versions(conn: Connection) -> set[int]:
    return {row.version for row in conn.execute(sa.select(_applied.c.version))}


def migrate(engine: Engine, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations not applied yet; return their names."""
    migrations = MIGRATIONS if migrations is None else migrations
    done: list[str] = []
    with engine.begin() as conn:
        _one_at_a_time(conn)
        _applied.create(conn, checkfirst=True)
        have = _applied_versions(conn)
    if len(have) > len(migrations) or (have and max(have) > len(migrations)):
        raise RuntimeError(
            f"the database was migrated by a newer agproxy (schema version {max(have)}, "
            f"this release knows {len(migrations)}); upgrade agproxy"
        )
    for version, migration in enumerate(migrations, 1):
        if version in have:
            continue
        with engine.begin() as conn:
            _one_at_a_time(conn)
            if version in _applied_versions(conn):
                continue  # another process applied it while this one waited
            migration(conn)
            conn.execute(
                sa.insert(_applied).values(
                    version=version, name=migration.__name__, applied_at=time.time()
                )
            )
        done.append(migration.__name__)
    return done
