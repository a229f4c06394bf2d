"""Upstream clients. Each upstream sits behind the same small surface: a call for an
account's credentials returns JSON or a stream of events, or raises `UpstreamError`
already classified, so the pool and the retry policy never know which backend they drive."""

from agproxy.upstream.base import Upstream, open_stream
from agproxy.upstream.cloudcode import CloudCodeClient, Credentials
from agproxy.upstream.errors import Failure, UpstreamError

__all__ = ["CloudCodeClient", "Credentials", "Failure", "Upstream", "UpstreamError", "open_stream"]
