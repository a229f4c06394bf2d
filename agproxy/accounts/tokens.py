"""Access tokens: refreshed ahead of expiry, one refresh per account in flight.

However many requests wait for an account's token, one refresh runs and they all
get its result. `invalid_grant` marks the account as needing re-login; transient
failures are retried with backoff and never disable the account.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from agproxy.accounts.oauth import GoogleOAuth, OAuthError
from agproxy.accounts.store import Account, AccountStore, Status

log = logging.getLogger("agproxy.tokens")

REFRESH_MARGIN = 120.0  # refresh this long before expiry on the request path
QUOTA_MARGIN = 900.0  # background calls refresh earlier
TRANSIENT_ATTEMPTS = 3


class TokenError(Exception):
    """No access token for this account right now. `relogin` means the account is out
    of rotation until the user signs in again; otherwise try another account."""

    def __init__(self, account: Account, message: str, relogin: bool) -> None:
        super().__init__(message)
        self.account = account
        self.message = message
        self.relogin = relogin


class RefreshCoordinator(Protocol):
    """Refreshes shared with other processes (shared/tokens.py): one among all of them."""

    async def refresh(
        self, account: Account, refresh_here: Callable[[Account], Awaitable[str]]
    ) -> str: ...


class TokenManager:
    def __init__(
        self,
        oauth: GoogleOAuth,
        store: AccountStore,
        on_relogin: Callable[[Account], None] | None = None,
        proxy_for: Callable[[Account], str | None] = lambda _a: None,
        backoff: float = 0.5,
    ) -> None:
        self.proxy_for = proxy_for
        self._oauth = oauth
        self._store = store
        self.on_relogin = on_relogin
        self._backoff = backoff
        self._inflight: dict[str, asyncio.Future[str]] = {}
        # Set when processes share a Redis: one refresh among all of them (shared/tokens.py).
        self.shared: RefreshCoordinator | None = None

    async def access_token(self, account: Account, margin: float = REFRESH_MARGIN) -> str:
        expires_at = account.access_token_expires_at or 0.0
        if account.access_token and expires_at - margin > time.time():
            return account.access_token
        return await self.refresh(account)

    async def refresh(self, account: Account, rejected: str = "") -> str:
        """Refresh now, joining a refresh already running for this account. `rejected`:
        the token the upstream refused (a 401); when the account holds another one by now
        (a refresh finished while that call was out, here or in another process), that
        one is used rather than refreshing again."""
        if rejected and account.access_token and account.access_token != rejected:
            return account.access_token
        pending = self._inflight.get(account.id)
        if pending is None:
            work = (
                self._refresh(account)
                if self.shared is None
                else self.shared.refresh(account, self._refresh)
            )
            pending = asyncio.ensure_future(work)
            self._inflight[account.id] = pending
            pending.add_done_callback(lambda _f: self._inflight.pop(account.id, None))
        # shield: one waiter giving up (client gone) must not cancel everyone's refresh
        return await asyncio.shield(pending)

    async def _refresh(self, account: Account) -> str:
        for attempt in range(TRANSIENT_ATTEMPTS):
            try:
                grant = await self._oauth.refresh(account.refresh_token, self.proxy_for(account))
            except OAuthError as exc:
                if exc.kind == "invalid_grant":
                    reason = f"invalid_grant: {exc.message}"
                    await asyncio.to_thread(
                        self._store.set_status, account.id, Status.NEEDS_RELOGIN, reason
                    )
                    account.status, account.status_reason = Status.NEEDS_RELOGIN, reason
                    log.warning(
                        "account %s needs to sign in again (%s)", account.email, exc.message
                    )
                    if self.on_relogin:
                        self.on_relogin(account)
                    raise TokenError(
                        account,
                        f"{account.email} needs to sign in again: {exc.message}",
                        relogin=True,
                    ) from exc
                if exc.kind == "transient" and attempt + 1 < TRANSIENT_ATTEMPTS:
                    delay = self._backoff * (2**attempt) * (0.5 + random.random())
                    log.info(
                        "token refresh for %s failed (%s); retrying in %.1fs",
                        account.email,
                        exc.message,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                raise TokenError(
                    account,
                    f"token refresh for {account.email} failed: {exc.message}",
                    relogin=False,
                ) from exc
            account.access_token = grant.access_token
            account.access_token_expires_at = grant.expires_at
            if grant.refresh_token:
                account.refresh_token = grant.refresh_token
            await asyncio.to_thread(
                self._store.save_tokens,
                account.id,
                grant.access_token,
                grant.expires_at,
                grant.refresh_token,
            )
            return grant.access_token
        raise AssertionError("unreachable")
