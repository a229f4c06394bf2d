"""The resilience policy every protocol shares: which account to try next, and what an
upstream failure means.

Only a failure that belongs to the account cools the account down:
- 429 (rate limit, quota): the account cools down for the delay the upstream gave (else
  its quota reset time for the model, else a growing default) and the request moves on.
- 403: the account is marked forbidden (with the reason) and the request moves on.
- 404: this account does not serve the model; it cools down for that model, move on.
- 401: refresh the token once and retry on the same account (a fresh token is what it
  needed); still refused after refreshing, or the refresh failed: move on.

A failure that follows the request, not the account, cools nothing, so one bad request
cannot make the pool look rate limited to every other client:
- 5xx, 429 MODEL_CAPACITY_EXHAUSTED, a broken or empty stream, a transport error: the
  request moves on to another account; once no other is left, an account that failed
  this way is asked once more after a short jittered pause.
- 400 and anything else: the request is bad, not the account: returned at once.

`retry_max_attempts` caps the attempts per request, so a request that fails everywhere
tries a few accounts, not the whole pool. The client then gets what happened (see
frontends/failures.py): 502 for a broken stream, an empty answer or a transport error,
the upstream's own 5xx (503 for capacity) otherwise; never a 429 that no account earned.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from agproxy.accounts import AccountService, Status
from agproxy.accounts.store import Account
from agproxy.accounts.tokens import TokenError
from agproxy.config import ErrorRule, Settings
from agproxy.monitor import note_attempt
from agproxy.monitor.alerts import Alerts
from agproxy.pool.scheduler import NoAccount, Scheduler
from agproxy.translate.envelope import wrap
from agproxy.upstream import Credentials, Failure, UpstreamError
from agproxy.upstream.errors import ANSWER_WAS_ERROR, is_bare_429

log = logging.getLogger("agproxy.policy")
T = TypeVar("T")

NOT_FOUND_COOLDOWN = 30.0
TRANSIENT_BACKOFF = 0.25
# Failures of this request, not of the account that served it: nothing cools down.
REQUEST_FAILURES = frozenset({Failure.CAPACITY, Failure.TRANSPORT})
# Bare 429s (no reason, no delay) are refused content when the accounts that sent them
# served other requests this recently (seconds), or when a probe this small succeeds.
CONTENT_EVIDENCE = 120.0
PROBE_REQUEST = {
    "contents": [{"role": "user", "parts": [{"text": "Say OK."}]}],
    "generationConfig": {"maxOutputTokens": 8},
}
PROBE_TIMEOUT = 15.0


def content_blocked_message(accounts: int) -> str:
    where = (
        f"{accounts} accounts that are serving other requests"
        if accounts > 1
        else "an account that answers other requests"
    )
    return (
        "content refused upstream: Google answered this request with a 429 that names no "
        f"quota and no reset time, from {where}. It is the request's content, not a rate "
        "limit, and sending it again will fail the same way. Change the system prompt, or "
        "defuse the sentence that triggers it with a prompt_rewrites rule (see the README: "
        "Content refused with a 429)."
    )


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


@dataclass
class _Tries:
    """One request's way through the pool."""

    model: str
    session: str | None
    tried: set[str] = field(default_factory=set)  # not to be asked again
    refreshed: set[str] = field(default_factory=set)  # token refreshed after a 401
    second_chance: list[Account] = field(default_factory=list)  # failed for this request once
    again: Account | None = None  # ask this one next, whatever the scheduler would pick
    last_error: UpstreamError | None = None
    # Bare 429s (no reason, no delay) not yet judged: rate limit or refused content?
    bare: list[tuple[Account, UpstreamError]] = field(default_factory=list)


# A 429 that names no delay and no quota reset: each repeat without a success between
# waits longer (default_cooldown_seconds × the setting backoff_steps, by default these),
# so an exhausted account with no known reset is not asked every minute for hours.
BACKOFF_STEPS = Settings().backoff_steps


TOS_REASONS = frozenset({"TOS_VIOLATION", "TERMS_OF_SERVICE_VIOLATION", "ACCOUNT_DISABLED"})
_LINK = re.compile(r"https://[^\s\"'<>)]+")


def _first_link(text: str) -> str | None:
    found = _LINK.search(text)
    return found.group(0) if found else None


def rule_for(rules: Sequence[ErrorRule], error: UpstreamError) -> ErrorRule | None:
    """The first of the user's error_rules that matches: the status, and the substring
    (case-insensitive) in the upstream's message or error body."""
    if not rules:
        return None
    said = error.message
    if error.body is not None:
        said += " " + orjson.dumps(error.body).decode("utf-8", "replace")
    lowered = said.lower()
    for rule in rules:
        if rule.status == error.status and (not rule.contains or rule.contains.lower() in lowered):
            return rule
    return None


def _outcome(error: UpstreamError) -> str:
    """An attempt's failure as the monitor lists it."""
    if is_bare_429(error):
        return "429 bare"
    if error.reason == ANSWER_WAS_ERROR:
        return f"200 answer_was_error ({error.kind.value})"
    return f"{error.status} {error.kind.value}"


class Policy:
    """`clock` (wall time, as quota reset times are) and `sleep` (the backoff waits) are
    handed in, so tests run every outcome in milliseconds without sleeping."""

    def __init__(
        self,
        scheduler: Scheduler,
        accounts: AccountService,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        alerts: Alerts | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.accounts = accounts
        self.alerts = alerts
        self.clock = clock
        self.sleep = sleep
        self.strikes: dict[tuple[str, str], int] = {}
        # model → (when, the 404): while 404s keep accounts away from a model, a request
        # that finds none left is told why, not that the pool is rate limited.
        self.not_found: dict[str, tuple[float, UpstreamError]] = {}
        # Set when processes share a Redis (shared/pool.py): a conversation's account as
        # another process bound it, and a notice that an account's state changed here.
        self.recall: Callable[[str], Awaitable[None]] | None = None
        self.announce: Callable[[str], None] | None = None

    def _cooldown_for(self, account: Account, model: str, error: UpstreamError) -> float:
        if error.retry_after is not None:
            return max(error.retry_after, 1.0)
        now = self.clock()
        for quota in account.quotas:
            if quota.model == model and quota.reset_at and quota.reset_at > now:
                return min(quota.reset_at - now, 3600.0)
        strikes = self.strikes.get((account.id, model), 0)
        self.strikes[(account.id, model)] = strikes + 1
        settings = self.scheduler.settings()
        steps = settings.backoff_steps
        return settings.default_cooldown_seconds * steps[min(strikes, len(steps) - 1)]

    def _cool(self, account: Account, model: str, error: UpstreamError) -> None:
        self.scheduler.cooldowns.set(account.id, model, self._cooldown_for(account, model, error))

    async def _judge_bare(self, tries: _Tries) -> None:
        """Bare 429s from every account asked so far: refused content (raised as
        CONTENT_BLOCKED, nothing cools) when each of those accounts served another request
        in the last CONTENT_EVIDENCE seconds, or a tiny probe on the last one succeeds;
        otherwise they are rate limits, and the accounts cool down as any 429 does."""
        accounts = [a for a, _ in tries.bare]
        healthy = len(accounts) >= 2 and all(
            self.scheduler.served_recently(a.id, CONTENT_EVIDENCE) for a in accounts
        )
        if healthy or await self.probe(accounts[-1], tries.model):
            note_attempt(accounts[-1].email, "content_blocked", tries.model, accounts[-1].id)
            raise UpstreamError(
                Failure.CONTENT_BLOCKED, 400, content_blocked_message(len(accounts))
            )
        for account, error in tries.bare:
            self._cool(account, tries.model, error)
        tries.bare.clear()

    async def probe(self, account: Account, model: str) -> bool:
        """One tiny generate call on `account`: does it serve `model` right now?"""
        try:
            creds = await self.accounts.credentials(account, margin=120.0)
            envelope = wrap(PROBE_REQUEST, model, creds.project or "", account.id)
            await asyncio.wait_for(self.accounts.client.generate(envelope, creds), PROBE_TIMEOUT)
        except (UpstreamError, TokenError, TimeoutError):
            return False
        return True

    async def _mark_forbidden(self, account: Account, error: UpstreamError) -> None:
        """A 403: Google asks the owner to verify the account (a link to open), refuses it
        under its terms of service, or forbids it for another reason."""
        lowered = error.message.lower()
        if error.validation_url or error.reason == "VALIDATION_REQUIRED" or "verify" in lowered:
            url = error.validation_url or _first_link(error.message)
            reason = f"Google asks to verify the account: {error.message}"
            await self._set_state(account, Status.NEEDS_VERIFICATION, reason, url)
        elif "terms of service" in lowered or error.reason in TOS_REASONS:
            await self._set_state(account, Status.REFUSED, f"Refused (403): {error.message}")
        else:
            await self._set_state(account, Status.FORBIDDEN, f"Forbidden (403): {error.message}")

    async def _set_state(
        self, account: Account, status: Status, reason: str, url: str | None = None
    ) -> None:
        """Take the account out of rotation in a state that says why."""
        reason = reason[:800]
        account.status, account.status_reason, account.status_url = status, reason, url
        self.scheduler.pool.drop(account.id)
        if self.alerts is not None:
            self.alerts.account_state(account.id, account.email, status.value, reason, url)
        try:
            await asyncio.to_thread(self.accounts.store.set_status, account.id, status, reason, url)
        except Exception:  # the request goes on; the store catches up at the next reload
            log.exception("could not record %s as %s", account.email, status.value)
            return
        if self.announce is not None:
            self.announce("accounts")

    async def _apply_rule(
        self, tries: _Tries, account: Account, error: UpstreamError, rule: ErrorRule
    ) -> None:
        """What the user's error rule says the error means (before the built-in table)."""
        tries.tried.add(account.id)
        if rule.action == "return_to_client":
            raise error
        if rule.action == "cooldown":
            self._cool(account, tries.model, error)
        elif rule.action == "disable_account":
            said = f" containing {rule.contains!r}" if rule.contains else ""
            reason = f"disabled by error_rules ({rule.status}{said}): {error.message}"
            await self._set_state(account, Status.FORBIDDEN, reason)
        # retry_other_account: the next account is asked, nothing cools

    async def _next_account(self, tries: _Tries) -> Account:
        """The account for the next attempt, or Exhausted when none is left."""
        if tries.again is not None:
            again, tries.again = tries.again, None
            return again
        try:
            pick = self.scheduler.pick(tries.model, tries.session, tries.tried)
        except NoAccount as exc:
            if tries.bare:  # nobody left to compare with: judge what there is
                await self._judge_bare(tries)
            if self.alerts is not None and not self.scheduler.has_free(tries.model):
                self.alerts.pool_empty(tries.model, exc.message, exc.retry_after)
            retry = self._second_chance(tries)
            if retry is None:
                raise Exhausted(tries.last_error or self._gone(tries.model), exc) from exc
            await self.sleep(TRANSIENT_BACKOFF * (0.5 + random.random()))
            return retry
        if pick.wait:
            await self.sleep(pick.wait)
        return pick.account

    def _gone(self, model: str) -> UpstreamError | None:
        """The 404 that sent the pool's accounts away from `model`, while it holds."""
        seen = self.not_found.get(model)
        if seen is None or self.clock() - seen[0] > NOT_FOUND_COOLDOWN:
            self.not_found.pop(model, None)
            return None
        return seen[1]

    def _second_chance(self, tries: _Tries) -> Account | None:
        """An account that failed this request for a reason of the request's own (a 5xx, a
        broken stream), still serving and not cooling down: asked once more when no other
        is left (a pool of one account still retries a dropped connection)."""
        while tries.second_chance:
            # the account as the pool holds it now
            account = self.scheduler.free_account(tries.second_chance.pop(0).id, tries.model)
            if account is not None:
                return account
        return None

    async def _failed(
        self, tries: _Tries, account: Account, error: UpstreamError, used: str = ""
    ) -> None:
        """What an upstream error means for the account and for the rest of the request;
        raises it when the request itself is at fault. `used`: the access token the
        failed call carried."""
        model = tries.model
        rule = rule_for(self.scheduler.settings().error_rules, error)
        if rule is not None:
            await self._apply_rule(tries, account, error, rule)
        elif error.kind in REQUEST_FAILURES:
            if account.id not in tries.tried:
                tries.second_chance.append(account)
            tries.tried.add(account.id)
        elif is_bare_429(error):
            tries.tried.add(account.id)
            tries.bare.append((account, error))
            if len(tries.bare) >= 2:
                await self._judge_bare(tries)
        elif error.kind is Failure.RATE_LIMITED:
            self._cool(account, model, error)
            tries.tried.add(account.id)
        elif error.kind is Failure.AUTH_EXPIRED and account.id not in tries.refreshed:
            tries.refreshed.add(account.id)
            try:
                await self.accounts.tokens.refresh(account, rejected=used)
            except TokenError:
                tries.tried.add(account.id)
            else:
                tries.again = account  # the fresh token is for this account: use it here
        elif error.kind is Failure.AUTH_EXPIRED:
            tries.tried.add(account.id)
        elif error.kind is Failure.FORBIDDEN:
            await self._mark_forbidden(account, error)
            tries.tried.add(account.id)
        elif error.kind is Failure.NOT_FOUND:
            self.scheduler.cooldowns.set(account.id, model, NOT_FOUND_COOLDOWN)
            self.not_found[model] = (self.clock(), error)
            tries.tried.add(account.id)
        else:
            raise error  # 400 and the like: the request is at fault, not the account

    async def run(
        self, model: str, session: str | None, call: Callable[[Attempt], Awaitable[T]]
    ) -> T:
        tries = _Tries(model, session)
        if session and self.recall is not None:
            await self.recall(session)
        for number in range(self.scheduler.settings().retry_max_attempts):
            account = await self._next_account(tries)
            try:
                creds = await self.accounts.credentials(account, margin=120.0)
            except TokenError as exc:
                log.warning("skipping %s: %s", account.email, exc.message)
                tries.tried.add(account.id)
                if exc.relogin:
                    self.scheduler.pool.drop(account.id)
                continue
            try:
                result = await call(Attempt(account, creds, model, number))
            except UpstreamError as error:
                tries.last_error = error
                outcome = _outcome(error)
                note_attempt(account.email, outcome, model, account.id)
                log.info("attempt %d on %s for %s: %s", number + 1, account.email, model, error)
                await self._failed(tries, account, error, creds.access_token)
                continue
            for limited, why in tries.bare:  # another account served the same request
                self._cool(limited, model, why)
            self.scheduler.succeeded(account, session)
            if self.alerts is not None:
                self.alerts.served(model)
            if self.strikes:
                self.strikes.pop((account.id, model), None)
            note_attempt(account.email, "ok", model, account.id)
            return result
        raise Exhausted(tries.last_error, None)
