"""Model lists: the models the pool's accounts have quota data for."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends.common import JSONResponse
from agproxy.frontends.gemini import model_info


async def openai_models(request: Request) -> Response:
    catalog = request.app.state.gateway.catalog()
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "agproxy"} for m in catalog]
    return JSONResponse({"object": "list", "data": data})


async def gemini_models(request: Request) -> Response:
    models = [model_info(m) for m in request.app.state.gateway.catalog()]
    return JSONResponse({"models": models})
