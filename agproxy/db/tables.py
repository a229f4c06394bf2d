"""The current schema, for queries. Changed only together with a new migration."""

import sqlalchemy as sa

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts", metadata,
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
    sa.Column("sort_order", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float),
    sa.Column("proxy_url", sa.String(500)),
)

account_quotas = sa.Table(
    "account_quotas", metadata,
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("remaining_fraction", sa.Float),
    sa.Column("reset_at", sa.Float),
    sa.Column("fetched_at", sa.Float, nullable=False),
    sa.Column("max_output_tokens", sa.Integer),
)

revisions = sa.Table(
    "revisions", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
