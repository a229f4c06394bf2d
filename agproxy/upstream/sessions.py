"""Outbound HTTP sessions: one per way out of this machine.

Direct calls and calls through an HTTP(S) proxy share one pooled keep-alive session
(aiohttp's `proxy=` names the proxy per request). aiohttp speaks no SOCKS: a SOCKS5
proxy is a connector of its own (aiohttp-socks, over python-socks), so each SOCKS URL
gets its own session, kept in a small cache of the most recently used. A session pushed
out of the cache is closed once the calls still reading from it are done: an answer may
stream for minutes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeGuard
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
from aiohttp_socks import ProxyConnector, ProxyType

SOCKS_SCHEMES = ("socks5://", "socks5h://")
# One session per account with its own SOCKS proxy is the common case; past this many
# distinct proxies the least recently used session is closed (its keep-alive lost).
MAX_SOCKS_SESSIONS = 64
# Streams stay open for minutes: the pool must not cap concurrent requests.
POOL_OPTIONS: dict[str, Any] = {"limit": 0, "limit_per_host": 0, "keepalive_timeout": 90}


def is_socks(proxy: str | None) -> TypeGuard[str]:
    return proxy is not None and proxy.startswith(SOCKS_SCHEMES)


def socks_connector(url: str) -> ProxyConnector:
    """A connector through the SOCKS5 proxy at `url` (settings validated it). Like curl,
    socks5:// resolves the destination's name here and socks5h:// at the proxy."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyConnector(
        proxy_type=ProxyType.SOCKS5,
        host=parts.hostname,
        port=parts.port,
        username=user,
        password=password,
        rdns=parts.scheme == "socks5h",
        **POOL_OPTIONS,
    )


def _session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=connector,
        json_serialize=lambda o: orjson.dumps(o).decode(),
        auto_decompress=True,
    )


class _SocksSession:
    __slots__ = ("session", "users", "evicted")

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.users = 0
        self.evicted = False


class Lease:
    """One call's use of a session: `session`, and `proxy` to pass as aiohttp's `proxy=`
    (an HTTP(S) proxy; None when direct or when the session's connector is the SOCKS
    proxy). Released when the call's answer is read: `with lease:` or `release()`."""

    __slots__ = ("session", "proxy", "_release")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        proxy: str | None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        self.proxy = proxy
        self._release = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Sessions:
    def __init__(self, max_socks: int = MAX_SOCKS_SESSIONS) -> None:
        self._direct: aiohttp.ClientSession | None = None
        self._socks: OrderedDict[str, _SocksSession] = OrderedDict()  # least recent first
        self._evicted_in_use: set[_SocksSession] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._max_socks = max_socks

    @property
    def direct(self) -> aiohttp.ClientSession:
        """The session for direct and HTTP(S)-proxy calls, created on first use inside the
        running loop."""
        if self._direct is None or self._direct.closed:
            self._direct = _session(aiohttp.TCPConnector(ttl_dns_cache=300, **POOL_OPTIONS))
        return self._direct

    def lease(self, proxy: str | None) -> Lease:
        """The session a call through `proxy` (None: direct) uses, held until released."""
        if not is_socks(proxy):
            return Lease(self.direct, proxy)
        entry = self._socks.pop(proxy, None)
        if entry is None or entry.session.closed:
            entry = _SocksSession(_session(socks_connector(proxy)))
        self._socks[proxy] = entry
        while len(self._socks) > self._max_socks:
            self._evict(self._socks.popitem(last=False)[1])
        entry.users += 1
        return Lease(entry.session, None, lambda: self._done(entry))

    def _evict(self, entry: _SocksSession) -> None:
        entry.evicted = True
        if entry.users:
            self._evicted_in_use.add(entry)
        else:
            self._close_soon(entry.session)

    def _done(self, entry: _SocksSession) -> None:
        entry.users -= 1
        if entry.evicted and not entry.users:
            self._evicted_in_use.discard(entry)
            self._close_soon(entry.session)

    def _close_soon(self, session: aiohttp.ClientSession) -> None:
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def socks_sessions(self) -> int:
        """SOCKS sessions open or closing (the cache and the evicted ones still in use)."""
        return len(self._socks) + len(self._evicted_in_use) + len(self._closing)

    async def close(self) -> None:
        """Close every session (at shutdown; calls still running fail)."""
        entries = [*self._socks.values(), *self._evicted_in_use]
        self._socks.clear()
        self._evicted_in_use.clear()
        for session in [self._direct, *(e.session for e in entries)]:
            if session is not None:
                await session.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
