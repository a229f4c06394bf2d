"""The current schema, for queries. Changed only together with a new migration.

Whole numbers are BigInteger: SQLite's INTEGER is 64-bit, PostgreSQL's BIGINT after m010,
and on PostgreSQL a parameter is cast to the type named here (`::INTEGER` would refuse
a daily_tokens limit above 2^31). Declared string lengths are not limits on either: SQLite
ignores them and m010 made the PostgreSQL columns TEXT.
"""

import sqlalchemy as sa

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200)),
    sa.Column("refresh_token", sa.Text, nullable=False),
    sa.Column("access_token", sa.Text),
    sa.Column("access_token_expires_at", sa.Float),
    sa.Column("oauth_client", sa.String(64)),
    sa.Column("project_id", sa.String(200)),
    sa.Column("tier", sa.String(32)),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("status_reason", sa.Text),
    sa.Column("status_changed_at", sa.Float),
    sa.Column("sort_order", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float),
    sa.Column("proxy_url", sa.String(500)),
    sa.Column("status_url", sa.String(1000)),
)

account_cooldowns = sa.Table(
    "account_cooldowns",
    metadata,
    sa.Column("account_id", sa.String(36), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),  # "*": every model
    sa.Column("until", sa.Float, nullable=False),  # wall clock
)

account_quotas = sa.Table(
    "account_quotas",
    metadata,
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
    sa.Column("max_output_tokens", sa.BigInteger),
)

account_quota_windows = sa.Table(
    "account_quota_windows",
    metadata,
    sa.Column(
        "account_id",
        sa.String(36),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("bucket_id", sa.String(64), primary_key=True),
    sa.Column("model_group", sa.String(32), nullable=False),
    sa.Column("window_kind", sa.String(16), nullable=False),
    sa.Column("remaining_fraction", sa.Float),
    sa.Column("reset_at", sa.Float),
    sa.Column("fetched_at", sa.Float, nullable=False),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

request_logs = sa.Table(
    "request_logs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("protocol", sa.String(16), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("path", sa.String(500), nullable=False),
    sa.Column("requested_model", sa.String(200)),
    sa.Column("routed_model", sa.String(200)),
    sa.Column("provider", sa.String(16)),
    sa.Column("account", sa.String(320)),
    sa.Column("status", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("ttfb_ms", sa.Float),
    sa.Column("input_tokens", sa.BigInteger),
    sa.Column("output_tokens", sa.BigInteger),
    sa.Column("thinking_tokens", sa.BigInteger),
    sa.Column("cached_tokens", sa.BigInteger),
    sa.Column("attempts", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("client_ip", sa.String(64)),
    sa.Column("request_body", sa.Text),
    sa.Column("response_body", sa.Text),
    sa.Column("account_id", sa.String(36)),
    sa.Column("user_agent", sa.String(200)),
    sa.Column("key_name", sa.String(100)),
)

client_keys = sa.Table(
    "client_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("models", sa.Text),
    sa.Column("expires_at", sa.Float),
    sa.Column("rpm", sa.BigInteger),
    sa.Column("tpm", sa.BigInteger),
    sa.Column("concurrency", sa.BigInteger),
    sa.Column("daily_tokens", sa.BigInteger),
    sa.Column("quota_share", sa.Float),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("rotated_at", sa.Float),
)

stored_responses = sa.Table(
    "stored_responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(100)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("previous_id", sa.String(64)),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
)
