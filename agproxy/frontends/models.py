"""Model lists: the models the pool's accounts have quota data for."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends import gemini
from agproxy.frontends.common import JSONResponse
from agproxy.frontends.gemini import model_info
from agproxy.protocols import Protocol, error_response
from agproxy.router.mapping import BUILTIN


def _from_google_client(request: Request) -> bool:
    """Google's SDKs list models at /v1/models too (the v1 API); they name themselves in
    x-goog-api-client and send the key as x-goog-api-key or ?key=."""
    headers = request.headers
    return (
        "x-goog-api-client" in headers
        or "x-goog-api-key" in headers
        or "key" in request.query_params
    )


async def openai_models(request: Request) -> Response:
    """The pool's models, then the aliases (mapping rules, built-in table) that route to one.
    A Google SDK asking the same path gets the Gemini shape."""
    if _from_google_client(request):
        return await gemini_models(request)
    gateway = request.app.state.gateway
    catalog = gateway.catalog()
    aliases = [
        k
        for k in (*gateway.settings.model_mapping, *BUILTIN)
        if "*" not in k and k not in catalog and gateway.route_model(k)
    ]
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": "agproxy"}
        for m in (*catalog, *dict.fromkeys(aliases))
    ]
    return JSONResponse({"object": "list", "data": data})


async def gemini_models(request: Request) -> Response:
    models = [model_info(m) for m in request.app.state.gateway.catalog()]
    return JSONResponse({"models": models})


async def openai_model(request: Request) -> Response:
    """`GET /v1/models/{id}`: an OpenAI client gets OpenAI's model object (or its 404);
    a Google SDK asking the v1 path gets Gemini's."""
    if _from_google_client(request):
        return await gemini.get_model(request)
    gateway = request.app.state.gateway
    requested = request.path_params["target"]
    if gateway.route_model(requested) is None:
        return error_response(
            Protocol.OPENAI,
            404,
            f"The model {requested[:200]!r} does not exist in this gateway; see GET /v1/models",
        )
    return JSONResponse({"id": requested, "object": "model", "created": 0, "owned_by": "agproxy"})
