"""GET /healthz: the shortest check that the proxy service answers."""

from starlette.requests import Request
from starlette.responses import Response

_OK = b'{"status":"ok"}'


async def healthz(request: Request) -> Response:
    return Response(_OK, media_type="application/json")
