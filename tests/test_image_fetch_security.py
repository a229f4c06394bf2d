"""Image URL fetches (issue 11, defects 2 and 3): they connect only to the addresses that
were checked, whatever a name answers next (DNS rebinding), their errors do not help probe
ports, and one request cannot make the gateway fetch unlimited images.

The fetch unit is driven in-process where DNS must be faked (no DNS server here): the
resolver function and a loop whose `sock_connect` routes one public address to a local
server are the environment; the fetch code runs unchanged. The caps are tested through
the running gateway against a real image server on loopback."""

from __future__ import annotations

import asyncio
import base64
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from agproxy.config import Settings
from agproxy.frontends.fetch import FetchError, Image, fetch_image
from conftest import Borrowed, Gateway, borrow, google_env, spawn

PUBLIC = "93.184.215.14"  # a global address; the fake network routes it to a local server


class ImageHost:
    """An HTTP server that counts connections and requests in flight.

    `/img/<size>?delay=<s>` is an image/png of `size` bytes sent after `delay`;
    `/to/<url>` redirects there."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fill: bytes = b"i") -> None:
        self.connections = 0
        self.active = 0
        self.peak = 0
        self.hosts: list[str] = []  # the Host header of each request
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.hosts.append(self.headers.get("Host", ""))
                if self.path.startswith("/to/"):
                    self.send_response(302)
                    self.send_header("Location", self.path[4:])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                size = int(path.rsplit("/", 1)[1])
                with owner.lock:
                    owner.active += 1
                    owner.peak = max(owner.peak, owner.active)
                try:
                    time.sleep(float(query.partition("=")[2] or 0))
                finally:
                    with owner.lock:
                        owner.active -= 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.write((fill * size)[:size])

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with owner.lock:
                    owner.connections += 1
                super().process_request(request, client_address)

        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        # A short poll: shutdown() waits for the loop to look (every 0.5 s by default).
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def images() -> Iterator[ImageHost]:
    host = ImageHost()
    yield host
    host.close()


class FakeNetwork(asyncio.SelectorEventLoop):
    """An event loop on a network where `routes` maps public (address, port) pairs to local
    servers. Every connect is recorded, by the address the fetch code asked for."""

    def __init__(self, routes: dict[tuple[str, int], tuple[str, int]]) -> None:
        super().__init__()
        self.routes = routes
        self.connects: list[tuple[str, int]] = []

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        self.connects.append((address[0], address[1]))
        return await super().sock_connect(sock, self.routes.get(address[:2], address))


def answers(*replies: list[str]) -> tuple[Any, list[str]]:
    """A resolver that gives `replies` in turn (the last one from then on), and its log."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return replies[min(len(asked), len(replies)) - 1]

    return resolve, asked


def run(network: FakeNetwork, *fetches: Any) -> list[Image | FetchError]:
    """Each fetch in turn on `network`: its image, or the FetchError it raised."""

    async def all_of() -> list[Image | FetchError]:
        results: list[Image | FetchError] = []
        for fetch in fetches:
            try:
                results.append(await fetch)
            except FetchError as exc:
                results.append(exc)
        return results

    with asyncio.Runner(loop_factory=lambda: network) as runner:
        return runner.run(all_of())


def two_hosts() -> tuple[ImageHost, ImageHost]:
    """`internal` on 127.0.0.1 and `public` on 127.0.0.2, on the same port, so that a
    connection that followed the second DNS answer would reach `internal`."""
    internal = ImageHost("127.0.0.1", fill=b"s")
    public = ImageHost("127.0.0.2", internal.port, fill=b"p")
    return internal, public


def test_a_rebinding_name_is_fetched_from_the_address_checked_never_loopback() -> None:
    internal, public = two_hosts()
    network = FakeNetwork({(PUBLIC, public.port): ("127.0.0.2", public.port)})
    resolve, asked = answers([PUBLIC], ["127.0.0.1"])
    url = f"http://rebind.example:{public.port}/img/5"
    try:
        first, second = run(
            network,
            fetch_image(url, 100, False, resolve=resolve),
            fetch_image(url, 100, False, resolve=resolve),
        )
    finally:
        internal.close()
        public.close()
    assert isinstance(first, Image) and first.data == b"ppppp"
    assert isinstance(second, FetchError) and "private or local address" in second.message
    assert asked == ["rebind.example", "rebind.example"]  # one lookup per fetch, no more
    assert network.connects == [(PUBLIC, public.port)]
    assert internal.connections == 0 and public.connections == 1
    assert public.hosts == [f"rebind.example:{public.port}"]  # the name, not the address


def test_with_private_allowed_the_connection_still_goes_to_the_address_resolved() -> None:
    internal, public = two_hosts()
    network = FakeNetwork({})
    resolve, _ = answers(["127.0.0.2"], ["127.0.0.1"])
    try:
        [image] = run(
            network,
            fetch_image(f"http://rebind.example:{public.port}/img/3", 100, True, resolve=resolve),
        )
    finally:
        internal.close()
        public.close()
    assert isinstance(image, Image) and image.data == b"ppp"
    assert network.connects == [("127.0.0.2", public.port)]
    assert internal.connections == 0


@pytest.mark.parametrize(
    "reply",
    [
        [PUBLIC, "127.0.0.1"],
        ["::ffff:127.0.0.1"],
        ["::1"],
        ["10.0.0.7"],
        ["169.254.169.254"],
        ["0.0.0.0"],
        ["100.64.0.1"],
    ],
)
def test_every_address_of_an_answer_is_checked_before_any_connection(reply: list[str]) -> None:
    network = FakeNetwork({})
    resolve, _ = answers(reply)
    [result] = run(network, fetch_image("http://mixed.example/img/1", 100, False, resolve=resolve))
    assert isinstance(result, FetchError)
    assert result.message == (
        "the image URL's host is a private or local address; "
        "set allow_private_image_urls to fetch it"
    )
    assert network.connects == []


def test_every_redirect_hop_is_resolved_and_checked() -> None:
    internal, public = two_hosts()
    network = FakeNetwork({(PUBLIC, public.port): ("127.0.0.2", public.port)})
    hosts = {"cdn.example": [PUBLIC], "intranet.example": ["127.0.0.1"]}
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return hosts[host]

    hop = f"http://intranet.example:{internal.port}/img/4"
    try:
        [result] = run(
            network,
            fetch_image(f"http://cdn.example:{public.port}/to/{hop}", 100, False, resolve=resolve),
        )
    finally:
        internal.close()
        public.close()
    assert isinstance(result, FetchError) and "private or local address" in result.message
    assert asked == ["cdn.example", "intranet.example"]
    assert network.connects == [(PUBLIC, public.port)] and internal.connections == 0


# -- through the running gateway ---------------------------------------------------------
def chat(gw: Any, urls: list[str]) -> httpx.Response:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={
            "model": "gemini-3-flash",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, *parts]}],
        },
    )


def messages(gw: Any, urls: list[str]) -> httpx.Response:
    blocks = [{"type": "image", "source": {"type": "url", "url": url}} for url in urls]
    return httpx.post(
        gw.base_url + "/v1/messages",
        timeout=60,
        headers={"x-api-key": gw.api_key},
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": [*blocks, {"type": "text", "text": "x"}]}],
        },
    )


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway for the module; each test adds an account and sets the fetch settings it
    wants through the admin API, undone afterwards."""
    gw = spawn(tmp_path_factory.mktemp("fetch") / "gw", **google_env(fake_google_server))
    yield gw
    gw.stop()


@pytest.fixture
def shared(gateway: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    with borrow(gateway, fake_google) as turn:
        turn.add_accounts(1)
        yield turn


@pytest.fixture
def capped(shared: Borrowed) -> Gateway:
    shared.configure(
        allow_private_image_urls=True, image_fetch_concurrency=2, image_fetch_max_total_bytes=250
    )
    return shared.gw


@pytest.mark.parametrize("send", [chat, messages])
def test_more_image_urls_than_the_cap_are_refused_before_any_fetch(
    capped: Any, images: ImageHost, fake_google: Any, send: Any
) -> None:
    refused = send(capped, [f"{images.url}/img/10"] * 9)
    assert refused.status_code == 400
    assert error_of(refused) == (
        "the request has 9 image URLs; at most 8 are fetched per request (image_fetch_max_urls)"
    )
    assert images.connections == 0

    accepted = send(capped, [f"{images.url}/img/10"] * 8)
    assert accepted.status_code == 200, accepted.text
    assert images.connections == 8  # one connection per fetch: the one that was checked
    parts = fake_google.calls("streamGenerateContent")[-1].body["request"]["contents"][0]["parts"]
    inlined = [p["inlineData"] for p in parts if "inlineData" in p]
    assert inlined == [{"mimeType": "image/png", "data": base64.b64encode(b"i" * 10).decode()}] * 8


@pytest.mark.parametrize("send", [chat, messages])
def test_images_are_fetched_at_most_concurrency_at_a_time(
    capped: Any, images: ImageHost, send: Any
) -> None:
    response = send(capped, [f"{images.url}/img/10?delay=0.3"] * 6)
    assert response.status_code == 200, response.text
    assert images.peak == 2 and images.connections == 6


@pytest.mark.parametrize("send", [chat, messages])
def test_the_images_of_a_request_share_one_byte_budget(
    capped: Any, images: ImageHost, send: Any
) -> None:
    assert send(capped, [f"{images.url}/img/100"] * 2).status_code == 200
    refused = send(capped, [f"{images.url}/img/100"] * 3)
    assert refused.status_code == 400
    assert (
        "the images of this request are larger than 250 bytes in total "
        "(image_fetch_max_total_bytes)"
    ) in error_of(refused)


def test_fetch_errors_do_not_tell_open_ports_or_private_addresses_apart(shared: Borrowed) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    silent = socket.create_server(("127.0.0.1", 0))  # listening, and closes what it accepts

    def hang_up() -> None:
        while True:
            try:
                conn, _ = silent.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    open_gw = shared.gw
    shared.configure(allow_private_image_urls=True)
    texts = {
        error_of(chat(open_gw, [f"http://127.0.0.1:{s.getsockname()[1]}/a.png"]))
        for s in (closed, silent)
    }
    silent.close()
    closed.close()
    assert texts == {
        "messages[0].content[1]: could not fetch the image: the connection to its server failed"
    }

    strict = shared.gw
    shared.configure(allow_private_image_urls=False)
    refused = messages(strict, ["http://localhost:9/a.png"])
    assert refused.status_code == 400
    text = error_of(refused)
    assert "private or local address" in text
    assert "127.0.0.1" not in text and "::1" not in text


@pytest.mark.parametrize(
    "key", ["image_fetch_max_urls", "image_fetch_max_total_bytes", "image_fetch_concurrency"]
)
def test_image_fetch_caps_must_be_at_least_one(key: str) -> None:
    assert getattr(Settings(**{key: 1}), key) == 1
    with pytest.raises(ValidationError, match=f"{key} must be between 1 and"):
        Settings(**{key: 0})
