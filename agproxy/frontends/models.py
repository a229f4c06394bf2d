"""Model lists: the models the pool's accounts have quota data for."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends.common import JSONResponse


async def openai_models(request: Request) -> Response:
    pool = request.app.state.gateway.pool
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "agproxy"} for m in pool.models]
    return JSONResponse({"object": "list", "data": data})


async def gemini_models(request: Request) -> Response:
    pool = request.app.state.gateway.pool
    models = [
        {
            "name": f"models/{m}",
            "displayName": m,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent",
                                           "countTokens"],
        }
        for m in pool.models
    ]
    return JSONResponse({"models": models})
