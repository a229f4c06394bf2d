"""Admin API: the proxy service switch, the config, the api key."""

from __future__ import annotations

import logging
from typing import Any, cast

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agproxy.addresses import mask_url
from agproxy.config import ConfigError, OverriddenByEnv, generate_api_key
from agproxy.frontends.common import JSONResponse
from agproxy.provider_settings import unmask_providers
from agproxy.service import Gateway, StartError

# Keys that only take effect at the next start of the proxy service.
APPLY_AT_START = ("port", "allow_lan_access")
# Keys the process reads once: they take effect when `agproxy serve` starts again.
APPLY_AT_RESTART = ("store_url", "redis_url")
# Where the pool's tokens are sent: a change is logged as a security event, so that a
# stolen admin password that redirects them leaves a trace.
TOKEN_DESTINATIONS = (
    "upstream_base_urls",
    "oauth_token_url",
    "oauth_userinfo_url",
    "oauth_authorize_url",
    "upstream_proxy",
    "zai_base_url",
    "store_url",  # where the tokens are kept
)
security_log = logging.getLogger("agproxy.security")


def log_security_event(request: Request, what: str) -> None:
    client = request.client.host if request.client else "unknown"
    security_log.warning("security event: %s (admin API, from %s)", what, client)


def admin_error(
    status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"
) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param}}, status_code=status
    )


def _gateway(request: Request) -> Gateway:
    return cast(Gateway, request.app.state.gateway)


async def read_json_object(request: Request) -> dict[str, Any] | Response:
    body = await request.body()
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        return admin_error(400, f"request body is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return admin_error(400, "request body must be a JSON object")
    return data


async def status(request: Request) -> Response:
    gateway = _gateway(request)
    status = gateway.status()
    if gateway.shared is not None:  # several processes may serve: list them
        status["processes"] = await gateway.shared.workers.listing()
    return JSONResponse(status)


async def start(request: Request) -> Response:
    try:
        return JSONResponse(await _gateway(request).start())
    except StartError as exc:
        return admin_error(exc.status, exc.message, kind="start_error")


async def stop(request: Request) -> Response:
    return JSONResponse(await _gateway(request).stop())


def _config_view(gateway: Gateway) -> dict[str, Any]:
    store = gateway.store
    return {"config": store.public_view(), "env_overrides": store.env_keys, "path": str(store.path)}


async def get_config(request: Request) -> Response:
    gateway = _gateway(request)
    try:
        await run_in_threadpool(gateway.store.reload_if_changed)
    except ConfigError as exc:
        return admin_error(500, exc.message, exc.key, kind="config_error")
    return JSONResponse(_config_view(gateway))


async def put_config(request: Request) -> Response:
    gateway = _gateway(request)
    changes = await read_json_object(request)
    if isinstance(changes, Response):
        return changes
    current = gateway.store.public_view()
    # A masked secret sent back unchanged means "leave it as it is".
    changes = {
        k: v
        for k, v in changes.items()
        if not (k in current and v == current[k] and isinstance(v, str) and "••••" in v)
    }
    if "providers" in changes:
        changes["providers"] = unmask_providers(changes["providers"], gateway.settings.providers)
    try:
        await run_in_threadpool(gateway.store.update, changes)
    except ConfigError as exc:
        return admin_error(409 if isinstance(exc, OverriddenByEnv) else 400, exc.message, exc.key)
    gateway.announce("config")
    for key in TOKEN_DESTINATIONS:
        if key in changes:
            value = changes[key]
            shown = [mask_url(v) for v in value] if isinstance(value, list) else mask_url(value)
            log_security_event(request, f"{key} changed to {shown!r}")
    if "providers" in changes:  # where provider keys are sent
        where = ", ".join(f"{p.name} → {mask_url(p.url)}" for p in gateway.settings.providers)
        log_security_event(request, f"providers changed to: {where or 'none'}")
    view = _config_view(gateway)
    view["apply_at_next_start"] = [k for k in APPLY_AT_START if k in changes]
    view["apply_at_restart"] = [k for k in APPLY_AT_RESTART if k in changes]
    return JSONResponse(view)


async def get_api_key(request: Request) -> Response:
    return JSONResponse({"api_key": _gateway(request).settings.api_key})


async def generate_key(request: Request) -> Response:
    gateway = _gateway(request)
    key = generate_api_key()
    try:
        await run_in_threadpool(gateway.store.update, {"api_key": key})
    except OverriddenByEnv as exc:
        return admin_error(409, exc.message, exc.key)
    return JSONResponse({"api_key": key})


routes = [
    Route("/proxy/status", status, methods=["GET"]),
    Route("/proxy/start", start, methods=["POST"]),
    Route("/proxy/stop", stop, methods=["POST"]),
    Route("/proxy/api-key", get_api_key, methods=["GET"]),
    Route("/proxy/api-key/generate", generate_key, methods=["POST"]),
    Route("/config", get_config, methods=["GET"]),
    Route("/config", put_config, methods=["PUT"]),
]
