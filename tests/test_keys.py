"""Finding the caller's one key in an ASGI scope, and comparing it."""

from __future__ import annotations

import pytest

from agproxy.security.keys import SeveralKeys, key_matches, presented_key
from agproxy.security.throttle import FREE_FAILURES, MAX_BLOCK, MAX_CLIENTS, AuthThrottle

SECRET = "sk-0123456789abcdef0123456789abcdef"


def scope(headers: list[tuple[bytes, bytes]] | None = None, query: bytes = b"") -> dict:
    return {"type": "http", "headers": headers or [], "query_string": query}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer k1")], b"k1"),
        ([(b"authorization", b"bearer k1")], b"k1"),
        ([(b"authorization", b"BEARER k1")], b"k1"),
        ([(b"authorization", b"Bearer   k1  ")], b"k1"),
        ([(b"authorization", b"k1")], b"k1"),
        ([(b"authorization", b"  k1 ")], b"k1"),
        ([(b"x-api-key", b"k1")], b"k1"),
        ([(b"x-goog-api-key", b"k1")], b"k1"),
        ([(b"x-api-key", b" k1 ")], b"k1"),
        # The same key in several headers (an SDK sending two forms) is one key.
        (
            [(b"authorization", b"Bearer k1"), (b"x-api-key", b"k1"), (b"x-goog-api-key", b"k1")],
            b"k1",
        ),
        ([], None),
        ([(b"authorization", b"")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"x-api-key", b"   ")], None),
        ([(b"cookie", b"k1"), (b"x-other-key", b"k1")], None),
    ],
)
def test_presented_key_headers(headers: list, expected: bytes | None) -> None:
    for allow_query in (False, True):
        assert presented_key(scope(headers), allow_query=allow_query) == expected


@pytest.mark.parametrize(
    ("query", "allow_query", "expected"),
    [
        (b"key=k1", True, b"k1"),
        (b"key=k1", False, None),
        (b"alt=sse&key=k1", True, b"k1"),
        (b"alt=sse", True, None),
        (b"key=", True, None),
        (b"apikey=k1", True, None),
        (b"key=sk-a%2Bb", True, b"sk-a+b"),
        (b"key=%FF%FE", True, b"\xff\xfe"),  # not UTF-8: still bytes, never an encode error
    ],
)
def test_presented_key_query(query: bytes, allow_query: bool, expected: bytes | None) -> None:
    assert presented_key(scope(query=query), allow_query=allow_query) == expected


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ([(b"x-api-key", b"a"), (b"x-api-key", b"b")], b""),
        ([(b"authorization", b"Bearer a"), (b"x-goog-api-key", b"b")], b""),
        ([(b"x-goog-api-key", b"a")], b"key=b"),
        ([], b"key=a&key=b"),
        ([(b"x-api-key", b"guess")] * 1000 + [(b"x-api-key", SECRET.encode())], b""),
    ],
)
def test_several_different_keys_are_refused(headers: list, query: bytes) -> None:
    with pytest.raises(SeveralKeys):
        presented_key(scope(headers, query), allow_query=True)


def test_query_key_is_ignored_where_not_allowed() -> None:
    s = scope([(b"x-goog-api-key", b"h")], query=b"key=q")
    assert presented_key(s, allow_query=False) == b"h"


def test_scope_without_query_string() -> None:
    assert (
        presented_key({"type": "http", "headers": [(b"x-api-key", b"k")]}, allow_query=True) == b"k"
    )


@pytest.mark.parametrize(
    ("candidate", "ok"),
    [
        (SECRET.encode(), True),
        (None, False),
        (SECRET[:-1].encode(), False),  # prefix
        (SECRET[1:].encode(), False),  # suffix
        (SECRET[:3].encode(), False),  # just "sk-"
        ((SECRET + "x").encode(), False),  # longer
        (SECRET.upper().encode(), False),  # case matters
        ((" " + SECRET).encode(), False),
        (b"", False),
    ],
)
def test_key_matches(candidate: bytes | None, ok: bool) -> None:
    assert key_matches(candidate, SECRET) is ok


@pytest.mark.parametrize(
    ("auth", "ok"),
    [
        (b"Bearer " + SECRET.encode(), True),
        (SECRET.encode(), True),
        (b"Bearer " + SECRET[:-2].encode(), False),
        (b"Basic " + SECRET.encode(), False),
    ],
)
def test_presented_then_matched(auth: bytes, ok: bool) -> None:
    key = presented_key(scope([(b"authorization", auth)]), allow_query=False)
    assert key_matches(key, SECRET) is ok


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_after_the_free_failures_and_doubles() -> None:
    clock = Clock()
    throttle = AuthThrottle(clock)
    for n in range(FREE_FAILURES):
        assert throttle.failed("10.0.0.1") == (n + 1, 0.0)
        assert throttle.blocked_for("10.0.0.1") == 0.0
    blocks = [throttle.failed("10.0.0.1")[1] for _ in range(4)]
    assert blocks == [1.0, 2.0, 4.0, 8.0]
    assert throttle.blocked_for("10.0.0.1") == 8.0
    assert throttle.blocked_for("10.0.0.2") == 0.0  # per address
    clock.now += 8.0
    assert throttle.blocked_for("10.0.0.1") == 0.0
    for _ in range(30):
        _, block = throttle.failed("10.0.0.1")
    assert block == MAX_BLOCK


def test_throttle_forgets_on_success_and_after_quiet() -> None:
    clock = Clock()
    throttle = AuthThrottle(clock)
    for _ in range(FREE_FAILURES + 2):
        throttle.failed("a")
    assert throttle.blocked_for("a") > 0
    throttle.succeeded("a")
    assert throttle.blocked_for("a") == 0.0
    for _ in range(FREE_FAILURES + 1):
        throttle.failed("b")
    clock.now += 10_000
    assert throttle.blocked_for("b") == 0.0
    assert throttle.failed("b") == (1, 0.0)


def test_throttle_table_is_bounded() -> None:
    throttle = AuthThrottle(Clock())
    for n in range(MAX_CLIENTS + 500):
        throttle.failed(f"addr-{n}")
    assert len(throttle._clients) == MAX_CLIENTS
