"""The record of the request being served, reachable from anywhere on its path.

The monitor middleware opens a record per request and keeps it in a context variable;
front ends and the retry policy add what they know (models, account, tokens, attempts)
with `note*`, which do nothing when no record is open (monitor off, admin routes).
"""

from __future__ import annotations

import contextvars
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from agproxy.monitor.forms import summarize_multipart
from agproxy.monitor.redact import capture_text, redact, redact_field

# Record ids: a random prefix per process and a counter (32 hex characters, unique
# across processes sharing a database) without a system call per request as uuid4 needs.
_ID_PREFIX = secrets.token_hex(10)
_IDS = itertools.count()
CLIENT_CLOSED = 499  # a request whose client left before the end, as nginx logs it

_CURRENT: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "agproxy_record", default=None
)


def mask_email(email: str | None) -> str | None:
    """a***e@example.com: enough to tell accounts apart, not to read the address."""
    if not email or "@" not in email:
        return email
    user, _, domain = email.partition("@")
    shown = user[0] + "***" + (user[-1] if len(user) > 1 else "")
    return f"{shown}@{domain}"


@dataclass(slots=True)
class RequestRecord:
    protocol: str
    method: str
    path: str
    client_ip: str | None
    id: str = field(default_factory=lambda: f"{_ID_PREFIX}{next(_IDS):012x}")
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    requested_model: str | None = None
    routed_model: str | None = None
    provider: str | None = None
    account: str | None = None
    account_id: str | None = None
    user_agent: str | None = None
    key_name: str | None = None  # the client key's name (never its secret)
    status: int = 0
    duration_ms: float = 0.0
    ttfb_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    thinking_tokens: int | None = None
    cached_tokens: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # Raw captures (monitor_capture_bodies), redacted when the row is made.
    request_body: bytes | bytearray | None = None
    response_body: bytes | bytearray | None = None
    request_cut: bool = False
    request_boundary: bytes | None = None  # a multipart body's: its files are summarized
    response_cut: bool = False
    queued_bytes: int = 0  # what the writer's queue counts for this record

    def values(
        self, body_limit: int = 0, secrets: tuple[str | None, ...] = (), bodies: bool = True
    ) -> tuple[Any, ...]:
        """The database row, in COLUMNS order. Made by the writer after the response:
        redaction never runs on the request path."""

        def body(raw: bytes | bytearray | None, cut: bool, boundary: bytes | None) -> str | None:
            if raw is None or not bodies:
                return None
            if boundary:
                raw = summarize_multipart(raw, boundary, cut)
            return capture_text(raw, body_limit, cut, secrets)

        def text(value: str | None) -> str | None:
            return redact_field(value, secrets)

        # Every text column is redacted: the user agent, the model ids and the path are
        # the client's free text, and have carried the gateway's own key.
        return (
            self.id,
            self.started_at,
            self.protocol,
            text(self.method),
            text(self.path),
            text(self.requested_model),
            text(self.routed_model),
            text(self.provider),
            text(self.account),
            self.status,
            round(self.duration_ms, 2),
            None if self.ttfb_ms is None else round(self.ttfb_ms, 2),
            self.input_tokens,
            self.output_tokens,
            self.thinking_tokens,
            self.cached_tokens,
            text(orjson.dumps(self.attempts).decode()) if self.attempts else None,
            self.error and redact(error_message(self.error), secrets),
            text(self.client_ip),
            body(self.request_body, self.request_cut, self.request_boundary),
            body(self.response_body, self.response_cut, None),
            text(self.account_id),
            text(self.user_agent),
            self.key_name,
        )

    def row(
        self, body_limit: int = 0, secrets: tuple[str | None, ...] = (), bodies: bool = True
    ) -> dict[str, Any]:
        return dict(zip(COLUMNS, self.values(body_limit, secrets, bodies), strict=True))


COLUMNS = (
    "id",
    "started_at",
    "protocol",
    "method",
    "path",
    "requested_model",
    "routed_model",
    "provider",
    "account",
    "status",
    "duration_ms",
    "ttfb_ms",
    "input_tokens",
    "output_tokens",
    "thinking_tokens",
    "cached_tokens",
    "attempts",
    "error",
    "client_ip",
    "request_body",
    "response_body",
    "account_id",
    "user_agent",
    "key_name",
)


def error_message(body: str) -> str:
    """The message of an OpenAI, Anthropic or Google error body; the text itself otherwise
    (a cut or non-JSON body)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type") or error.get("status")
        return f"{kind}: {error['message']}" if isinstance(kind, str) else error["message"]
    return body


def used() -> tuple[str | None, int | None]:
    """The current request's routed model and the tokens the upstream reported; 0 for a
    request that failed without any, None when unknown."""
    record = current()
    if record is None:
        return None, None
    if record.input_tokens is None:
        return record.routed_model, 0 if record.status >= 400 else None
    tokens = record.input_tokens + (record.output_tokens or 0) + (record.thinking_tokens or 0)
    return record.routed_model, tokens


def open_record(record: RequestRecord) -> contextvars.Token[RequestRecord | None]:
    return _CURRENT.set(record)


def close_record(token: contextvars.Token[RequestRecord | None]) -> None:
    _CURRENT.reset(token)


def current() -> RequestRecord | None:
    return _CURRENT.get()


def note(**fields: Any) -> None:
    record = _CURRENT.get()
    if record is not None:
        for key, value in fields.items():
            if value is not None:
                setattr(record, key, value)


def note_attempt(
    account_email: str, outcome: str, model: str | None = None, account_id: str | None = None
) -> None:
    record = _CURRENT.get()
    if record is not None:
        if model and not record.routed_model:
            record.routed_model = model
        at_ms = round((time.perf_counter() - record.started) * 1000, 1)
        record.attempts.append(
            {"account": mask_email(account_email), "outcome": outcome, "at_ms": at_ms}
        )
        record.account = mask_email(account_email)
        record.account_id = account_id


def note_tokens(
    input_tokens: int | None,
    output_tokens: int | None,
    thinking_tokens: int | None = None,
    cached_tokens: int | None = None,
) -> None:
    note(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        thinking_tokens=thinking_tokens,
        cached_tokens=cached_tokens,
    )
