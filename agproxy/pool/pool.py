"""In-memory view of the accounts that can serve requests.

Loaded from the account store when the proxy service starts and whenever the store's
revision moves (an account added from the CLI, a state change); the request path reads
only this, never the database. Each change builds a new Index and swaps it in whole,
so readers never see a half-built pool, and the request path looks accounts up in it
rather than walking the pool (a pool of 1,000 accounts costs what one of 3 does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agproxy.accounts.store import Account, AccountStore


@dataclass(frozen=True, slots=True)
class Index:
    """The pool's accounts (in the user's order) and the lookups the scheduler needs."""

    accounts: tuple[Account, ...] = ()
    by_id: dict[str, Account] = field(default_factory=dict)
    # id and lowercased email → accounts, for `fixed` mode's preferred_account
    by_name: dict[str, tuple[Account, ...]] = field(default_factory=dict)
    # model → the accounts whose quota data lists it, in the user's order
    by_model: dict[str, tuple[Account, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, accounts: tuple[Account, ...]) -> Index:
        by_name: dict[str, list[Account]] = {}
        by_model: dict[str, list[Account]] = {}
        for account in accounts:
            for name in {account.id, account.email.lower()}:
                by_name.setdefault(name, []).append(account)
            for model in dict.fromkeys(q.model for q in account.quotas):
                by_model.setdefault(model, []).append(account)
        return cls(
            accounts,
            {a.id: a for a in accounts},
            {k: tuple(v) for k, v in by_name.items()},
            {k: tuple(v) for k, v in by_model.items()},
        )


@dataclass
class Pool:
    store: AccountStore
    index: Index = field(default_factory=Index, init=False)
    models: tuple[str, ...] = field(default=(), init=False)
    # Disabled or marked (forbidden, refused…): what re-probing looks through each second
    # instead of reading every account from the database (25 ms of CPU with 1,000).
    out_of_rotation: tuple[Account, ...] = field(default=(), init=False)
    revision: int = field(default=-1, init=False)

    @property
    def accounts(self) -> tuple[Account, ...]:
        return self.index.accounts

    @accounts.setter
    def accounts(self, accounts: tuple[Account, ...]) -> None:
        self.index = Index.of(accounts)

    def load(self) -> int:
        """Re-read the serving accounts (enabled, status ok) in the user's order, and
        those out of rotation."""
        revision = self.store.revision()
        known = self.index.by_id
        fresh, resting = [], []
        for account in self.store.all():
            if not account.serving:
                resting.append(account)
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
        self.out_of_rotation = tuple(resting)
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
