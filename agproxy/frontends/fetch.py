"""Fetching images that clients reference by http(s) URL, safely.

Only http(s). Each hop's host is resolved once, every address is checked (public
only, unless the user allowed private ones: a request must not make the gateway
probe the LAN or the machine itself), and the connection goes to exactly those
addresses: aiohttp gets a resolver that answers with the checked addresses and never
asks DNS again, so a name that changes its answer (DNS rebinding) cannot steer it to
loopback. The URL keeps its host name, so the Host header, TLS SNI and the certificate
check are on that name. Redirects are followed by hand so every hop is checked.

One request may name at most `image_fetch_max_urls` images, fetched
`image_fetch_concurrency` at a time, `image_fetch_max_bytes` each and
`image_fetch_max_total_bytes` together: a small request must not make the gateway
hold gigabytes. Errors are coarse: they must not tell a client which internal
addresses exist or which ports are open.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from agproxy.config import Settings

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)
UNREACHABLE = "could not fetch the image: the connection to its server failed"

# (host, port) -> the host's addresses; the system's getaddrinfo unless a test hands one in.
Resolve = Callable[[str, int], Awaitable[list[str]]]


class FetchError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Image:
    mime: str
    data: bytes | bytearray

    def base64(self) -> str:
        return base64.b64encode(self.data).decode()


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # A link-local IPv6 address is only usable with its interface (scope id).
    return list(
        dict.fromkeys(
            f"{info[4][0]}%{info[4][3]}" if len(info[4]) > 3 and info[4][3] else str(info[4][0])
            for info in infos
        )
    )


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return ip.is_global


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for one fetch: only the addresses that were checked, never a
    lookup of its own."""

    def __init__(self) -> None:
        self._pins: dict[str, list[str]] = {}

    def pin(self, host: str, addresses: list[str]) -> None:
        self._pins[host] = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._pins.get(host)
        if not addresses:
            raise OSError("this host was not checked")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "proto": 0,
                "flags": 0,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


class Budget:
    """The bytes all images of one request may take together."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def check(self, more: int) -> None:
        if self.used + more > self.total:
            raise FetchError(
                f"the images of this request are larger than {self.total} bytes "
                "in total (image_fetch_max_total_bytes)"
            )

    def take(self, size: int) -> None:
        self.check(size)
        self.used += size


async def _pin(url: URL, allow_private: bool, resolve: Resolve, resolver: PinnedResolver) -> None:
    host = url.raw_host
    if url.scheme not in ("http", "https") or not host or url.port is None:
        raise FetchError("only http(s) image URLs can be fetched")
    try:
        addresses = await resolve(host, url.port)
    except OSError:
        addresses = []
    if not addresses:
        raise FetchError("could not fetch the image: its host name does not resolve")
    if not allow_private and not all(is_public(address) for address in addresses):
        raise FetchError(
            "the image URL's host is a private or local address; "
            "set allow_private_image_urls to fetch it"
        )
    resolver.pin(host, addresses)


async def _read(response: aiohttp.ClientResponse, max_bytes: int, budget: Budget) -> Image:
    if response.status != 200:
        raise FetchError(f"fetching the image answered HTTP {response.status}")
    mime = response.headers.get("Content-Type", "").split(";")[0].strip()
    if not mime.startswith("image/"):
        raise FetchError(f"the URL is not an image (Content-Type {mime[:60] or 'none'})")
    if response.headers.get("Content-Encoding", "identity") != "identity":
        raise FetchError("the image was sent compressed, although identity was asked for")
    too_big = f"the image is larger than {max_bytes} bytes (image_fetch_max_bytes)"
    declared = response.content_length or 0
    if declared > max_bytes:
        raise FetchError(too_big)
    budget.check(declared)
    data = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        if len(data) + len(chunk) > max_bytes:
            raise FetchError(too_big)
        budget.take(len(chunk))
        data += chunk
    return Image(mime, data)


async def fetch_image(
    url: str,
    max_bytes: int,
    allow_private: bool,
    budget: Budget | None = None,
    resolve: Resolve = system_resolve,
    timeout: aiohttp.ClientTimeout = FETCH_TIMEOUT,
) -> Image:
    """The image at `url`, connecting only to addresses that passed the check."""
    budget = budget or Budget(max_bytes)
    try:
        target = URL(url)
    except (ValueError, TypeError):
        raise FetchError("the image URL is not valid") from None
    resolver = PinnedResolver()
    # A session per fetch: its connector knows only this fetch's pins, so no pooled
    # connection or DNS cache carries an address from elsewhere. Fetches are rare.
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        for _ in range(MAX_REDIRECTS + 1):
            await _pin(target, allow_private, resolve, resolver)
            try:
                async with session.get(
                    target, allow_redirects=False, headers={"Accept-Encoding": "identity"}
                ) as response:
                    location = response.headers.get("Location")
                    if response.status not in REDIRECTS or not location:
                        return await _read(response, max_bytes, budget)
            except (aiohttp.ClientError, TimeoutError, OSError):
                # One text for refused, reset, timed out and not HTTP: a client must not
                # learn from it which ports are open.
                raise FetchError(UNREACHABLE) from None
            try:
                target = target.join(URL(location))
            except (ValueError, TypeError):
                raise FetchError("the image URL redirects to an invalid URL") from None
    raise FetchError("too many redirects fetching the image")


@dataclass(frozen=True)
class _Job:
    where: str
    url: str
    store: Callable[[Image], None]


def _set_chat_image(part: dict[str, Any], image: Image) -> None:
    part["image_url"] = {"url": f"data:{image.mime};base64,{image.base64()}"}


def _set_anthropic_image(block: dict[str, Any], image: Image) -> None:
    block["source"] = {"type": "base64", "media_type": image.mime, "data": image.base64()}


def _parts(messages: Any) -> list[tuple[int, int, dict[str, Any]]]:
    found = []
    for m, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for p, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict):
                found.append((m, p, part))
    return found


async def _fetch_all(jobs: list[_Job], settings: Settings, resolve: Resolve) -> None:
    limit = settings.image_fetch_max_urls
    if len(jobs) > limit:
        raise FetchError(
            f"the request has {len(jobs)} image URLs; at most {limit} are fetched "
            "per request (image_fetch_max_urls)"
        )
    if not jobs:
        return
    budget = Budget(settings.image_fetch_max_total_bytes)
    gate = asyncio.Semaphore(settings.image_fetch_concurrency)

    async def one(job: _Job) -> None:
        async with gate:
            try:
                image = await fetch_image(
                    job.url,
                    settings.image_fetch_max_bytes,
                    settings.allow_private_image_urls,
                    budget,
                    resolve,
                )
            except FetchError as exc:
                raise FetchError(f"{job.where}: {exc.message}") from None
        job.store(image)

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        # The first failure is the answer: the other fetches stop and free their bytes.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def inline_image_urls(
    messages: Any, settings: Settings, resolve: Resolve = system_resolve
) -> None:
    """Replace http(s) image_url parts in chat messages with data URLs, in place.
    Raises FetchError naming the part."""
    jobs = []
    for m, p, part in _parts(messages):
        if part.get("type") not in ("image_url", "input_image"):
            continue
        holder = part.get("image_url")
        url = holder.get("url") if isinstance(holder, dict) else holder
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            jobs.append(_Job(f"messages[{m}].content[{p}]", url, partial(_set_chat_image, part)))
    await _fetch_all(jobs, settings, resolve)


async def inline_anthropic_image_urls(
    messages: Any, settings: Settings, resolve: Resolve = system_resolve
) -> None:
    """Anthropic image blocks with `source.type: "url"` → base64 sources, in place."""
    jobs = []
    for m, b, block in _parts(messages):
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "url":
            jobs.append(
                _Job(
                    f"messages.{m}.content.{b}",
                    str(source.get("url") or ""),
                    partial(_set_anthropic_image, block),
                )
            )
    await _fetch_all(jobs, settings, resolve)
