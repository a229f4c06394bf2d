"""The account store: accounts and their quotas in the database.

Every write is one transaction, so a crash mid-write leaves either the old row or
the new one. Changes that other processes must notice (an account added, removed,
enabled, disabled, marked) bump the `accounts` revision.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from agproxy.accounts.windows import QuotaWindow
from agproxy.addresses import mask_url
from agproxy.db import revision
from agproxy.db.tables import (
    account_cooldowns,
    account_quota_windows,
    account_quotas,
    accounts,
)


class Status(StrEnum):
    OK = "ok"
    FORBIDDEN = "forbidden"  # the backend refused the account (403)
    NEEDS_RELOGIN = "needs_relogin"  # refresh answered invalid_grant
    # Google asks the owner to verify the account (403 VALIDATION_REQUIRED, with a link)
    NEEDS_VERIFICATION = "needs_verification"
    REFUSED = "refused"  # a terms-of-service refusal


@dataclass(frozen=True, slots=True)
class ModelQuota:
    model: str
    remaining_fraction: float | None  # None: exhausted (Google omits the fraction)
    reset_at: float | None
    max_output_tokens: int | None = None


@dataclass(slots=True)
class Account:
    id: str
    email: str
    refresh_token: str
    display_name: str | None = None
    access_token: str | None = None
    access_token_expires_at: float | None = None
    project_id: str | None = None
    tier: str | None = None
    enabled: bool = True
    status: Status = Status.OK
    status_reason: str | None = None
    status_changed_at: float | None = None
    sort_order: int = 0
    created_at: float = 0.0
    last_used_at: float | None = None
    proxy_url: str | None = None
    status_url: str | None = None  # the link that goes with the state (verify the account)
    oauth_client: str | None = None
    quotas: list[ModelQuota] = field(default_factory=list)
    quota_fetched_at: float | None = None
    windows: list[QuotaWindow] = field(default_factory=list)  # 5-hour and weekly buckets

    @property
    def serving(self) -> bool:
        return self.enabled and self.status is Status.OK

    def public(self) -> dict[str, object]:
        """The account as the CLI and admin API show it: never with its tokens."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.display_name,
            "state": self.state,
            "enabled": self.enabled,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "status_url": self.status_url,
            "status_changed_at": self.status_changed_at,
            "project_id": self.project_id,
            "tier": self.tier,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "proxy_url": mask_url(self.proxy_url),
            "quota_fetched_at": self.quota_fetched_at,
            "quotas": [
                {
                    "model": q.model,
                    "remaining_fraction": q.remaining_fraction,
                    "reset_at": q.reset_at,
                }
                for q in self.quotas
            ],
            "quota_windows": [w.public() for w in self.windows],
        }

    @property
    def state(self) -> str:
        """One word for lists: enabled, disabled, or the status (forbidden, …)."""
        if self.status is not Status.OK:
            return self.status.value
        return "enabled" if self.enabled else "disabled"


class UpsertResult(StrEnum):
    ADDED = "added"
    UPDATED = "updated"  # known email, new refresh token
    DUPLICATE = "duplicate"  # known email, same refresh token: nothing to do


def _row_to_account(row: sa.Row[Any]) -> Account:
    data = dict(row._mapping)
    data["status"] = Status(data["status"])
    return Account(**data)


class AccountStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- revision ------------------------------------------------------------
    @staticmethod
    def _bump(conn: Connection) -> None:
        revision.bump(conn, "accounts")

    def revision(self) -> int:
        return revision.read(self.engine, "accounts")

    # -- reading -------------------------------------------------------------
    def all(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(accounts).order_by(accounts.c.sort_order, accounts.c.created_at)
            ).all()
            quota_rows = conn.execute(
                sa.select(account_quotas).order_by(account_quotas.c.model)
            ).all()
            window_rows = conn.execute(
                sa.select(account_quota_windows).order_by(account_quota_windows.c.bucket_id)
            ).all()
        found = [_row_to_account(r) for r in rows]
        by_id = {a.id: a for a in found}
        for w in window_rows:
            if w.account_id in by_id:
                by_id[w.account_id].windows.append(
                    QuotaWindow(
                        w.bucket_id, w.model_group, w.window_kind, w.remaining_fraction, w.reset_at
                    )
                )
        for q in quota_rows:
            account = by_id.get(q.account_id)
            if account is None:
                continue
            account.quotas.append(
                ModelQuota(q.model, q.remaining_fraction, q.reset_at, q.max_output_tokens)
            )
            account.quota_fetched_at = max(account.quota_fetched_at or 0.0, q.fetched_at)
        return found

    def get(self, id_or_email: str) -> Account | None:
        """By id, id prefix (at least 6 characters) or email (case-insensitive)."""
        key = id_or_email.strip().lower()
        matches = [
            a
            for a in self.all()
            if a.id == key or a.email.lower() == key or (len(key) >= 6 and a.id.startswith(key))
        ]
        return matches[0] if len(matches) == 1 else None

    # -- writing -------------------------------------------------------------
    def upsert(
        self,
        email: str,
        refresh_token: str,
        *,
        display_name: str | None = None,
        access_token: str | None = None,
        expires_at: float | None = None,
        project_id: str | None = None,
        tier: str | None = None,
        quotas: list[ModelQuota] | None = None,
        windows: list[QuotaWindow] | None = None,
    ) -> tuple[Account, UpsertResult]:
        """Add an account, or give a known email its new refresh token (which also
        clears a needs-relogin or forbidden mark: the user signed in again)."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(accounts).where(sa.func.lower(accounts.c.email) == email.lower())
            ).first()
            values = {
                "refresh_token": refresh_token,
                "display_name": display_name,
                "access_token": access_token,
                "access_token_expires_at": expires_at,
                "project_id": project_id,
                "tier": tier,
            }
            values = {k: v for k, v in values.items() if v is not None}
            if row is None:
                account_id = self._insert(conn, email, values, now)
                result = UpsertResult.ADDED
            else:
                account_id = row.id
                if row.refresh_token == refresh_token and row.status == Status.OK.value:
                    result = UpsertResult.DUPLICATE
                else:
                    result = UpsertResult.UPDATED
                    values.update(status=Status.OK.value, status_reason=None, status_changed_at=now)
                conn.execute(
                    sa.update(accounts).where(accounts.c.id == account_id).values(**values)
                )
            if quotas is not None:
                self._replace_quotas(conn, account_id, quotas, now)
            if windows is not None:
                self._replace_windows(conn, account_id, windows, now)
            if result is not UpsertResult.DUPLICATE:
                self._bump(conn)
        account = self.get(account_id)
        assert account is not None
        return account, result

    @staticmethod
    def _insert(conn: sa.Connection, email: str, values: dict[str, Any], now: float) -> str:
        """A new account, last in the user's order; its id."""
        account_id = str(uuid.uuid4())
        order = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(accounts.c.sort_order), -1) + 1)
        ).scalar()
        conn.execute(
            sa.insert(accounts).values(
                id=account_id,
                email=email,
                enabled=True,
                status=Status.OK.value,
                sort_order=order,
                created_at=now,
                **values,
            )
        )
        return account_id

    def remove(self, account_id: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(account_quotas).where(account_quotas.c.account_id == account_id))
            conn.execute(
                sa.delete(account_quota_windows).where(
                    account_quota_windows.c.account_id == account_id
                )
            )
            gone = conn.execute(sa.delete(accounts).where(accounts.c.id == account_id)).rowcount
            if gone:
                self._bump(conn)
        return bool(gone)

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        self._update(account_id, bump=True, enabled=enabled)

    def set_status(
        self, account_id: str, status: Status, reason: str | None = None, url: str | None = None
    ) -> None:
        self._update(
            account_id,
            bump=True,
            status=status.value,
            status_reason=(reason or None) and reason[:800],
            status_url=(url or None) and url[:1000],
            status_changed_at=time.time(),
        )

    def save_tokens(
        self,
        account_id: str,
        access_token: str,
        expires_at: float,
        refresh_token: str | None = None,
    ) -> None:
        values: dict[str, object] = {
            "access_token": access_token,
            "access_token_expires_at": expires_at,
        }
        if refresh_token:
            values["refresh_token"] = refresh_token
        self._update(account_id, bump=False, **values)

    def save_project(self, account_id: str, project_id: str | None, tier: str | None) -> None:
        self._update(account_id, bump=False, project_id=project_id, tier=tier)

    def set_proxy(self, account_id: str, proxy_url: str | None) -> None:
        self._update(account_id, bump=True, proxy_url=proxy_url)

    def save_quotas(
        self, account_id: str, quotas: list[ModelQuota], windows: list[QuotaWindow] | None = None
    ) -> None:
        """Replace the account's per-model quota, and its windows unless `windows` is None
        (the summary could not be fetched: the last known windows stay)."""
        now = time.time()
        with self.engine.begin() as conn:
            self._replace_quotas(conn, account_id, quotas, now)
            if windows is not None:
                self._replace_windows(conn, account_id, windows, now)
            self._bump(conn)  # the catalog and the windows the pool schedules by may change

    # -- cooldowns -----------------------------------------------------------
    def save_cooldowns(self, rows: list[tuple[str, str, float]]) -> None:
        """Replace the stored cooldowns with these (account id, model or "*", until)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several processes on one store save in turn, not both deleting and then
                # both inserting the same rows (SQLite's BEGIN IMMEDIATE already does so).
                conn.exec_driver_sql("LOCK TABLE account_cooldowns IN EXCLUSIVE MODE")
            conn.execute(sa.delete(account_cooldowns))
            if rows:
                conn.execute(
                    sa.insert(account_cooldowns),
                    [{"account_id": a, "model": m, "until": u} for a, m, u in rows],
                )

    def load_cooldowns(self, now: float) -> list[tuple[str, str, float]]:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(account_cooldowns).where(account_cooldowns.c.until > now)
            ).all()
        return [(r.account_id, r.model, r.until) for r in found]

    def touch_used(self, used: dict[str, float]) -> None:
        """Record last-used times in one batch (called off the request path)."""
        if not used:
            return
        # One statement run over all rows (executemany), not one round trip per account.
        statement = (
            sa.update(accounts)
            .where(accounts.c.id == sa.bindparam("account_id"))
            .values(last_used_at=sa.bindparam("at"))
        )
        with self.engine.begin() as conn:
            conn.execute(statement, [{"account_id": a, "at": t} for a, t in used.items()])

    def _update(self, account_id: str, bump: bool, **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(**values))
            if bump:
                self._bump(conn)

    @staticmethod
    def _replace_quotas(
        conn: Connection, account_id: str, quotas: list[ModelQuota], now: float
    ) -> None:
        conn.execute(sa.delete(account_quotas).where(account_quotas.c.account_id == account_id))
        if quotas:
            conn.execute(
                sa.insert(account_quotas),
                [
                    {
                        "account_id": account_id,
                        "model": q.model,
                        "remaining_fraction": q.remaining_fraction,
                        "reset_at": q.reset_at,
                        "max_output_tokens": q.max_output_tokens,
                        "fetched_at": now,
                    }
                    for q in quotas
                ],
            )

    @staticmethod
    def _replace_windows(
        conn: Connection, account_id: str, windows: list[QuotaWindow], now: float
    ) -> None:
        table = account_quota_windows
        conn.execute(sa.delete(table).where(table.c.account_id == account_id))
        if windows:
            conn.execute(
                sa.insert(table),
                [
                    {
                        "account_id": account_id,
                        "bucket_id": w.bucket_id,
                        "model_group": w.group,
                        "window_kind": w.window,
                        "remaining_fraction": w.remaining_fraction,
                        "reset_at": w.reset_at,
                        "fetched_at": now,
                    }
                    for w in windows
                ],
            )
