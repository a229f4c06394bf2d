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


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON (an empty body is None); raises
    orjson.JSONDecodeError.

    The raw bytes are not kept on the request (Starlette's `body()` would keep them for
    the request's whole life): once parsed they are freed, so a large body is held
    once as bytes only while it is parsed, not beside the parsed form and the
    upstream's copy until the answer ends.
    """
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
    if not raw.strip():
        return None
    return orjson.loads(raw)
