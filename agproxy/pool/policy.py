"""The resilience policy every protocol shares: which account to try next, and what an
upstream failure means.

- 429: the account cools down for the delay the upstream gave (else its quota reset
  time for the model, else a default) and the request moves on to another account.
- 401: refresh the token once and retry on the same account.
- 403: the account is marked forbidden (with the reason) and the request moves on.
- 5xx, capacity, transport: one jittered retry on the same account, then others.
- 404: this account does not serve the model; move on.
- 400 and anything else: the request is bad, not the account: returned at once.
A retry budget caps the attempts per request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from agproxy.accounts import AccountService, Status
from agproxy.accounts.store import Account
from agproxy.accounts.tokens import TokenError
from agproxy.monitor import note_attempt
from agproxy.pool.scheduler import NoAccount, Scheduler
from agproxy.upstream import Credentials, Failure, UpstreamError

log = logging.getLogger("agproxy.policy")
T = TypeVar("T")

CAPACITY_COOLDOWN = 8.0
NOT_FOUND_COOLDOWN = 30.0
TRANSIENT_BACKOFF = 0.25


@dataclass(frozen=True, slots=True)
class Attempt:
    account: Account
    creds: Credentials
    model: str
    number: int


class Exhausted(Exception):
    """Every attempt failed. `error` is the last upstream error, `no_account` set when the
    pool ran out of accounts to try."""

    def __init__(self, error: UpstreamError | None, no_account: NoAccount | None) -> None:
        super().__init__(str(error or no_account))
        self.error = error
        self.no_account = no_account


# A 429 that names no delay and no quota reset: each repeat without a success between
# waits longer (default_cooldown_seconds × these), so an exhausted account with no known
# reset is not asked every minute for hours.
BACKOFF_STEPS = (1, 5, 30, 120)


class Policy:
    def __init__(self, scheduler: Scheduler, accounts: AccountService) -> None:
        self.scheduler = scheduler
        self.accounts = accounts
        self.strikes: dict[tuple[str, str], int] = {}

    def _cooldown_for(self, account: Account, model: str, error: UpstreamError) -> float:
        if error.retry_after is not None:
            return max(error.retry_after, 1.0)
        for quota in account.quotas:
            if quota.model == model and quota.reset_at and quota.reset_at > time.time():
                return min(quota.reset_at - time.time(), 3600.0)
        strikes = self.strikes.get((account.id, model), 0)
        self.strikes[(account.id, model)] = strikes + 1
        step = BACKOFF_STEPS[min(strikes, len(BACKOFF_STEPS) - 1)]
        return self.scheduler.settings().default_cooldown_seconds * step

    async def _mark_forbidden(self, account: Account, error: UpstreamError) -> None:
        reason = f"Forbidden (403): {error.message}"[:800]
        account.status, account.status_reason = Status.FORBIDDEN, reason
        self.scheduler.pool.drop(account.id)
        try:
            await asyncio.to_thread(self.accounts.store.set_status, account.id,
                                    Status.FORBIDDEN, reason)
        except Exception:  # the request goes on; the store catches up at the next reload
            log.exception("could not record %s as forbidden", account.email)

    async def run(self, model: str, session: str | None,
                  call: Callable[[Attempt], Awaitable[T]]) -> T:
        settings = self.scheduler.settings()
        tried: set[str] = set()
        refreshed: set[str] = set()
        retried_transient: set[str] = set()
        last_error: UpstreamError | None = None
        for number in range(settings.retry_max_attempts):
            try:
                pick = self.scheduler.pick(model, session, tried)
            except NoAccount as exc:
                raise Exhausted(last_error, exc) from exc
            account = pick.account
            if pick.wait:
                await asyncio.sleep(pick.wait)
            try:
                creds = await self.accounts.credentials(account, margin=120.0)
            except TokenError as exc:
                log.warning("skipping %s: %s", account.email, exc.message)
                tried.add(account.id)
                if exc.relogin:
                    self.scheduler.pool.drop(account.id)
                continue
            try:
                result = await call(Attempt(account, creds, model, number))
            except UpstreamError as error:
                last_error = error
                note_attempt(account.email, f"{error.status} {error.kind.value}", model,
                             account.id)
                log.info("attempt %d on %s for %s: %s", number + 1, account.email, model,
                         error)
                if error.kind is Failure.RATE_LIMITED:
                    self.scheduler.cooldowns.set(account.id, model,
                                                 self._cooldown_for(account, model, error))
                    tried.add(account.id)
                elif error.kind is Failure.AUTH_EXPIRED and account.id not in refreshed:
                    refreshed.add(account.id)
                    try:
                        await self.accounts.tokens.refresh(account)
                    except TokenError:
                        tried.add(account.id)
                elif error.kind is Failure.AUTH_EXPIRED:
                    tried.add(account.id)
                elif error.kind is Failure.FORBIDDEN:
                    await self._mark_forbidden(account, error)
                    tried.add(account.id)
                elif error.kind in (Failure.CAPACITY, Failure.TRANSPORT):
                    if account.id in retried_transient:
                        self.scheduler.cooldowns.set(account.id, model, CAPACITY_COOLDOWN)
                        tried.add(account.id)
                    else:
                        retried_transient.add(account.id)
                        await asyncio.sleep(TRANSIENT_BACKOFF * (0.5 + random.random()))
                elif error.kind is Failure.NOT_FOUND:
                    self.scheduler.cooldowns.set(account.id, model, NOT_FOUND_COOLDOWN)
                    tried.add(account.id)
                else:
                    raise  # 400 and the like: the request is at fault, not the account
                continue
            self.scheduler.succeeded(account, session)
            if self.strikes:
                self.strikes.pop((account.id, model), None)
            note_attempt(account.email, "ok", model, account.id)
            return result
        raise Exhausted(last_error, None)
