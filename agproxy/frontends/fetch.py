"""Fetching images that clients reference by http(s) URL, safely.

Only http(s); the host must resolve to public addresses unless the user allowed
private ones (a request must not make the gateway probe the LAN or the machine
itself); a size cap and a timeout; redirects are followed by hand so every hop is
checked. The result replaces the URL with a base64 data URL before translation.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
MAX_REDIRECTS = 3


class FetchError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _check_host(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"only http(s) image URLs can be fetched: {url[:80]}")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchError(f"cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise FetchError(f"image URL host {parts.hostname} is a private or local address "
                             f"({address}); set allow_private_image_urls to fetch it")


async def fetch_image(session: aiohttp.ClientSession, url: str, max_bytes: int,
                      allow_private: bool) -> str:
    """The image at `url` as a data URL."""
    for _ in range(MAX_REDIRECTS + 1):
        await _check_host(url, allow_private)
        try:
            async with session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise FetchError(f"fetching the image answered HTTP {response.status}")
                mime = response.headers.get("Content-Type", "").split(";")[0].strip()
                if not mime.startswith("image/"):
                    raise FetchError(f"the URL is not an image (Content-Type {mime or 'none'})")
                data = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > max_bytes:
                        raise FetchError(f"the image is larger than {max_bytes} bytes")
                return f"data:{mime};base64,{base64.b64encode(bytes(data)).decode()}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"could not fetch the image: {type(exc).__name__}") from exc
    raise FetchError("too many redirects fetching the image")


async def inline_image_urls(messages: Any, session: aiohttp.ClientSession, max_bytes: int,
                            allow_private: bool) -> None:
    """Replace http(s) image_url parts in chat messages with data URLs, in place.
    Raises FetchError naming the part."""
    jobs = []
    for m, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for p, part in enumerate(content if isinstance(content, list) else []):
            if not isinstance(part, dict) or part.get("type") not in ("image_url", "input_image"):
                continue
            holder = part.get("image_url")
            url = holder.get("url") if isinstance(holder, dict) else holder
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                jobs.append((f"messages[{m}].content[{p}]", part, url))

    async def one(where: str, part: dict[str, Any], url: str) -> None:
        try:
            data_url = await fetch_image(session, url, max_bytes, allow_private)
        except FetchError as exc:
            raise FetchError(f"{where}: {exc.message}") from exc
        part["image_url"] = {"url": data_url}

    await asyncio.gather(*(one(*job) for job in jobs))


async def inline_anthropic_image_urls(messages: Any, session: aiohttp.ClientSession,
                                      max_bytes: int, allow_private: bool) -> None:
    """Anthropic image blocks with `source.type: "url"` → base64 sources, in place."""
    jobs = []
    for m, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for b, block in enumerate(content if isinstance(content, list) else []):
            source = block.get("source") if isinstance(block, dict) else None
            if isinstance(source, dict) and source.get("type") == "url":
                jobs.append((f"messages.{m}.content.{b}", block, str(source.get("url") or "")))

    async def one(where: str, block: dict[str, Any], url: str) -> None:
        try:
            data_url = await fetch_image(session, url, max_bytes, allow_private)
        except FetchError as exc:
            raise FetchError(f"{where}: {exc.message}") from exc
        header, _, data = data_url.partition(",")
        block["source"] = {"type": "base64", "media_type": header[5:].split(";")[0],
                           "data": data}

    await asyncio.gather(*(one(*job) for job in jobs))
