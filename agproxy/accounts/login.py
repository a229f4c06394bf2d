"""Google sign-in: an authorization URL with PKCE and state, and the ways its code comes
back (a one-shot loopback callback server for the CLI, the gateway's /auth/callback, or
the redirect URL pasted by hand on a headless machine)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from agproxy.accounts.oauth import PKCE, GoogleOAuth

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>agproxy sign-in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;color:#1f2937}}
h1{{font-size:1.4rem}}</style></head><body><h1>{title}</h1><p>{text}</p></body></html>"""


class LoginError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def page(title: str, text: str) -> bytes:
    import html

    return PAGE.format(title=html.escape(title), text=html.escape(text)).encode()


def extract_code(pasted: str, expected_state: str | None) -> str:
    """The authorization code from a pasted redirect URL (checking its state), or the
    pasted code itself."""
    pasted = pasted.strip()
    if "code=" not in pasted:
        if not pasted:
            raise LoginError("nothing pasted")
        return pasted
    query = parse_qs(urlsplit(pasted).query if "?" in pasted else pasted)
    if "error" in query:
        raise LoginError(f"Google answered: {query['error'][0]}")
    state = (query.get("state") or [""])[0] or None
    if expected_state and state is not None and state != expected_state:
        raise LoginError("the state in the URL does not match this sign-in; start again")
    code = (query.get("code") or [""])[0]
    if not code:
        raise LoginError("no code in the pasted URL")
    return code


@dataclass
class LoginFlow:
    """One sign-in attempt: its state, PKCE pair and redirect URI."""

    redirect_uri: str
    state: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    pkce: PKCE = field(default_factory=PKCE.new)

    def url(self, oauth: GoogleOAuth) -> str:
        return oauth.authorize_url(self.redirect_uri, self.state, self.pkce)

    def code_from_query(self, query: dict[str, list[str]]) -> str:
        if "error" in query:
            raise LoginError(f"Google answered: {query['error'][0]}")
        if (query.get("state") or [""])[0] != self.state:
            raise LoginError(
                "the state does not match this sign-in (a stale or forged "
                "callback); start the sign-in again"
            )
        code = (query.get("code") or [""])[0]
        if not code:
            raise LoginError("the callback carried no code")
        return code


class LoopbackCallback:
    """A one-shot HTTP listener on 127.0.0.1 that receives Google's redirect."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._queries: asyncio.Queue[dict[str, list[str]]] = asyncio.Queue()
        self.port = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}/oauth-callback"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            target = parts[1] if len(parts) > 1 else "/"
            split = urlsplit(target)
            if split.path != "/oauth-callback":
                body, status = page("Not found", "This is agproxy's sign-in listener."), 404
            else:
                await self._queries.put(parse_qs(split.query))
                body, status = (
                    page("Signed in", "You can close this tab and go back to the terminal."),
                    200,
                )
            writer.write(
                f"HTTP/1.1 {status} OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def next_query(self) -> dict[str, list[str]]:
        return await self._queries.get()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
