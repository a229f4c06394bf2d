"""Admin API for client keys: list (with each key's usage today and this week), create,
read, edit, rotate, delete.

A key's secret is in the answer to its creation and to a rotation, and nowhere else: the
store keeps a digest, lists show a prefix. A change made here applies at once (the
gateway's keys are reloaded); one made with `agproxy keys` through the keys revision.
"""

from __future__ import annotations

import time
from typing import Any, cast

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agproxy.admin.monitor import settled
from agproxy.admin.proxy import admin_error, read_json_object
from agproxy.frontends.common import JSONResponse
from agproxy.keys.settings import BadSetting, checked, state
from agproxy.keys.store import ClientKey, KeyRefused, KeyStore
from agproxy.monitor import stats
from agproxy.service import Gateway

MAX_TZ_OFFSET = 14 * 3600
# An answer carrying a secret is kept by no cache (the browser's included).
NO_STORE = {"Cache-Control": "no-store"}
EMPTY_USAGE = {"requests": 0, "input_tokens": 0, "output_tokens": 0}


def _gateway(request: Request) -> Gateway:
    return cast(Gateway, request.app.state.gateway)


def _store(request: Request) -> KeyStore:
    return _gateway(request).keys.store


async def _changed(request: Request) -> None:
    """Apply a change to the request path now rather than at the next revision check."""
    gateway = _gateway(request)
    await run_in_threadpool(gateway.keys.load)
    gateway.announce("keys")


def _tz_offset(request: Request) -> int:
    """Seconds east of UTC that `today` and `this week` are counted in (default UTC)."""
    try:
        offset = int(float(request.query_params.get("tz_offset") or 0))
    except ValueError:
        raise BadSetting("tz_offset", "must be a number of seconds east of UTC") from None
    if abs(offset) > MAX_TZ_OFFSET:
        raise BadSetting("tz_offset", f"must be between -{MAX_TZ_OFFSET} and {MAX_TZ_OFFSET}")
    return offset


def _views(gateway: Gateway, found: list[ClientKey], tz_offset: int) -> list[dict[str, Any]]:
    """Each key's public form, its state and its usage today and this week (requests and
    tokens summed from the monitor's records carrying its name)."""
    now = time.time()
    day, week = stats.day_and_week_start(now, tz_offset)
    today = stats.usage_by_key(gateway.engine, day)
    this_week = stats.usage_by_key(gateway.engine, week)
    return [
        {
            **key.public(),
            "state": state(key, now),
            "usage": {
                "today": today.get(key.name, EMPTY_USAGE),
                "week": this_week.get(key.name, EMPTY_USAGE),
                "day_start": day,
                "week_start": week,
            },
        }
        for key in found
    ]


def _refused(exc: BadSetting | KeyRefused) -> Response:
    if isinstance(exc, BadSetting):
        return admin_error(400, exc.message, exc.param)
    return admin_error(exc.status, exc.message, "name" if exc.status == 409 else None)


async def list_keys(request: Request) -> Response:
    gateway = _gateway(request)
    try:
        tz_offset = _tz_offset(request)
    except BadSetting as exc:
        return _refused(exc)
    await settled(gateway)  # queued records count too
    found = await run_in_threadpool(_store(request).all)
    return JSONResponse({"keys": await run_in_threadpool(_views, gateway, found, tz_offset)})


async def get_key(request: Request) -> Response:
    gateway = _gateway(request)
    try:
        tz_offset = _tz_offset(request)
        key = await run_in_threadpool(_store(request).find, request.path_params["id"])
    except (BadSetting, KeyRefused) as exc:
        return _refused(exc)
    await settled(gateway)
    views = await run_in_threadpool(_views, gateway, [key], tz_offset)
    return JSONResponse(views[0])


async def create_key(request: Request) -> Response:
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    store = _store(request)
    try:
        values = checked(body, require_name=True)
        key, secret = await run_in_threadpool(lambda: store.create(values.pop("name"), **values))
    except (BadSetting, KeyRefused) as exc:
        return _refused(exc)
    await _changed(request)
    return JSONResponse(
        {"key": {**key.public(), "state": state(key)}, "secret": secret},
        status_code=201,
        headers=NO_STORE,
    )


def _edit(store: KeyStore, id_or_name: str, values: dict[str, Any]) -> ClientKey:
    key = store.find(id_or_name)
    name = values.get("name")
    if name is not None and name != key.name and any(k.name == name for k in store.all()):
        raise KeyRefused(f"a client key named {name!r} exists already", 409)
    if values:
        try:
            store.update(key.id, **values)
        except IntegrityError:  # renamed to a name taken in the meantime
            raise KeyRefused(f"a client key named {name!r} exists already", 409) from None
    return store.find(key.id)


async def update_key(request: Request) -> Response:
    """Change any of name, models, expires_at, the limits and enabled; the rest stays."""
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    store = _store(request)
    try:
        values = checked(body)
        key = await run_in_threadpool(_edit, store, request.path_params["id"], values)
    except (BadSetting, KeyRefused) as exc:
        return _refused(exc)
    await _changed(request)
    return JSONResponse({**key.public(), "state": state(key)})


async def rotate_key(request: Request) -> Response:
    store = _store(request)

    def rotate() -> tuple[ClientKey, str]:
        key = store.find(request.path_params["id"])
        secret = store.rotate(key.id)
        return store.find(key.id), secret

    try:
        key, secret = await run_in_threadpool(rotate)
    except KeyRefused as exc:
        return _refused(exc)
    await _changed(request)
    return JSONResponse(
        {"key": {**key.public(), "state": state(key)}, "secret": secret}, headers=NO_STORE
    )


async def delete_key(request: Request) -> Response:
    store = _store(request)

    def delete() -> ClientKey:
        key = store.find(request.path_params["id"])
        store.delete(key.id)
        return key

    try:
        key = await run_in_threadpool(delete)
    except KeyRefused as exc:
        return _refused(exc)
    await _changed(request)
    return JSONResponse({"deleted": key.id, "name": key.name})


routes = [
    Route("/keys", list_keys, methods=["GET"]),
    Route("/keys", create_key, methods=["POST"]),
    Route("/keys/{id}", get_key, methods=["GET"]),
    Route("/keys/{id}", update_key, methods=["PUT"]),
    Route("/keys/{id}", delete_key, methods=["DELETE"]),
    Route("/keys/{id}/rotate", rotate_key, methods=["POST"]),
]
