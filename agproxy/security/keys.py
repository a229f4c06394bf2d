"""Finding the caller's key in a request and comparing it in constant time."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.types import Scope

_KEY_HEADERS = (b"x-api-key", b"x-goog-api-key")


def presented_keys(scope: Scope, allow_query: bool) -> list[bytes]:
    """Every key the request carries: Authorization (Bearer or bare), x-api-key,
    x-goog-api-key, and `?key=` when the path allows it (Gemini paths)."""
    found: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"authorization":
            value = value.strip()
            if value[:7].lower() == b"bearer ":
                value = value[7:].strip()
            elif value.lower() == b"bearer":
                continue  # "Bearer " with nothing after it: no key
            found.append(value)
        elif name in _KEY_HEADERS:
            found.append(value.strip())
    if allow_query and scope.get("query_string"):
        for name, value in parse_qsl(scope["query_string"].decode("latin-1")):
            if name == "key":
                found.append(value.encode("latin-1"))
    return [k for k in found if k]


def key_matches(candidates: list[bytes], secret: str) -> bool:
    expected = secret.encode()
    ok = False
    for candidate in candidates:
        # No early exit: every candidate is compared, each in constant time.
        ok |= hmac.compare_digest(candidate, expected)
    return ok
