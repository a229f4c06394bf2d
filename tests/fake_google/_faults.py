"""Google error bodies (UPSTREAM.md §6.1) and the faults a test can inject."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
DOMAIN = "cloudcode-pa.googleapis.com"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
# How the OAuth token endpoint spells a failure of the same HTTP status.
OAUTH_ERRORS = {
    400: "invalid_request",
    401: "invalid_client",
    403: "access_denied",
    404: "not_found",
    429: "rate_limit_exceeded",
}
STREAM_KINDS = frozenset({"cut_stream", "stall", "empty_stream"})
BODY_KINDS = frozenset({"cut_body"})  # generateContent only


def google_error(
    code: int, message: str, details: list[dict[str, Any]] | None = None, status: str | None = None
) -> dict[str, Any]:
    """The Google RPC error body: {"error": {code, message, status, details?}}."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def error_info(
    reason: str, metadata: dict[str, str] | None = None, domain: str = DOMAIN
) -> dict[str, Any]:
    detail: dict[str, Any] = {"@type": ERROR_INFO, "reason": reason, "domain": domain}
    if metadata:
        detail["metadata"] = metadata
    return detail


# -- durations ("1h2m3.5s", "850ms") ---------------------------------------------
_DURATION_TOKEN = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in a Google duration string such as `1h2m3.5s`, `850ms` or `3723.5s`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    tokens = _DURATION_TOKEN.findall(text)
    if not tokens or "".join(n + u for n, u in tokens) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in tokens)


def format_duration(seconds: float, whole: bool = False) -> str:
    """`3723.5` -> `1h2m3.5s` (`1h2m3s` with whole=True), as Google writes them."""
    seconds = max(0.0, seconds)
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    fraction = 0.0 if whole else round(seconds - int(seconds), 3)
    sec_text = f"{secs + fraction:.3f}".rstrip("0").rstrip(".")
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{out}{sec_text}s"


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- faults --------------------------------------------------------------------
BodyBuilder = Callable[[str | None], dict[str, Any]]


@dataclass(frozen=True, eq=False)
class Fault:
    """One scripted misbehaviour. Build them with the classmethods; `inject` them.

    kind: "error" (answer `status` with a Google error body), "slow" (wait `seconds`, then
    answer normally), "cut_stream", "stall", "empty_stream" (streamGenerateContent only),
    "cut_body" (generateContent only).
    """

    kind: str
    status: int = 200
    seconds: float = 0.0
    after_events: int = 0
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    build: BodyBuilder | None = None  # error body, given the request's model

    @property
    def stream_only(self) -> bool:
        return self.kind in STREAM_KINDS

    @property
    def shapes_reply(self) -> bool:
        """Left to the generate code (it changes how the reply is sent), not answered."""
        return self.kind in STREAM_KINDS or self.kind in BODY_KINDS

    def applies_to(self, method: str) -> bool:
        if self.kind in STREAM_KINDS:
            return method == "streamGenerateContent"
        if self.kind in BODY_KINDS:
            return method == "generateContent"
        return True

    def body(self, model: str | None = None) -> dict[str, Any]:
        """The Google RPC error body this fault answers (kind "error" only)."""
        if self.build is not None:
            return self.build(model)
        return google_error(self.status, self.message)

    def oauth_body(self) -> dict[str, str]:
        """The same failure as the OAuth token endpoint words it."""
        error = OAUTH_ERRORS.get(
            self.status, "internal_failure" if self.status >= 500 else "invalid_request"
        )
        return {"error": error, "error_description": self.message}

    # -- error answers -----------------------------------------------------------
    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        status_name: str | None = None,
    ) -> Fault:
        """Any Google RPC error: `status` HTTP code, `message`, optional details."""
        body = google_error(status, message, details, status_name)
        return cls(
            "error", status, message=message, headers=dict(headers or {}), build=lambda _model: body
        )

    @classmethod
    def rate_limited(
        cls,
        retry_delay: str | None = None,
        quota_reset_delay: str | None = None,
        reason: str = "QUOTA_EXHAUSTED",
        message: str | None = None,
        model: str | None = None,
    ) -> Fault:
        """429 RESOURCE_EXHAUSTED. ErrorInfo always comes first (metadata: model of the
        request unless `model` is given, quotaResetDelay and quotaResetTimeStamp when
        `quota_reset_delay` is given); RetryInfo only when `retry_delay` is given."""
        reset_seconds = parse_duration(quota_reset_delay) if quota_reset_delay else None
        if retry_delay:
            parse_duration(retry_delay)  # refuse typos at injection time

        def build(request_model: str | None) -> dict[str, Any]:
            named = model or request_model
            metadata: dict[str, str] = {}
            if named:
                metadata["model"] = named
            if quota_reset_delay and reset_seconds is not None:
                metadata["quotaResetDelay"] = quota_reset_delay
                metadata["quotaResetTimeStamp"] = rfc3339(time.time() + reset_seconds)
            details = [error_info(reason, metadata)]
            if retry_delay:
                details.append({"@type": RETRY_INFO, "retryDelay": retry_delay})
            return google_error(
                429, message or _rate_limit_message(reason, named, reset_seconds), details
            )

        return cls(
            "error",
            429,
            message=message or _rate_limit_message(reason, model, reset_seconds),
            build=build,
        )

    @classmethod
    def unauthenticated(cls, reason: str = "ACCESS_TOKEN_TYPE_UNSUPPORTED") -> Fault:
        """401 UNAUTHENTICATED, as for a bad access token."""
        return cls(
            "error",
            401,
            message=UNAUTHENTICATED_MESSAGE,
            headers={
                "www-authenticate": 'Bearer realm="https://accounts.google.com/", '
                'error="invalid_token"'
            },
            build=lambda _model: unauthenticated_body(reason),
        )

    @classmethod
    def forbidden(
        cls, validation: bool = False, reason: str | None = None, message: str | None = None
    ) -> Fault:
        """403 PERMISSION_DENIED; validation=True: reason VALIDATION_REQUIRED with a
        `validation_url` in the ErrorInfo metadata (the account must be verified)."""
        if validation:
            details = [error_info("VALIDATION_REQUIRED", {"validation_url": VALIDATION_URL})]
            return cls.error(403, message or "Verify your account to continue.", details)
        return cls.error(
            403,
            message or "The caller does not have permission",
            [error_info(reason)] if reason else None,
        )

    @classmethod
    def not_found(cls, message: str = "Requested entity was not found.") -> Fault:
        return cls.error(404, message)

    @classmethod
    def invalid_argument(cls, message: str = "Request contains an invalid argument.") -> Fault:
        return cls.error(400, message)

    @classmethod
    def server_error(cls, status: int = 500, message: str | None = None) -> Fault:
        """500 INTERNAL "Internal error encountered." / 503 UNAVAILABLE "No capacity
        available" (or any 5xx with `message`)."""
        default = "Internal error encountered." if status == 500 else "No capacity available"
        return cls.error(status, message or default)

    # -- timing and stream shapes --------------------------------------------------
    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait `seconds`, then answer normally."""
        return cls("slow", seconds=seconds)

    def late(self, seconds: float) -> Fault:
        """This error fault, answered after `seconds` of silence."""
        assert self.kind == "error"
        return replace(self, seconds=seconds)

    @classmethod
    def cut_stream(cls, after_events: int = 1) -> Fault:
        """streamGenerateContent: send `after_events` events (never one with finishReason),
        then drop the connection without ending the chunked body."""
        return cls("cut_stream", after_events=after_events)

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """streamGenerateContent: send the first event, say nothing for `seconds`, then
        finish the reply normally."""
        return cls("stall", seconds=seconds)

    @classmethod
    def cut_body(cls) -> Fault:
        """generateContent: send the status and half of the JSON reply, then drop the
        connection without ending the chunked body."""
        return cls("cut_body")

    @classmethod
    def empty_stream(cls) -> Fault:
        """streamGenerateContent: 200 with no events at all."""
        return cls("empty_stream")


UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MISSING_CREDENTIALS_MESSAGE = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
VALIDATION_URL = "https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=fake-validation"


def unauthenticated_body(reason: str) -> dict[str, Any]:
    message = (
        MISSING_CREDENTIALS_MESSAGE if reason == "CREDENTIALS_MISSING" else UNAUTHENTICATED_MESSAGE
    )
    return google_error(
        401, message, [error_info(reason, {"service": DOMAIN}, domain="googleapis.com")]
    )


def _rate_limit_message(reason: str, model: str | None, reset_seconds: float | None) -> str:
    if reason == "MODEL_CAPACITY_EXHAUSTED":
        return f"No capacity available for model {model or 'this model'} on the server"
    if reason == "RATE_LIMIT_EXCEEDED":
        return "Resource has been exhausted (e.g. check quota)."
    if reset_seconds is not None:
        return (
            "You have exhausted your capacity on this model. Your quota will reset after "
            f"{format_duration(reset_seconds, whole=True)}."
        )
    return "You have exhausted your capacity on this model."
