"""Account operations shared by the CLI, the admin API and the console: add, import,
sign in, refresh quota. Each talks to Google through the same clients the gateway uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from agproxy.accounts.oauth import PKCE, GoogleOAuth, OAuthError, TokenGrant, display_name
from agproxy.accounts.project import FALLBACK_PROJECT, discover_project
from agproxy.accounts.quota import Forbidden, fetch_quotas, fetch_windows
from agproxy.accounts.store import Account, AccountStore, ModelQuota, Status, UpsertResult
from agproxy.accounts.tokens import QUOTA_MARGIN, TokenError, TokenManager
from agproxy.accounts.windows import QuotaWindow
from agproxy.upstream import CloudCodeClient, Credentials, Failure, UpstreamError

log = logging.getLogger("agproxy.accounts")
IMPORT_CONCURRENCY = 4


class AddError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ImportEntry:
    line: int
    refresh_token: str
    email: str | None = None


@dataclass(frozen=True)
class ImportResult:
    entry: ImportEntry
    outcome: str  # added, updated, duplicate, invalid
    email: str | None = None
    reason: str | None = None


def parse_import(text: str) -> tuple[list[ImportEntry], list[ImportResult]]:
    """A JSON array of {"refresh_token", "email"?} objects (or of strings), or one token
    per line. Returns the entries and the lines already known to be invalid."""
    entries: list[ImportEntry] = []
    invalid: list[ImportResult] = []
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise AddError(f"the file looks like JSON but is not valid JSON: {exc}") from exc
        for number, item in enumerate(items, 1):
            token = (
                item
                if isinstance(item, str)
                else (
                    item.get("refresh_token") or item.get("refreshToken")
                    if isinstance(item, dict)
                    else None
                )
            )
            email = item.get("email") if isinstance(item, dict) else None
            if isinstance(token, str) and token.strip():
                entries.append(ImportEntry(number, token.strip(), email))
            else:
                invalid.append(
                    ImportResult(
                        ImportEntry(number, ""), "invalid", email, "no refresh_token in this entry"
                    )
                )
        return entries, invalid
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(ImportEntry(number, line))
    return entries, invalid


class AccountService:
    def __init__(
        self, store: AccountStore, client: CloudCodeClient, oauth: GoogleOAuth, tokens: TokenManager
    ) -> None:
        self.store = store
        self.client = client
        self.oauth = oauth
        self.tokens = tokens

    # -- adding ----------------------------------------------------------
    async def add_refresh_token(
        self, refresh_token: str, email: str | None = None
    ) -> tuple[Account, UpsertResult]:
        """Validate the token by refreshing it, then store the account with its email,
        project, tier and quota. A refused token stores nothing."""
        try:
            grant = await self.oauth.refresh(refresh_token, self.client.settings().upstream_proxy)
        except OAuthError as exc:
            raise AddError(f"Google refused the refresh token: {exc.message}") from exc
        return await self._save_signed_in(refresh_token, grant, email)

    async def complete_login(
        self, code: str, redirect_uri: str, pkce: PKCE | None
    ) -> tuple[Account, UpsertResult]:
        try:
            grant = await self.oauth.exchange_code(code, redirect_uri, pkce)
        except OAuthError as exc:
            raise AddError(f"Google refused the sign-in: {exc.message}") from exc
        assert grant.refresh_token
        return await self._save_signed_in(grant.refresh_token, grant, None)

    async def _save_signed_in(
        self, refresh_token: str, grant: TokenGrant, email: str | None
    ) -> tuple[Account, UpsertResult]:
        name = None
        proxy = self.client.settings().upstream_proxy
        try:
            info = await self.oauth.userinfo(grant.access_token, proxy)
            email, name = str(info["email"]), display_name(info)
        except OAuthError as exc:
            if not email:
                raise AddError(f"could not read the account's email: {exc.message}") from exc
        assert email
        creds = Credentials(grant.access_token, None, proxy)
        project_id = tier = None
        try:
            found = await discover_project(self.client, creds)
            project_id, tier = found.project_id, found.tier
        except UpstreamError as exc:
            log.warning("project lookup for %s failed: %s", email, exc.message)
        quotas: list[ModelQuota] | None = None
        windows: list[QuotaWindow] | None = None
        forbidden: str | None = None
        creds = Credentials(grant.access_token, project_id, proxy)
        try:
            quotas = await fetch_quotas(self.client, creds)
            windows = await fetch_windows(self.client, creds)
        except Forbidden as exc:
            forbidden = exc.args[0] if exc.args else "403"
        except UpstreamError as exc:
            log.warning("quota fetch for %s failed: %s", email, exc.message)
        account, result = await asyncio.to_thread(
            self.store.upsert,
            email,
            refresh_token,
            display_name=name,
            access_token=grant.access_token,
            expires_at=grant.expires_at,
            project_id=project_id,
            tier=tier,
            quotas=quotas,
            windows=windows,
        )
        if forbidden:
            await asyncio.to_thread(
                self.store.set_status, account.id, Status.FORBIDDEN, f"Forbidden (403): {forbidden}"
            )
        return account, result

    async def import_entries(
        self, entries: Iterable[ImportEntry], progress: Callable[[ImportResult], None] | None = None
    ) -> list[ImportResult]:
        """Add each entry on its own; one bad line never stops the others. Each account
        is committed before it is reported, so what was reported added survives a crash."""
        seen: set[str] = set()
        semaphore = asyncio.Semaphore(IMPORT_CONCURRENCY)

        async def one(entry: ImportEntry) -> ImportResult:
            if entry.refresh_token in seen:
                result = ImportResult(entry, "duplicate", entry.email, "repeated in this file")
            else:
                seen.add(entry.refresh_token)
                async with semaphore:
                    try:
                        account, outcome = await self.add_refresh_token(
                            entry.refresh_token, entry.email
                        )
                        result = ImportResult(entry, outcome.value, account.email)
                    except AddError as exc:
                        result = ImportResult(entry, "invalid", entry.email, exc.message)
            if progress:
                progress(result)
            return result

        return list(await asyncio.gather(*(one(e) for e in entries)))

    # -- quota and project ---------------------------------------------------
    async def credentials(self, account: Account, margin: float = QUOTA_MARGIN) -> Credentials:
        token = await self.tokens.access_token(account, margin)
        project = account.project_id
        if not project:
            try:
                found = await discover_project(
                    self.client, Credentials(token, None, self.proxy_for(account))
                )
            except UpstreamError:
                found = None
            if found and found.project_id:
                account.project_id, account.tier = found.project_id, found.tier
                await asyncio.to_thread(
                    self.store.save_project, account.id, found.project_id, found.tier
                )
                project = found.project_id
        return Credentials(token, project or FALLBACK_PROJECT, self.proxy_for(account))

    def proxy_for(self, account: Account) -> str | None:
        """The account's own outbound proxy, else the global one, else none."""
        return account.proxy_url or self.client.settings().upstream_proxy

    async def refresh_quota(self, account: Account) -> list[ModelQuota]:
        """Fetch and store one account's quota. Raises TokenError, UpstreamError."""
        creds = await self.credentials(account)
        try:
            quotas = await fetch_quotas(self.client, creds)
        except UpstreamError as exc:
            if exc.kind is not Failure.AUTH_EXPIRED:
                raise
            creds = Credentials(await self.tokens.refresh(account), creds.project, creds.proxy)
            quotas = await fetch_quotas(self.client, creds)
        except Forbidden as exc:
            reason = f"Forbidden (403): {exc.args[0] if exc.args else ''}"
            await asyncio.to_thread(self.store.set_status, account.id, Status.FORBIDDEN, reason)
            account.status, account.status_reason = Status.FORBIDDEN, reason
            return []
        windows = await fetch_windows(self.client, creds)
        account.quotas = quotas
        if windows is not None:
            account.windows = windows
        await asyncio.to_thread(self.store.save_quotas, account.id, quotas, windows)
        if account.status is Status.FORBIDDEN:  # a successful fetch lifts the 403 mark
            await asyncio.to_thread(self.store.set_status, account.id, Status.OK, None)
            account.status, account.status_reason = Status.OK, None
        return quotas

    async def refresh_quotas(
        self, accounts: list[Account], progress: Callable[[Account, str | None], None] | None = None
    ) -> dict[str, str | None]:
        """Refresh several accounts, five at a time; returns account id → error or None."""
        semaphore = asyncio.Semaphore(5)
        errors: dict[str, str | None] = {}

        async def one(account: Account) -> None:
            async with semaphore:
                try:
                    await self.refresh_quota(account)
                    errors[account.id] = None
                except (TokenError, UpstreamError) as exc:
                    errors[account.id] = exc.message
            if progress:
                progress(account, errors[account.id])

        await asyncio.gather(*(one(a) for a in accounts))
        return errors


def summarize(results: list[ImportResult]) -> dict[str, Any]:
    counts = {k: 0 for k in ("added", "updated", "duplicate", "invalid")}
    for result in results:
        counts[result.outcome] += 1
    return counts
