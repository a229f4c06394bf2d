"""Finding the caller's one key in a request and comparing it in constant time."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.types import Scope

_KEY_HEADERS = (b"x-api-key", b"x-goog-api-key")

SEVERAL_KEYS = (
    "the request carries several different credentials (Authorization, x-api-key, "
    "x-goog-api-key, ?key=); send exactly one"
)


class SeveralKeys(Exception):
    """The request presents more than one distinct credential."""


def presented_key(scope: Scope, allow_query: bool) -> bytes | None:
    """The one key the request carries: Authorization (Bearer or bare), x-api-key,
    x-goog-api-key, or `?key=` when the path allows it (Gemini paths).

    The same key repeated (an SDK that sends both Authorization and x-api-key) is one
    key; different ones raise SeveralKeys, so a request can never test many guesses.
    """
    found: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            value = value.strip()
            if value[:7].lower() == b"bearer ":
                value = value[7:].strip()
            elif value.lower() == b"bearer":
                continue  # "Bearer " with nothing after it: no key
        elif name in _KEY_HEADERS:
            value = value.strip()
        else:
            continue
        found = _one(found, value)
    if allow_query and scope.get("query_string"):
        # latin-1 both ways: any byte sequence (?key=%FF) stays bytes, never an encode error.
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), encoding="latin-1"):
            if name == "key":
                found = _one(found, value.encode("latin-1"))
    return found


def _one(found: bytes | None, value: bytes) -> bytes | None:
    if not value:
        return found
    if found is not None and found != value:
        raise SeveralKeys
    return value


def key_matches(candidate: bytes | None, secret: str) -> bool:
    return candidate is not None and hmac.compare_digest(candidate, secret.encode())
