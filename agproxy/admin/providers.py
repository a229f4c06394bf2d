"""Admin API for the key-based providers: list, add, change (enable, disable, keys,
models), remove, and test a connection (each key asks the provider for its models).

Keys are shown masked; one sent back masked keeps the key it stands for. A change applies
at once: the settings are the providers' only source.
"""

from __future__ import annotations

from typing import cast

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
from agproxy.service import Gateway


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
    return JSONResponse(await gateway.providers.client.probe(entry))


routes = [
    Route("/providers", list_providers, methods=["GET"]),
    Route("/providers", add_provider, methods=["POST"]),
    Route("/providers/{name}", edit_provider, methods=["PATCH", "PUT"]),
    Route("/providers/{name}", remove_provider, methods=["DELETE"]),
    Route("/providers/{name}/test", test_provider, methods=["POST"]),
]
