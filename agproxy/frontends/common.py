"""Small pieces every front end uses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def read_raw(request: Request) -> bytearray:
    """The request body, not kept on the request.

    Starlette's `body()` keeps the bytes on the request for its whole life, beside the
    parsed body and the upstream's copy, until the answer ends (minutes, for a stream).
    Read this way they are freed as soon as the caller has parsed them.
    """
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
    return raw
