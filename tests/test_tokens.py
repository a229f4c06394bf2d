"""Token lifecycle, project discovery and quota, in-process against the fake Google."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from fake_google import Fault

from agproxy.accounts import AccountService, Status, build_account_service
from agproxy.accounts.project import tier_of
from agproxy.accounts.quota import parse_quotas
from agproxy.accounts.tokens import TokenError
from agproxy.config import Settings


def settings_for(fake: Any) -> Settings:
    return Settings(
        api_key="sk-test-000000",
        upstream_base_urls=(fake.v1internal,),
        oauth_token_url=fake.token_url,
        oauth_userinfo_url=fake.userinfo_url,
        oauth_authorize_url=fake.authorize_url,
    )


def run(fake: Any, store: Any, work: Any) -> Any:
    """`work` with an account service on `store` (the `store` fixture: SQLite, PostgreSQL)."""
    settings = settings_for(fake)
    service = build_account_service(lambda: settings, store)
    service.tokens._backoff = 0.01  # keep transient retries fast in tests

    async def main() -> Any:
        try:
            return await work(service)
        finally:
            await service.client.close()

    return asyncio.run(main())


def new_email() -> str:
    return f"tok-{uuid.uuid4().hex[:8]}@example.com"


async def added(service: AccountService, fake: Any, **kw: Any) -> Any:
    acct = fake.add_account(email=new_email(), **kw)
    account, _ = await service.add_refresh_token(acct.refresh_token)
    return acct, account


def test_fifty_waiters_share_one_refresh(store, fake_google) -> None:  # type: ignore[no-untyped-def]
    async def work(service: AccountService) -> None:
        acct, account = await added(service, fake_google)
        before = fake_google.token_refresh_count(acct.refresh_token)
        account.access_token_expires_at = time.time() - 1  # expired
        fake_google.inject(Fault.slow(0.3), method="token")  # waiters pile up meanwhile
        tokens = await asyncio.gather(*(service.tokens.access_token(account) for _ in range(50)))
        assert len(set(tokens)) == 1
        assert fake_google.token_refresh_count(acct.refresh_token) == before + 1
        # The refreshed token is persisted.
        stored = service.store.get(account.id)
        assert stored is not None and stored.access_token == tokens[0]

    run(fake_google, store, work)


def test_a_401_after_the_refresh_finished_does_not_refresh_again(store, fake_google) -> None:  # type: ignore[no-untyped-def]
    """A call that went out with the old token comes back 401 after another request's
    refresh finished: it takes the new token, and Google is not asked again."""

    async def work(service: AccountService) -> None:
        acct, account = await added(service, fake_google)
        old = account.access_token
        fresh = await service.tokens.refresh(account)
        before = fake_google.token_refresh_count(acct.refresh_token)
        assert await service.tokens.refresh(account, rejected=old) == fresh
        assert fake_google.token_refresh_count(acct.refresh_token) == before
        # The token it holds refused itself: refreshed.
        assert await service.tokens.refresh(account, rejected=fresh) != fresh
        assert fake_google.token_refresh_count(acct.refresh_token) == before + 1

    run(fake_google, store, work)


@pytest.mark.parametrize(("seconds_left", "refreshes"), [(3000, 0), (60, 1), (-10, 1)])
def test_refresh_happens_ahead_of_expiry(
    store,
    fake_google,
    seconds_left: int,  # type: ignore[no-untyped-def]
    refreshes: int,
) -> None:
    async def work(service: AccountService) -> None:
        acct, account = await added(service, fake_google)
        account.access_token_expires_at = time.time() + seconds_left
        before = fake_google.token_refresh_count(acct.refresh_token)
        await service.tokens.access_token(account)
        assert fake_google.token_refresh_count(acct.refresh_token) - before == refreshes

    run(fake_google, store, work)


def test_invalid_grant_marks_the_account_for_relogin(store, fake_google) -> None:  # type: ignore[no-untyped-def]
    dropped: list[str] = []

    async def work(service: AccountService) -> None:
        acct, account = await added(service, fake_google)
        service.tokens.on_relogin = lambda a: dropped.append(a.id)
        fake_google.revoke(acct.refresh_token)
        with pytest.raises(TokenError) as caught:
            await service.tokens.refresh(account)
        assert caught.value.relogin is True
        assert acct.refresh_token not in caught.value.message
        stored = service.store.get(account.id)
        assert stored is not None and stored.status is Status.NEEDS_RELOGIN
        assert stored.status_reason and "invalid_grant" in stored.status_reason
        assert dropped == [account.id]

    run(fake_google, store, work)


def test_transient_refresh_failures_retry_and_never_disable(store, fake_google) -> None:  # type: ignore[no-untyped-def]
    async def work(service: AccountService) -> None:
        acct, account = await added(service, fake_google)
        fake_google.inject(Fault.server_error(503), method="token", times=2)
        token = await service.tokens.refresh(account)  # third try succeeds
        assert token.startswith("ya29.")
        fake_google.inject(Fault.server_error(503), method="token", times=3)
        with pytest.raises(TokenError) as caught:
            await service.tokens.refresh(account)
        assert caught.value.relogin is False
        stored = service.store.get(account.id)
        assert stored is not None and stored.status is Status.OK and stored.enabled

    run(fake_google, store, work)


def test_quota_refresh_updates_the_store_and_a_403_marks_forbidden(store, fake_google) -> None:  # type: ignore[no-untyped-def]
    async def work(service: AccountService) -> None:
        acct, account = await added(service, fake_google)
        fake_google.inject(
            Fault.forbidden(), email=acct.email, method="fetchAvailableModels", times=2
        )
        assert await service.refresh_quota(account) == []
        stored = service.store.get(account.id)
        assert stored is not None and stored.status is Status.FORBIDDEN
        assert stored.status_reason and stored.status_reason.startswith("Forbidden (403)")
        # The next successful fetch lifts the mark.
        quotas = await service.refresh_quota(account)
        assert quotas and service.store.get(account.id).status is Status.OK  # type: ignore[union-attr]

    run(fake_google, store, work)


def test_quota_call_answered_401_refreshes_once_and_retries(store, fake_google) -> None:  # type: ignore[no-untyped-def]
    async def work(service: AccountService) -> None:
        acct, account = await added(service, fake_google)
        before = fake_google.token_refresh_count(acct.refresh_token)
        fake_google.inject(Fault.unauthenticated(), email=acct.email, method="fetchAvailableModels")
        assert await service.refresh_quota(account)
        assert fake_google.token_refresh_count(acct.refresh_token) == before + 1

    run(fake_google, store, work)


def test_parse_quotas_table() -> None:
    body = {
        "models": {
            "gemini-3-flash": {
                "quotaInfo": {"remainingFraction": 0.82, "resetTime": "2026-08-22T15:00:00Z"},
                "maxOutputTokens": 65536,
            },
            "claude-sonnet-4-6": {"quotaInfo": {"resetTime": "2026-08-22T17:00:00Z"}},
            "chat_20706": {"quotaInfo": {"remainingFraction": 1}},
            "gemini-no-quota": {"displayName": "x"},
            "imagen-4": {"quotaInfo": {"remainingFraction": 1, "resetTime": ""}},
        }
    }
    parsed = {q.model: q for q in parse_quotas(body)}
    assert set(parsed) == {"gemini-3-flash", "claude-sonnet-4-6", "imagen-4"}
    assert parsed["gemini-3-flash"].remaining_fraction == 0.82
    assert parsed["gemini-3-flash"].reset_at == 1787410800.0
    assert parsed["gemini-3-flash"].max_output_tokens == 65536
    assert parsed["claude-sonnet-4-6"].remaining_fraction is None  # missing = exhausted
    assert parsed["imagen-4"].reset_at is None


@pytest.mark.parametrize(
    ("info", "tier"),
    [
        (
            {
                "paidTier": {"id": "g1-pro-tier", "name": "Google AI Pro"},
                "currentTier": {"id": "free-tier", "name": "Free"},
            },
            "Google AI Pro",
        ),
        ({"currentTier": {"id": "free-tier", "name": "Free"}}, "Free"),
        ({"currentTier": {"id": "standard-tier"}}, "standard-tier"),
        (
            {
                "currentTier": {"id": "free-tier", "name": "Free"},
                "ineligibleTiers": [{"reasonCode": "x"}],
                "allowedTiers": [{"id": "free-tier", "name": "Free", "isDefault": True}],
            },
            "Free (Restricted)",
        ),
        ({}, None),
    ],
)
def test_tier_of(info: dict, tier: str | None) -> None:
    assert tier_of(info) == tier
