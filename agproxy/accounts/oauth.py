"""Google OAuth for the Antigravity client: authorize URL (PKCE + state), code exchange,
refresh, userinfo. Nothing here ever puts a token into an error message."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from agproxy.config import Settings
from agproxy.upstream.errors import TRANSPORT_ERRORS
from agproxy.upstream.sessions import Sessions

CLIENT_ID = "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
CLIENT_SECRET = "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"
SCOPES = (
    "openid",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/cclog",
    "https://www.googleapis.com/auth/experimentsandconfigs",
)
TIMEOUT = aiohttp.ClientTimeout(total=20, connect=10)


class OAuthError(Exception):
    """`kind`: invalid_grant (the refresh token is dead: re-login), transient (retry later),
    rejected (Google refused the request for another reason)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_at: float
    refresh_token: str | None = None
    id_token: str | None = None


@dataclass(frozen=True)
class PKCE:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> PKCE:
        verifier = secrets.token_urlsafe(64)[:96]
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


class GoogleOAuth:
    def __init__(self, settings: Callable[[], Settings], sessions: Sessions) -> None:
        self._settings = settings
        self._sessions = sessions

    def _user_agent(self) -> str:
        return f"vscode/1.X.X (Antigravity/{self._settings().upstream_client_version})"

    def authorize_url(self, redirect_uri: str, state: str, pkce: PKCE) -> str:
        query = {
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
        return f"{self._settings().oauth_authorize_url}?{urlencode(query)}"

    async def _post_form(self, form: dict[str, str], proxy: str | None) -> tuple[int, bytes]:
        url = self._settings().oauth_token_url
        with self._sessions.lease(proxy) as way:
            async with way.session.post(
                url,
                data=form,
                timeout=TIMEOUT,
                proxy=way.proxy,
                headers={"User-Agent": self._user_agent(), "Accept": "application/json"},
            ) as response:
                return response.status, await response.read()

    async def _token_call(self, form: dict[str, str], proxy: str | None = None) -> dict[str, Any]:
        form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
        try:
            try:
                status, raw = await self._post_form(form, proxy)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise  # no connection at all: asking again at once would not help
                # A kept-alive connection the server closed as it was reused: the form
                # never reached it, so it is sent once more on a new connection.
                status, raw = await self._post_form(form, proxy)
        except TRANSPORT_ERRORS as exc:
            raise OAuthError(
                "transient",
                f"token endpoint unreachable: {type(exc).__name__}"
                f"{': ' + str(exc) if str(exc) else ''}",
            ) from exc
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        if status == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        reason = f"{error}: {description}" if description else (error or f"HTTP {status}")
        if error == "invalid_grant":
            raise OAuthError("invalid_grant", reason)
        if status >= 500 or status == 429:
            raise OAuthError("transient", f"token endpoint answered {status}: {reason}")
        raise OAuthError("rejected", reason)

    @staticmethod
    def _grant(body: dict[str, Any]) -> TokenGrant:
        return TokenGrant(
            access_token=str(body["access_token"]),
            expires_at=time.time() + float(body.get("expires_in", 3599)),
            refresh_token=body.get("refresh_token"),
            id_token=body.get("id_token"),
        )

    async def refresh(self, refresh_token: str, proxy: str | None = None) -> TokenGrant:
        body = await self._token_call(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, proxy
        )
        return self._grant(body)

    async def exchange_code(self, code: str, redirect_uri: str, pkce: PKCE | None) -> TokenGrant:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if pkce is not None:
            form["code_verifier"] = pkce.verifier
        grant = self._grant(await self._token_call(form))
        if not grant.refresh_token:
            raise OAuthError(
                "rejected",
                "No refresh token returned by Google (the consent "
                "screen must be shown: sign in again)",
            )
        return grant

    async def userinfo(self, access_token: str, proxy: str | None = None) -> dict[str, Any]:
        try:
            with self._sessions.lease(proxy) as way:
                async with way.session.get(
                    self._settings().oauth_userinfo_url,
                    timeout=TIMEOUT,
                    proxy=way.proxy,
                    headers={
                        "Authorization": f"Bearer {access_token}",
                        "User-Agent": self._user_agent(),
                    },
                ) as response:
                    raw = await response.read()
                    status = response.status
        except TRANSPORT_ERRORS as exc:
            raise OAuthError("transient", f"userinfo unreachable: {type(exc).__name__}") from exc
        if status != 200:
            kind = "transient" if status >= 500 else "rejected"
            raise OAuthError(kind, f"userinfo answered HTTP {status}")
        try:
            info = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise OAuthError("transient", "userinfo answered with something not JSON") from None
        if not isinstance(info, dict) or not info.get("email"):
            raise OAuthError("rejected", "userinfo has no email (the email scope is missing)")
        return info


def display_name(info: dict[str, Any]) -> str | None:
    name = str(info.get("name") or "").strip()
    if name:
        return name
    joined = f"{info.get('given_name') or ''} {info.get('family_name') or ''}".strip()
    return joined or None
