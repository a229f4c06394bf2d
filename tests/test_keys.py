"""Finding the caller's key in an ASGI scope, and comparing it."""

from __future__ import annotations

import pytest

from agproxy.security.keys import key_matches, presented_keys

SECRET = "sk-0123456789abcdef0123456789abcdef"


def scope(headers: list[tuple[bytes, bytes]] | None = None, query: bytes = b"") -> dict:
    return {"type": "http", "headers": headers or [], "query_string": query}


@pytest.mark.parametrize(("headers", "expected"), [
    ([(b"authorization", b"Bearer k1")], [b"k1"]),
    ([(b"authorization", b"bearer k1")], [b"k1"]),
    ([(b"authorization", b"BEARER k1")], [b"k1"]),
    ([(b"authorization", b"Bearer   k1  ")], [b"k1"]),
    ([(b"authorization", b"k1")], [b"k1"]),
    ([(b"authorization", b"  k1 ")], [b"k1"]),
    ([(b"x-api-key", b"k1")], [b"k1"]),
    ([(b"x-goog-api-key", b"k1")], [b"k1"]),
    ([(b"x-api-key", b" k1 ")], [b"k1"]),
    ([(b"authorization", b"Bearer a"), (b"x-api-key", b"b"), (b"x-goog-api-key", b"c")],
     [b"a", b"b", b"c"]),
    ([], []),
    ([(b"authorization", b"")], []),
    ([(b"x-api-key", b"   ")], []),
    ([(b"cookie", b"k1"), (b"x-other-key", b"k1")], []),
])
def test_presented_keys_headers(headers: list, expected: list[bytes]) -> None:
    for allow_query in (False, True):
        assert presented_keys(scope(headers), allow_query=allow_query) == expected


@pytest.mark.parametrize(("query", "allow_query", "expected"), [
    (b"key=k1", True, [b"k1"]),
    (b"key=k1", False, []),
    (b"alt=sse&key=k1", True, [b"k1"]),
    (b"alt=sse", True, []),
    (b"key=", True, []),
    (b"apikey=k1", True, []),
    (b"key=sk-a%2Bb", True, [b"sk-a+b"]),
])
def test_presented_keys_query(query: bytes, allow_query: bool, expected: list[bytes]) -> None:
    assert presented_keys(scope(query=query), allow_query=allow_query) == expected


def test_query_key_comes_after_headers() -> None:
    s = scope([(b"x-goog-api-key", b"h")], query=b"key=q")
    assert presented_keys(s, allow_query=True) == [b"h", b"q"]
    assert presented_keys(s, allow_query=False) == [b"h"]


def test_scope_without_query_string() -> None:
    assert presented_keys({"type": "http", "headers": [(b"x-api-key", b"k")]},
                          allow_query=True) == [b"k"]


@pytest.mark.parametrize(("candidates", "ok"), [
    ([SECRET.encode()], True),
    ([b"wrong", SECRET.encode()], True),
    ([SECRET.encode(), b"wrong"], True),
    ([b"wrong", b"also-wrong"], False),
    ([], False),
    ([SECRET[:-1].encode()], False),          # prefix
    ([SECRET[1:].encode()], False),           # suffix
    ([SECRET[:3].encode()], False),           # just "sk-"
    ([(SECRET + "x").encode()], False),       # longer
    ([SECRET.upper().encode()], False),       # case matters
    ([(" " + SECRET).encode()], False),
    ([b""], False),
])
def test_key_matches(candidates: list[bytes], ok: bool) -> None:
    assert key_matches(candidates, SECRET) is ok


def test_empty_bearer_never_matches() -> None:
    # "Authorization: Bearer " with no token: whatever is reported, it must not authenticate.
    keys = presented_keys(scope([(b"authorization", b"Bearer ")]), allow_query=False)
    assert b"" not in keys
    assert key_matches(keys, SECRET) is False


@pytest.mark.parametrize(("auth", "ok"), [
    (b"Bearer " + SECRET.encode(), True),
    (SECRET.encode(), True),
    (b"Bearer " + SECRET[:-2].encode(), False),
    (b"Basic " + SECRET.encode(), False),
])
def test_presented_then_matched(auth: bytes, ok: bool) -> None:
    keys = presented_keys(scope([(b"authorization", auth)]), allow_query=False)
    assert key_matches(keys, SECRET) is ok
