"""Errors in the format of the protocol a path belongs to.

OpenAI clients read `{"error": {"message", "type", "param", "code"}}`, Anthropic
clients `{"type": "error", "error": {"type", "message"}}`, Google clients
`{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import orjson
from starlette.responses import Response


class Protocol(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "gemini"  # the Gemini API (generativelanguage) shape


def protocol_of(path: str) -> Protocol:
    if path.startswith("/v1/messages"):
        return Protocol.ANTHROPIC
    if path.startswith("/v1beta/") or path == "/v1beta":
        return Protocol.GOOGLE
    if path.startswith("/v1/models/") and ":" in path:
        return Protocol.GOOGLE
    return Protocol.OPENAI


_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
_OPENAI_CODE = {
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
    503: "service_unavailable",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(protocol: Protocol, status: int, message: str) -> dict[str, Any]:
    if protocol is Protocol.ANTHROPIC:
        kind = _ANTHROPIC_TYPE.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if protocol is Protocol.GOOGLE:
        return {
            "error": {
                "code": status,
                "message": message,
                "status": _GOOGLE_STATUS.get(status, "UNKNOWN"),
            }
        }
    kind = _OPENAI_TYPE.get(status, "server_error")
    return {
        "error": {"message": message, "type": kind, "param": None, "code": _OPENAI_CODE.get(status)}
    }


def error_response(
    protocol: Protocol, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(error_body(protocol, status, message)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
