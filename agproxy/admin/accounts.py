"""Admin API for accounts: list, add, import, enable/disable, remove, quota, Google sign-in.

The sign-in flow redirects to the gateway's own /auth/callback (a public route: Google's
redirect carries no admin password); the state ties the callback to the sign-in it
belongs to, and an unknown or stale state is refused.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from agproxy.accounts.login import LoginError, LoginFlow, extract_code, page
from agproxy.accounts.service import AddError, parse_import, summarize
from agproxy.accounts.store import Account
from agproxy.addresses import mask_url, normalize_proxy
from agproxy.admin.proxy import admin_error, log_security_event, read_json_object
from agproxy.frontends.common import JSONResponse
from agproxy.service import Gateway

LOGIN_TTL = 15 * 60


@dataclass
class PendingLogin:
    flow: LoginFlow
    created: float = field(default_factory=time.time)
    status: str = "pending"  # pending, working, done, error
    email: str | None = None
    error: str | None = None


def _gateway(request: Request) -> Gateway:
    return cast(Gateway, request.app.state.gateway)


def _logins(request: Request) -> dict[str, PendingLogin]:
    logins: dict[str, PendingLogin] = request.app.state.logins
    now = time.time()
    for state in [s for s, p in logins.items() if now - p.created > LOGIN_TTL]:
        del logins[state]
    return logins


async def _find(request: Request) -> Account | Response:
    gateway = _gateway(request)
    account = await run_in_threadpool(gateway.accounts.store.get, request.path_params["id"])
    if account is None:
        return admin_error(404, f"no account {request.path_params['id']!r}")
    return account


async def _changed(gateway: Gateway) -> None:
    """Apply an account change to the pool now rather than at the next poll."""
    await run_in_threadpool(gateway.pool.load)
    gateway.announce("accounts")


async def list_accounts(request: Request) -> Response:
    gateway = _gateway(request)
    found = await run_in_threadpool(gateway.accounts.store.all)
    return JSONResponse(
        {"accounts": [a.public() for a in found], "active_accounts": len(gateway.pool)}
    )


async def add_account(request: Request) -> Response:
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    token = body.get("refresh_token") or body.get("refreshToken")
    if not isinstance(token, str) or not token.strip():
        return admin_error(400, "refresh_token is required", "refresh_token")
    gateway = _gateway(request)
    try:
        account, outcome = await gateway.accounts.add_refresh_token(
            token.strip(), body.get("email")
        )
    except AddError as exc:
        return admin_error(400, exc.message, "refresh_token")
    await _changed(gateway)
    return JSONResponse(
        {"result": outcome.value, "account": account.public()},
        status_code=201 if outcome.value == "added" else 200,
    )


async def import_accounts(request: Request) -> Response:
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    text = body.get("text")
    if not isinstance(text, str):
        return admin_error(400, "text (the file's content) is required", "text")
    try:
        entries, invalid = parse_import(text)
    except AddError as exc:
        return admin_error(400, exc.message, "text")
    gateway = _gateway(request)
    results = sorted(
        invalid + await gateway.accounts.import_entries(entries), key=lambda r: r.entry.line
    )
    await _changed(gateway)
    return JSONResponse(
        {
            "summary": summarize(results),
            "results": [
                {"line": r.entry.line, "outcome": r.outcome, "email": r.email, "reason": r.reason}
                for r in results
            ],
        }
    )


async def remove_account(request: Request) -> Response:
    account = await _find(request)
    if isinstance(account, Response):
        return account
    gateway = _gateway(request)
    await run_in_threadpool(gateway.accounts.store.remove, account.id)
    await _changed(gateway)
    return JSONResponse({"removed": account.id})


async def _set_enabled(request: Request, enabled: bool) -> Response:
    account = await _find(request)
    if isinstance(account, Response):
        return account
    gateway = _gateway(request)
    await run_in_threadpool(gateway.accounts.store.set_enabled, account.id, enabled)
    await _changed(gateway)
    fresh = await run_in_threadpool(gateway.accounts.store.get, account.id)
    return JSONResponse({"account": fresh.public() if fresh else None})


async def reset_account(request: Request) -> Response:
    """POST {"model": M?}: clear the account's cooldowns (for M, or all) and, for all
    models, a refusal state (see Gateway.reset_account)."""
    account = await _find(request)
    if isinstance(account, Response):
        return account
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        return admin_error(400, "model must be a model id, or absent for every model", "model")
    done = await _gateway(request).reset_account(account, model.strip() if model else None)
    return JSONResponse({"account_id": account.id, **done})


async def enable_account(request: Request) -> Response:
    return await _set_enabled(request, True)


async def disable_account(request: Request) -> Response:
    return await _set_enabled(request, False)


async def update_account(request: Request) -> Response:
    """PUT {"enabled": bool, "proxy_url": str | null}: change what the user controls."""
    account = await _find(request)
    if isinstance(account, Response):
        return account
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    gateway = _gateway(request)
    store = gateway.accounts.store
    if "proxy_url" in body:
        raw = body["proxy_url"]
        try:
            proxy = normalize_proxy(raw) if isinstance(raw, str) and raw.strip() else None
        except ValueError as exc:
            return admin_error(400, str(exc), "proxy_url")
        await run_in_threadpool(store.set_proxy, account.id, proxy)
        log_security_event(request, f"proxy of account {account.id} set to {mask_url(proxy)!r}")
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            return admin_error(400, "enabled must be true or false", "enabled")
        await run_in_threadpool(store.set_enabled, account.id, body["enabled"])
    await _changed(gateway)
    fresh = await run_in_threadpool(store.get, account.id)
    return JSONResponse({"account": fresh.public() if fresh else None})


async def refresh_quota(request: Request) -> Response:
    gateway = _gateway(request)
    if "id" in request.path_params:
        account = await _find(request)
        if isinstance(account, Response):
            return account
        chosen = [account]
    else:
        chosen = await run_in_threadpool(gateway.accounts.store.all)
    errors = await gateway.accounts.refresh_quotas(chosen)
    await _changed(gateway)
    return JSONResponse(
        {
            "refreshed": [a.id for a in chosen if not errors.get(a.id)],
            "errors": {k: v for k, v in errors.items() if v},
        }
    )


# -- Google sign-in ------------------------------------------------------------
async def oauth_start(request: Request) -> Response:
    gateway = _gateway(request)
    port = gateway.listener.port if gateway.listener else gateway.settings.port
    flow = LoginFlow(f"http://localhost:{port}/auth/callback")
    _logins(request)[flow.state] = PendingLogin(flow)
    return JSONResponse(
        {
            "state": flow.state,
            "url": flow.url(gateway.accounts.oauth),
            "redirect_uri": flow.redirect_uri,
        }
    )


async def oauth_status(request: Request) -> Response:
    pending = _logins(request).get(request.path_params["state"])
    if pending is None:
        return admin_error(404, "no such sign-in (it may have expired); start again")
    return JSONResponse({"status": pending.status, "email": pending.email, "error": pending.error})


async def _complete(request: Request, pending: PendingLogin, code: str) -> None:
    gateway = _gateway(request)
    pending.status = "working"
    try:
        account, _ = await gateway.accounts.complete_login(
            code, pending.flow.redirect_uri, pending.flow.pkce
        )
        pending.status, pending.email = "done", account.email
        await _changed(gateway)
    except AddError as exc:
        pending.status, pending.error = "error", exc.message


async def oauth_submit_code(request: Request) -> Response:
    """The headless path: the user pastes the code or the URL the browser ended on."""
    pending = _logins(request).get(request.path_params["state"])
    if pending is None:
        return admin_error(404, "no such sign-in (it may have expired); start again")
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    try:
        code = extract_code(str(body.get("code") or ""), pending.flow.state)
    except LoginError as exc:
        return admin_error(400, exc.message, "code")
    await _complete(request, pending, code)
    if pending.status == "error":
        return admin_error(400, pending.error or "sign-in failed", "code")
    return JSONResponse({"status": pending.status, "email": pending.email})


async def auth_callback(request: Request) -> Response:
    """Google's redirect lands here (public route)."""
    query = parse_qs(request.url.query)
    state = (query.get("state") or [""])[0]
    pending = _logins(request).get(state)
    if pending is None:
        return HTMLResponse(
            page(
                "Sign-in not recognised",
                "This sign-in is unknown or expired. Start again from the agproxy console.",
            ),
            400,
        )
    try:
        code = pending.flow.code_from_query(query)
    except LoginError as exc:
        pending.status, pending.error = "error", exc.message
        return HTMLResponse(page("Sign-in failed", exc.message), 400)
    await asyncio.shield(_complete(request, pending, code))
    if pending.status == "done":
        return HTMLResponse(
            page("Account added", f"{pending.email} is in the pool. You can close this tab.")
        )
    return HTMLResponse(page("Sign-in failed", pending.error or "unknown error"), 400)


routes = [
    Route("/accounts", list_accounts, methods=["GET"]),
    Route("/accounts", add_account, methods=["POST"]),
    Route("/accounts/import", import_accounts, methods=["POST"]),
    Route("/accounts/quota", refresh_quota, methods=["POST"]),
    Route("/accounts/oauth/start", oauth_start, methods=["POST"]),
    Route("/accounts/oauth/{state}", oauth_status, methods=["GET"]),
    Route("/accounts/oauth/{state}/code", oauth_submit_code, methods=["POST"]),
    Route("/accounts/{id}", remove_account, methods=["DELETE"]),
    Route("/accounts/{id}", update_account, methods=["PUT"]),
    Route("/accounts/{id}/enable", enable_account, methods=["POST"]),
    Route("/accounts/{id}/reset", reset_account, methods=["POST"]),
    Route("/accounts/{id}/disable", disable_account, methods=["POST"]),
    Route("/accounts/{id}/quota", refresh_quota, methods=["POST"]),
]
