"""accounts.google.com / oauth2.googleapis.com: consent page, token endpoint, userinfo
(UPSTREAM.md §1)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ._faults import unauthenticated_body
from ._http import Refusal, apply_fault, bearer, json_response, parse_json, record
from ._state import CodeGrant, FakeAccount, State

SCOPE = " ".join(
    [
        "openid",
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
        "https://www.googleapis.com/auth/cclog",
        "https://www.googleapis.com/auth/experimentsandconfigs",
    ]
)
FORM = "application/x-www-form-urlencoded"


def _oauth_error(status: int, error: str, description: str) -> Refusal:
    return Refusal(status, {"error": error, "error_description": description})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def id_token(account: FakeAccount, client_id: str) -> str:
    """An unsigned JWT-shaped id_token ("eyJ...") carrying the account's email."""
    now = int(time.time())
    header = {"alg": "RS256", "kid": "fake", "typ": "JWT"}
    claims = {
        "iss": "https://accounts.google.com",
        "aud": client_id,
        "azp": client_id,
        "sub": account.user_id,
        "email": account.email,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    return (
        ".".join(_b64url(json.dumps(part).encode()) for part in (header, claims))
        + "."
        + _b64url(b"fake-signature")
    )


class OAuth:
    def __init__(self, state: State) -> None:
        self.state = state

    # -- consent page ----------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        email = self.state.consent_email or self.state.last_email()
        record(self.state, request, None, email, "authorize")
        try:
            await apply_fault(self.state.take_fault("authorize", email, None), oauth=True)
            redirect_uri = self._check_authorize(params)
        except Refusal as refusal:  # Google shows an error page, it does not redirect
            title, text = refusal.body["error"], refusal.body["error_description"]
            return HTMLResponse(
                f"<html><body><h1>Error {refusal.status}: {html.escape(title)}"
                f"</h1><p>{html.escape(text)}</p></body></html>",
                refusal.status,
            )
        answer: list[tuple[str, str]]
        if self.state.consent_error:
            answer = [("error", self.state.consent_error)]
        elif email is None or email not in self.state.accounts:
            return HTMLResponse(
                "<html><body><h1>No account to sign in with</h1><p>set "
                "fake.consent_email to an added account</p></body></html>",
                400,
            )
        else:
            code = self.state.store_code(
                email,
                CodeGrant(
                    redirect_uri=redirect_uri,
                    code_challenge=params.get("code_challenge"),
                    challenge_method=params.get("code_challenge_method", "plain"),
                    offline=params.get("access_type") == "offline"
                    and "consent" in params.get("prompt", "").split(),
                ),
            )
            answer = [("code", code)]
        if "state" in params:
            answer.append(("state", params["state"]))
        if "code" in dict(answer):
            answer += [("scope", params.get("scope", "")), ("authuser", "0"), ("prompt", "consent")]
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + separator + urlencode(answer), 302)

    def _check_authorize(self, params: dict[str, str]) -> str:
        for name in ("client_id", "redirect_uri", "response_type", "scope"):
            if not params.get(name):
                raise _oauth_error(400, "invalid_request", f"Missing required parameter: {name}")
        clients = self.state.oauth_clients
        if clients is not None and params["client_id"] not in clients:
            raise _oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if params["response_type"] != "code":
            raise _oauth_error(
                400,
                "unsupported_response_type",
                f"Invalid response_type: {params['response_type']}",
            )
        if urlsplit(params["redirect_uri"]).scheme not in ("http", "https"):
            raise _oauth_error(
                400,
                "invalid_request",
                f"Invalid parameter value for redirect_uri: {params['redirect_uri']}",
            )
        if params.get("code_challenge") and params.get("code_challenge_method", "plain") not in (
            "S256",
            "plain",
        ):
            raise _oauth_error(400, "invalid_request", "Invalid code_challenge_method")
        return params["redirect_uri"]

    # -- token endpoint ----------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        raw = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        is_form = content_type == FORM
        form = (
            dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            if is_form
            else {}
        )
        email = self._email_for(form)
        record(self.state, request, form if is_form else parse_json(raw)[0], email, "token")
        try:
            await apply_fault(self.state.take_fault("token", email, None), oauth=True)
            if not is_form:
                raise _oauth_error(
                    400,
                    "invalid_request",
                    f"Invalid Content-Type: {content_type or 'none'}; send {FORM}",
                )
            client_id = self._check_client(form)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise _oauth_error(400, "invalid_request", "Missing required parameter: grant_type")
            if grant_type == "refresh_token":
                return json_response(self._refresh(form, client_id))
            if grant_type == "authorization_code":
                return json_response(self._exchange(form, client_id))
            raise _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        except Refusal as refusal:
            return refusal.response()

    def _email_for(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token"):
            with self.state.lock:
                self.state.refreshes[form["refresh_token"]] += 1
            account = self.state.account_by_refresh_token(form["refresh_token"])
            return account.email if account else None
        if form.get("grant_type") == "authorization_code":
            return self.state.oauth_codes.get(form.get("code", ""))
        return None

    def _check_client(self, form: dict[str, str]) -> str:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id:
            raise _oauth_error(
                400, "invalid_request", "Could not determine client ID from request."
            )
        if not secret:
            raise _oauth_error(400, "invalid_request", "client_secret is missing.")
        clients = self.state.oauth_clients
        if clients is not None:
            if client_id not in clients:
                raise _oauth_error(401, "invalid_client", "The OAuth client was not found.")
            if clients[client_id] != secret:
                raise _oauth_error(401, "invalid_client", "Unauthorized")
        return client_id

    def _refresh(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        if not form.get("refresh_token"):
            raise _oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
        account = self.state.account_by_refresh_token(form["refresh_token"])
        if account is None or account.revoked:
            raise _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        return self._grant(account, client_id, with_refresh_token=False)

    def _exchange(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        code, redirect_uri = form.get("code"), form.get("redirect_uri")
        if not code:
            raise _oauth_error(400, "invalid_request", "Missing required parameter: code")
        if not redirect_uri:
            raise _oauth_error(400, "invalid_request", "Missing parameter: redirect_uri")
        with self.state.lock:
            email = self.state.oauth_codes.get(code)
            if email is None:
                raise _oauth_error(400, "invalid_grant", "Malformed auth code.")
            grant = self.state.code_grants.setdefault(code, CodeGrant())
            if grant.used or (
                grant.redirect_uri is not None and grant.redirect_uri != redirect_uri
            ):
                raise _oauth_error(400, "invalid_grant", "Bad Request")
            _check_pkce(grant, form.get("code_verifier"))
            account = self.state.accounts.get(email)
            if account is None:
                raise _oauth_error(400, "invalid_grant", "Bad Request")
            grant.used = True
            if account.revoked:  # signing in again after a revoke mints a new refresh token
                account.refresh_token = f"1//fake-{secrets.token_urlsafe(24)}"
                account.revoked = False
        return self._grant(account, client_id, with_refresh_token=grant.offline)

    def _grant(
        self, account: FakeAccount, client_id: str, with_refresh_token: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.state.issue_access_token(account),
            "expires_in": account.access_token_ttl,
            "scope": SCOPE,
            "token_type": "Bearer",
            "id_token": id_token(account, client_id),
        }
        if with_refresh_token:
            body["refresh_token"] = account.refresh_token
        return body

    # -- userinfo ------------------------------------------------------------------------
    async def userinfo(self, request: Request) -> Response:
        account, reason = self.state.check_access_token(bearer(request))
        email = account.email if account else None
        record(self.state, request, None, email, "userinfo")
        try:
            await apply_fault(self.state.take_fault("userinfo", email, None))
        except Refusal as refusal:
            return refusal.response()
        if account is None:
            return json_response(
                unauthenticated_body(reason),
                401,
                {
                    "www-authenticate": 'Bearer realm="https://accounts.google.com/", '
                    'error="invalid_token"'
                },
            )
        return json_response(
            {
                "id": account.user_id,
                "email": account.email,
                "verified_email": True,
                "name": account.name,
                "given_name": account.given_name,
                "family_name": account.family_name,
                "picture": f"https://lh3.googleusercontent.com/a/fake-{account.user_id}=s96-c",
            }
        )


def _check_pkce(grant: CodeGrant, verifier: str | None) -> None:
    if not grant.code_challenge:
        return
    if not verifier:
        raise _oauth_error(400, "invalid_grant", "Missing code verifier.")
    expected = (
        _b64url(hashlib.sha256(verifier.encode()).digest())
        if grant.challenge_method == "S256"
        else verifier
    )
    if expected != grant.code_challenge:
        raise _oauth_error(400, "invalid_grant", "Invalid code verifier.")
