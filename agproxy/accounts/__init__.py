"""Google accounts: the store, OAuth, token refresh, project discovery, quota."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from agproxy.accounts.oauth import GoogleOAuth
from agproxy.accounts.service import AccountService
from agproxy.accounts.store import Account, AccountStore, Status
from agproxy.accounts.tokens import TokenManager
from agproxy.config import Settings
from agproxy.upstream import CloudCodeClient

__all__ = ["Account", "AccountService", "AccountStore", "Status", "build_account_service"]


def build_account_service(
    settings: Callable[[], Settings],
    engine: Engine,
    on_relogin: Callable[[Account], None] | None = None,
) -> AccountService:
    """Wire the store, the upstream client, OAuth and the token manager together."""
    store = AccountStore(engine)
    client = CloudCodeClient(settings)
    oauth = GoogleOAuth(settings, client.sessions)
    tokens = TokenManager(oauth, store, on_relogin=on_relogin)
    service = AccountService(store, client, oauth, tokens)
    tokens.proxy_for = service.proxy_for
    return service
