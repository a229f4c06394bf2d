"""Error bodies in each protocol's format, and the 404 hints for mistaken base URLs."""

from __future__ import annotations

import json

import pytest

from agproxy.frontends.notfound import hint_for
from agproxy.protocols import Protocol, error_body, error_response, protocol_of

STATUSES = [400, 401, 404, 429, 503]


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/v1/messages", Protocol.ANTHROPIC),
        ("/v1/messages/count_tokens", Protocol.ANTHROPIC),
        ("/v1beta/models", Protocol.GOOGLE),
        ("/v1beta/models/gemini-2.5-pro", Protocol.GOOGLE),
        ("/v1beta/models/x:generateContent", Protocol.GOOGLE),
        ("/v1beta/models/x:countTokens", Protocol.GOOGLE),
        ("/v1/models/gemini-x:streamGenerateContent", Protocol.GOOGLE),
        ("/v1/chat/completions", Protocol.OPENAI),
        ("/v1/completions", Protocol.OPENAI),
        ("/v1/responses", Protocol.OPENAI),
        ("/v1/models", Protocol.OPENAI),
        ("/v1/models/gpt-4o", Protocol.OPENAI),
        ("/healthz", Protocol.OPENAI),
        ("/nope", Protocol.OPENAI),
    ],
)
def test_protocol_of(path: str, protocol: Protocol) -> None:
    assert protocol_of(path) is protocol


@pytest.mark.parametrize("status", STATUSES)
def test_openai_shape(status: int) -> None:
    body = error_body(Protocol.OPENAI, status, "went wrong")
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] == "went wrong"
    assert isinstance(err["type"], str) and err["type"]
    assert err["param"] is None


@pytest.mark.parametrize(
    ("status", "type_", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (404, "invalid_request_error", "not_found"),
        (429, "rate_limit_error", None),
        (503, "server_error", "service_unavailable"),
    ],
)
def test_openai_types_and_codes(status: int, type_: str, code: str | None) -> None:
    err = error_body(Protocol.OPENAI, status, "m")["error"]
    assert (err["type"], err["code"]) == (type_, code)


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_shape(status: int, type_: str) -> None:
    body = error_body(Protocol.ANTHROPIC, status, "went wrong")
    assert body == {"type": "error", "error": {"type": type_, "message": "went wrong"}}


@pytest.mark.parametrize(
    ("status", "google_status"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (503, "UNAVAILABLE"),
    ],
)
def test_google_shape(status: int, google_status: str) -> None:
    body = error_body(Protocol.GOOGLE, status, "went wrong")
    assert body == {"error": {"code": status, "message": "went wrong", "status": google_status}}


@pytest.mark.parametrize("protocol", list(Protocol))
@pytest.mark.parametrize("status", STATUSES)
def test_error_response_carries_status_and_json_body(protocol: Protocol, status: int) -> None:
    response = error_response(protocol, status, 'msg "quoted" ü', headers={"retry-after": "3"})
    assert response.status_code == status
    assert response.media_type == "application/json"
    assert response.headers["retry-after"] == "3"
    assert json.loads(response.body) == error_body(protocol, status, 'msg "quoted" ü')


# -- 404 hints ------------------------------------------------------------------------

BASE_HINT_MARK = "Base URLs:"


@pytest.mark.parametrize(
    ("path", "must_contain"),
    [
        ("/v1/v1/chat/completions", ["repeats '/v1'", "the endpoint is /v1/chat/completions"]),
        ("/v1/v1/messages", ["repeats '/v1'", "the endpoint is /v1/messages"]),
        ("/v1/v1/v1/models", ["repeats '/v1'", "the endpoint is /v1/models"]),
        ("/v1beta/v1beta/models", ["repeats '/v1'", "the endpoint is /v1beta/models"]),
        (
            "/v1/chat/completions/responses",
            ["'/v1/chat/completions'", "'/responses'", "http://HOST:PORT/v1"],
        ),
        (
            "/v1/messages/v1/messages",
            ["'/v1/messages'", "'/v1/messages' appended", "http://HOST:PORT"],
        ),
        ("/v1/responses/chat/completions", ["'/v1/responses'", "'/chat/completions'"]),
        ("/chat/completions", ["'/v1' prefix is missing", "/v1/chat/completions"]),
        ("/messages", ["'/v1' prefix is missing", "/v1/messages"]),
        ("/models", ["'/v1' prefix is missing", "/v1/models"]),
        ("/responses", ["'/v1' prefix is missing", "/v1/responses"]),
    ],
)
def test_hint_names_the_mistake(path: str, must_contain: list[str]) -> None:
    message = hint_for("POST", path)
    assert message.startswith(f"no route for POST {path}")
    for fragment in must_contain:
        assert fragment in message, (fragment, message)
    assert BASE_HINT_MARK in message


@pytest.mark.parametrize("path", ["/foo", "/v1/foo", "/api2/x", "/v1/models/gpt-4o/extra"])
def test_unrelated_path_has_no_specific_hint_but_lists_bases(path: str) -> None:
    message = hint_for("GET", path)
    assert message.startswith(f"no route for GET {path}. ")
    for marker in ("repeats", "appended", "prefix is missing"):
        assert marker not in message
    assert BASE_HINT_MARK in message
    assert "http://HOST:PORT/v1" in message  # the OpenAI base
    assert "Anthropic" in message and "Gemini" in message
