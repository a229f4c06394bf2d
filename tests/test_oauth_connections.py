"""The token endpoint over a kept-alive connection the server drops as it is reused: the
form is sent once more on a new connection, not reported as an unreachable endpoint (a
CI run met it: an account added while the fake's idle connection closed)."""

from __future__ import annotations

import asyncio

from agproxy.accounts.oauth import GoogleOAuth, OAuthError
from agproxy.config import Settings
from agproxy.upstream.sessions import Sessions

ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 47\r\n\r\n"
    b'{"access_token":"ya29.fresh","expires_in":3599}'
)


async def _token_server(drops: int) -> tuple[asyncio.Server, list[int]]:
    """Each of the first `drops` connections reads a request and closes without a word;
    later ones answer with a token."""
    seen: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(len(seen))
        await reader.readuntil(b"\r\n\r\n")
        if len(seen) <= drops:
            writer.close()
            return
        writer.write(ANSWER)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, seen


async def _refresh(drops: int) -> tuple[str | None, int]:
    server, seen = await _token_server(drops)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(
        api_key="sk-0123456789abcdef", oauth_token_url=f"http://127.0.0.1:{port}/token"
    )
    sessions = Sessions()
    try:
        grant = await GoogleOAuth(lambda: settings, sessions).refresh("1//refresh")
        return grant.access_token, len(seen)
    except OAuthError as exc:
        return exc.kind, len(seen)
    finally:
        await sessions.close()
        server.close()


def test_a_dropped_connection_is_asked_once_more() -> None:
    assert asyncio.run(_refresh(drops=1)) == ("ya29.fresh", 2)


def test_a_second_drop_is_reported_as_transient() -> None:
    assert asyncio.run(_refresh(drops=2)) == ("transient", 2)
