"""In-memory view of the accounts that can serve requests.

Loaded from the account store when the proxy service starts and whenever the store's
revision moves (an account added from the CLI, a state change); the request path reads
only this, never the database. Reloading swaps whole tuples, so readers never see a
half-built pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agproxy.accounts.store import Account, AccountStore


@dataclass
class Pool:
    store: AccountStore
    accounts: tuple[Account, ...] = field(default=(), init=False)
    models: tuple[str, ...] = field(default=(), init=False)
    revision: int = field(default=-1, init=False)

    def load(self) -> int:
        """Re-read the serving accounts (enabled, status ok) in the user's order."""
        revision = self.store.revision()
        known = {a.id: a for a in self.accounts}
        fresh = []
        for account in self.store.all():
            if not account.serving:
                continue
            old = known.get(account.id)
            # Keep a token refreshed in memory that the store has not caught up with.
            if old is not None and (old.access_token_expires_at or 0) > (
                account.access_token_expires_at or 0
            ):
                account.access_token = old.access_token
                account.access_token_expires_at = old.access_token_expires_at
            fresh.append(account)
        self.accounts = tuple(fresh)
        self.models = tuple(sorted({q.model for a in fresh for q in a.quotas}))
        self.revision = revision
        return len(self.accounts)

    def reload_if_changed(self) -> bool:
        if self.store.revision() == self.revision:
            return False
        self.load()
        return True

    def drop(self, account_id: str) -> None:
        """Take an account out of rotation at once (the store is updated separately)."""
        self.accounts = tuple(a for a in self.accounts if a.id != account_id)

    def __len__(self) -> int:
        return len(self.accounts)
