"""Admin API for the key-based providers: list, add, change (enable, disable, keys,
models), remove, and test a connection (each key asks the provider for its models).

Keys are shown masked; one sent back masked keeps the key it stands for. A change applies
at once: the settings are the providers' only source.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agproxy.addresses import mask_url
from agproxy.admin.proxy import admin_error, log_security_event, read_json_object
from agproxy.config import ConfigError, OverriddenByEnv
from agproxy.frontends.common import JSONResponse
from agproxy.provider_settings import PROVIDER_KINDS, ProviderEntry
from agproxy.providers import manage
from agproxy.providers.client import ProviderClient
from agproxy.service import Gateway
from agproxy.upstream.errors import UpstreamError

MODELS_SHOWN = 50  # of a provider's model list, in a test's answer


def _gateway(request: Request) -> Gateway:
    return cast(Gateway, request.app.state.gateway)


def _refused(exc: manage.ProviderRefused | ConfigError) -> Response:
    if isinstance(exc, manage.ProviderRefused):
        return admin_error(exc.status, exc.message, "name")
    status = 409 if isinstance(exc, OverriddenByEnv) else 400
    return admin_error(status, exc.message, exc.key)


def _changed(request: Request, what: str, entry: ProviderEntry | None = None) -> None:
    _gateway(request).announce("config")
    where = f" → {mask_url(entry.url)}" if entry is not None else ""
    log_security_event(request, f"provider {what}{where}")  # where its keys are sent


async def list_providers(request: Request) -> Response:
    store = _gateway(request).store
    return JSONResponse({"providers": manage.views(store), "kinds": list(PROVIDER_KINDS)})


async def add_provider(request: Request) -> Response:
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    store = _gateway(request).store
    try:
        entry = await run_in_threadpool(manage.add, store, body)
    except (manage.ProviderRefused, ConfigError) as exc:
        return _refused(exc)
    _changed(request, f"{entry.name} added", entry)
    shown = manage.view(entry, store.settings, store.env_keys)
    return JSONResponse({"provider": shown}, status_code=201)


async def edit_provider(request: Request) -> Response:
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    store = _gateway(request).store
    name = request.path_params["name"]
    try:
        entry = await run_in_threadpool(manage.edit, store, name, body)
    except (manage.ProviderRefused, ConfigError) as exc:
        return _refused(exc)
    _changed(request, f"{name} changed ({', '.join(sorted(body)) or 'nothing'})", entry)
    return JSONResponse({"provider": manage.view(entry, store.settings, store.env_keys)})


async def remove_provider(request: Request) -> Response:
    store = _gateway(request).store
    name = request.path_params["name"]
    try:
        await run_in_threadpool(manage.remove, store, name)
    except (manage.ProviderRefused, ConfigError) as exc:
        return _refused(exc)
    _changed(request, f"{name} removed")
    return JSONResponse({"removed": name})


async def test_provider(request: Request) -> Response:
    gateway = _gateway(request)
    try:
        entry = manage.find(gateway.settings, request.path_params["name"])
    except manage.ProviderRefused as exc:
        return _refused(exc)
    return JSONResponse(await probe(gateway.providers.client, entry))


async def probe(client: ProviderClient, entry: ProviderEntry) -> dict[str, Any]:
    """Each key asks for the provider's models, side by side: what works, what not and why
    (the provider's own message; never the key)."""
    if not entry.keys:
        return {"ok": False, "name": entry.name, "keys": [], "message": "no key is configured"}

    async def one(index: int) -> dict[str, Any]:
        started = time.perf_counter()
        result: dict[str, Any] = {"key": entry.key_name(index)}
        try:
            models = await client.models(entry, entry.keys[index].key)
            result.update(ok=True, status=200, models=models[:MODELS_SHOWN], count=len(models))
        except UpstreamError as error:
            result.update(ok=False, status=error.status, message=error.message[:300])
        result["ms"] = round((time.perf_counter() - started) * 1000)
        return result

    results = await asyncio.gather(*(one(i) for i in range(len(entry.keys))))
    working = sum(r["ok"] for r in results)
    return {
        "ok": working == len(results),
        "name": entry.name,
        "keys": list(results),
        "message": f"{working} of {len(results)} keys work",
    }


routes = [
    Route("/providers", list_providers, methods=["GET"]),
    Route("/providers", add_provider, methods=["POST"]),
    Route("/providers/{name}", edit_provider, methods=["PATCH", "PUT"]),
    Route("/providers/{name}", remove_provider, methods=["DELETE"]),
    Route("/providers/{name}/test", test_provider, methods=["POST"]),
]
