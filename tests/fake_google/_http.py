"""Small HTTP helpers shared by the OAuth and v1internal handlers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._faults import Fault, google_error
from ._state import RecordedRequest, State


class Refusal(Exception):
    """Raised by a handler to answer with an error body instead of going on."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}

    @classmethod
    def google(
        cls,
        code: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Refusal:
        return cls(code, google_error(code, message, details), headers)

    def response(self) -> Response:
        return json_response(self.body, self.status, self.headers)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(body), status, headers=headers, media_type="application/json; charset=UTF-8"
    )


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def record(state: State, request: Request, body: Any, email: str | None, rpc: str) -> None:
    state.record(
        RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            account_email=email,
            at=time.monotonic(),
            rpc=rpc,
        )
    )


def parse_json(raw: bytes) -> tuple[Any, bool]:
    """(value, ok); an empty body parses as None."""
    if not raw:
        return None, True
    try:
        return json.loads(raw), True
    except ValueError:
        return raw.decode("utf-8", "replace"), False


async def apply_fault(fault: Fault | None, model: str | None = None, oauth: bool = False) -> None:
    """Wait for a slow fault; raise the error answer of an error fault. Stream faults are
    left to the streaming code."""
    if fault is None:
        return
    if fault.kind == "slow":
        await asyncio.sleep(fault.seconds)
    elif fault.kind == "error":
        await asyncio.sleep(fault.seconds)  # an error that comes late (Fault.late)
        raise Refusal(
            fault.status, fault.oauth_body() if oauth else fault.body(model), fault.headers
        )
