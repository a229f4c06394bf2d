"""In-memory view of the accounts that can serve requests.

Loaded from the database when the proxy service starts (and when accounts
change); the request path reads only this, never the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import Engine

from agproxy.db.tables import account_quotas, accounts


@dataclass(frozen=True, slots=True)
class PoolAccount:
    id: str
    email: str


@dataclass
class Pool:
    engine: Engine
    accounts: tuple[PoolAccount, ...] = field(default=(), init=False)
    models: tuple[str, ...] = field(default=(), init=False)

    def load(self) -> int:
        """Re-read the serving accounts (enabled, status ok) in the user's order."""
        query = (
            sa.select(accounts.c.id, accounts.c.email)
            .where(accounts.c.enabled.is_(True), accounts.c.status == "ok")
            .order_by(accounts.c.sort_order, accounts.c.created_at)
        )
        serving = query.with_only_columns(accounts.c.id).order_by(None).scalar_subquery()
        models_query = (
            sa.select(account_quotas.c.model)
            .where(account_quotas.c.account_id.in_(serving))
            .distinct()
            .order_by(account_quotas.c.model)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            models = conn.execute(models_query).scalars().all()
        self.accounts = tuple(PoolAccount(r.id, r.email) for r in rows)
        self.models = tuple(models)
        return len(self.accounts)

    def __len__(self) -> int:
        return len(self.accounts)
