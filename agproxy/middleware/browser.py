"""Browsers: which web pages may call the gateway, and with what.

Without it any page the user opens could use the pool: a cross-origin "simple" request
(a form post, or fetch with a text/plain body) needs no preflight, and the default
auth mode asks no key on loopback. So:
- A request that carries an `Origin` other than the gateway's own is refused (403)
  unless the origin is listed in `cors_origins` (`*` allows any). The admin API and
  the console never accept another origin.
- Allowed origins get the CORS headers, and their preflights are answered.
- Requests with a body on the AI routes must say they are JSON (`Content-Type:
  application/json`), which a page cannot send cross-origin without a preflight.
  The routes that take file uploads (FORM_PATHS) take multipart/form-data instead, which
  any page's plain HTML form can send; there it must come with a key header
  (`Authorization`, `x-api-key`, `x-goog-api-key`), which a page cannot add without a
  preflight either. Their other bodies go on to the route, which refuses them.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agproxy.protocols import error_response, protocol_of
from agproxy.service import Gateway
from agproxy.zones import Zone, zone_of

ALLOW_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
MAX_AGE = "3600"
NOT_JSON = (
    "send the request body as JSON with the header 'Content-Type: application/json' (got {got})"
)
FORM_PATHS = frozenset({"/v1/images/edits"})
KEY_HEADERS = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key"})
FORM_WITHOUT_KEY = (
    "a multipart/form-data body needs an Authorization (or x-api-key) header, with any "
    "value when the gateway asks no key: without one it could be a web page's form"
)


def _same_origin(origin: str, host: str | None) -> bool:
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and host is not None and rest == host.lower()


def is_json(content_type: str | None) -> bool:
    if content_type == "application/json":  # what every SDK sends: no parsing
        return True
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _body_refusal(path: str, content_type: str | None, keyed: bool) -> str | None:
    """Why a body that is not JSON is refused here; None: the route decides."""
    if path not in FORM_PATHS:
        got = content_type
        return NOT_JSON.format(got=repr(got[:100]) if got else "none")
    multipart = (content_type or "").split(";", 1)[0].strip().lower() == "multipart/form-data"
    return FORM_WITHOUT_KEY if multipart and not keyed else None


class BrowserMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket" and not self._origin_allowed(scope):
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        zone = zone_of(path)
        origin = host = content_type = None
        keyed = False
        for name, value in scope["headers"]:  # raw: this runs on every request
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name in KEY_HEADERS:
                keyed = True
        cross = origin is not None and not _same_origin(origin.lower(), host)
        if cross:
            assert origin is not None
            allowed = self.gateway.settings.cors_origins
            if zone in (Zone.ADMIN, Zone.CONSOLE) or not (
                "*" in allowed or origin.lower().rstrip("/") in allowed
            ):
                await self._refuse(scope, receive, send)
                return
            if scope["method"] == "OPTIONS":
                headers = Headers(scope=scope)
                if "access-control-request-method" in headers:
                    await self._preflight(origin, headers, send)
                    return
        if (
            zone is Zone.AI
            and scope["method"] in ("POST", "PUT", "PATCH")
            and not is_json(content_type)
            and (refusal := _body_refusal(path, content_type, keyed))
        ):
            response = error_response(protocol_of(path), 415, refusal)
            await response(scope, receive, self._with_cors(origin, send) if cross else send)
            return
        await self.app(scope, receive, self._with_cors(origin, send) if cross else send)

    def _origin_allowed(self, scope: Scope) -> bool:
        """A WebSocket's handshake: browsers let any page open one to any address (there is
        no preflight), so the Origin is the only guard, as for requests."""
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or _same_origin(origin.lower(), headers.get("host")):
            return True
        allowed = self.gateway.settings.cors_origins
        return zone_of(scope["path"]) is Zone.AI and (
            "*" in allowed or origin.lower().rstrip("/") in allowed
        )

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        origin = Headers(scope=scope).get("origin", "")
        response = error_response(
            protocol_of(scope["path"]),
            403,
            f"web pages from {origin[:200]!r} may not call this gateway; add the origin "
            "to the cors_origins setting to allow it (the admin API and console allow "
            "none)",
        )
        await response(scope, receive, send)

    @staticmethod
    async def _preflight(origin: str, headers: Headers, send: Send) -> None:
        allow_headers = headers.get("access-control-request-headers", "")
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                    (b"access-control-allow-headers", allow_headers.encode("latin-1")),
                    (b"access-control-max-age", MAX_AGE.encode()),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _with_cors(origin: str | None, send: Send) -> Send:
        assert origin is not None
        extra = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", b"*"),
            (b"vary", b"Origin"),
        ]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return sending
