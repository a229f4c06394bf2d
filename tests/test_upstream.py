"""The Cloud Code client against the fake Google: envelopes, SSE, fallback, errors, proxy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fake_google import CLIENT_ID, CLIENT_SECRET, Fault

from agproxy.config import Settings
from agproxy.upstream import CloudCodeClient, Credentials, Failure, UpstreamError
from agproxy.upstream.durations import find_retry_delay, parse_duration
from agproxy.upstream.errors import classify
from agproxy.upstream.sse import SSEDecoder
from conftest import free_port

UA = "Antigravity/9.9.9 (X11; Linux x86_64) Chrome/132.0.6834.160 Electron/39.2.3"


def access_token(fake: Any, acct: Any) -> str:
    response = httpx.post(
        fake.token_url,
        data={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "refresh_token",
            "refresh_token": acct.refresh_token,
        },
    )
    return str(response.json()["access_token"])


def envelope(acct: Any, text: str = "hi", model: str = "gemini-3-flash") -> dict[str, Any]:
    return {
        "project": acct.project,
        "model": model,
        "userAgent": "antigravity",
        "requestType": "agent",
        "requestId": f"agent/test/{uuid.uuid4().hex[:8]}",
        "request": {"contents": [{"role": "user", "parts": [{"text": text}]}]},
    }


def run_client(bases: tuple[str, ...], work: Any, **settings: Any) -> Any:
    config = Settings(api_key="sk-test-000000", upstream_base_urls=bases, **settings)
    client = CloudCodeClient(lambda: config)

    async def main() -> Any:
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(main())


@pytest.fixture
def acct(fake_google: Any) -> Any:
    return fake_google.add_account(
        email=f"up-{uuid.uuid4().hex[:8]}@example.com", project="proj-up"
    )


def test_stream_yields_unwrapped_events_in_order(fake_google: Any, acct: Any) -> None:
    creds = Credentials(access_token(fake_google, acct), acct.project)

    async def work(client: CloudCodeClient) -> list[Any]:
        return [e async for e in client.stream(envelope(acct, "hello there"), creds)]

    events = run_client((fake_google.v1internal,), work)
    assert len(events) >= 2
    text = "".join(
        p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"]
    )
    assert text == "echo: hello there"
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "response" not in events[0]  # unwrapped


def test_generate_and_headers(fake_google: Any, acct: Any) -> None:
    creds = Credentials(access_token(fake_google, acct), acct.project)

    async def work(client: CloudCodeClient) -> Any:
        return await client.generate(envelope(acct, "one"), creds)

    body = run_client(
        (fake_google.v1internal,), work, upstream_user_agent=UA, upstream_client_version="9.9.9"
    )
    assert body["candidates"][0]["content"]["parts"][-1]["text"] == "echo: one"
    [call] = fake_google.calls("generateContent", acct.email)
    assert call.headers["user-agent"] == UA
    assert call.headers["x-client-version"] == "9.9.9"
    assert call.headers["x-client-name"] == "antigravity"
    assert call.headers["x-goog-user-project"] == acct.project
    assert call.headers["authorization"] == f"Bearer {creds.access_token}"
    assert len(call.headers["x-machine-id"]) == 64


def test_fallback_moves_on_after_transport_errors_and_5xx_but_not_429(
    fake_google: Any, acct: Any
) -> None:
    creds = Credentials(access_token(fake_google, acct), acct.project)
    dead = f"http://127.0.0.1:{free_port()}/v1internal"
    first, second = fake_google.v1internal_at("first"), fake_google.v1internal_at("second")
    fake_google.inject(Fault.server_error(503), email=acct.email, method="generateContent")

    async def ok(client: CloudCodeClient) -> Any:
        return await client.generate(envelope(acct), creds)

    run_client((dead, first, second), ok)
    paths = [c.path for c in fake_google.calls("generateContent", acct.email)]
    assert paths == ["/first/v1internal:generateContent", "/second/v1internal:generateContent"]

    fake_google.reset()
    fake_google.inject(
        Fault.rate_limited(retry_delay="3.5s"), email=acct.email, method="generateContent"
    )
    with pytest.raises(UpstreamError) as caught:
        run_client((first, second), ok)
    assert caught.value.kind is Failure.RATE_LIMITED and caught.value.retry_after == 3.5
    assert len(fake_google.calls("generateContent", acct.email)) == 1  # no fallback on 429


@pytest.mark.parametrize(
    ("fault", "kind", "status", "retry_after", "reason"),
    [
        (
            Fault.rate_limited(quota_reset_delay="1h2m3.5s"),
            Failure.RATE_LIMITED,
            429,
            3723.5,
            "QUOTA_EXHAUSTED",
        ),
        (
            Fault.rate_limited(quota_reset_delay="850ms", reason="RATE_LIMIT_EXCEEDED"),
            Failure.RATE_LIMITED,
            429,
            0.85,
            "RATE_LIMIT_EXCEEDED",
        ),
        (
            Fault.rate_limited(reason="MODEL_CAPACITY_EXHAUSTED"),
            Failure.CAPACITY,
            429,
            None,
            "MODEL_CAPACITY_EXHAUSTED",
        ),
        (Fault.unauthenticated(), Failure.AUTH_EXPIRED, 401, None, None),
        (Fault.forbidden(validation=True), Failure.FORBIDDEN, 403, None, "VALIDATION_REQUIRED"),
        (Fault.invalid_argument("Invalid `signature`"), Failure.INVALID_REQUEST, 400, None, None),
        (Fault.not_found(), Failure.NOT_FOUND, 404, None, None),
        (Fault.server_error(500), Failure.CAPACITY, 500, None, None),
    ],
)
def test_errors_are_classified(
    fake_google: Any,
    acct: Any,
    fault: Any,
    kind: Failure,
    status: int,
    retry_after: float | None,
    reason: str | None,
) -> None:
    creds = Credentials(access_token(fake_google, acct), acct.project)
    fake_google.inject(fault, email=acct.email, method="streamGenerateContent")

    async def work(client: CloudCodeClient) -> None:
        async for _ in client.stream(envelope(acct), creds):
            pass

    with pytest.raises(UpstreamError) as caught:
        run_client((fake_google.v1internal,), work)
    error = caught.value
    assert (error.kind, error.status, error.retry_after) == (kind, status, retry_after)
    if reason:
        assert error.reason == reason
    if kind is Failure.FORBIDDEN:
        assert error.validation_url and error.validation_url.startswith("https://")
    assert creds.access_token not in str(error)


def test_a_cut_stream_raises_after_the_events_it_sent(fake_google: Any, acct: Any) -> None:
    creds = Credentials(access_token(fake_google, acct), acct.project)
    fake_google.inject(Fault.cut_stream(after_events=1), email=acct.email)
    seen: list[Any] = []

    async def work(client: CloudCodeClient) -> None:
        async for event in client.stream(envelope(acct, "a longer prompt to split"), creds):
            seen.append(event)

    with pytest.raises(UpstreamError) as caught:
        run_client((fake_google.v1internal,), work)
    assert caught.value.kind is Failure.TRANSPORT
    assert len(seen) == 1


def test_an_invalid_envelope_is_an_invalid_request(fake_google: Any, acct: Any) -> None:
    creds = Credentials(access_token(fake_google, acct), acct.project)
    bad = envelope(acct)
    bad["request"]["contents"].append({"role": "user", "parts": [{"text": "again"}]})
    bad["request"]["contents"].insert(1, {"role": "user", "parts": [{"text": "x"}]})

    async def work(client: CloudCodeClient) -> Any:
        return await client.generate(bad, creds)

    with pytest.raises(UpstreamError) as caught:
        run_client((fake_google.v1internal,), work)
    assert caught.value.kind is Failure.INVALID_REQUEST and caught.value.status == 400


class ForwardProxy:
    """A minimal HTTP forward proxy (absolute-form requests) that counts what it relays."""

    def __init__(self) -> None:
        self.relayed: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readline()
        method, target, version = request_line.decode().split()
        self.relayed.append(target)
        url = httpx.URL(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(url.host, url.port)
        path = url.raw_path.decode()
        upstream_writer.write(f"{method} {path} {version}\r\n".encode())

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def stop(self) -> None:
        if self._server:
            self._server.close()


def test_per_account_proxy_carries_the_call(fake_google: Any, acct: Any) -> None:
    token = access_token(fake_google, acct)
    proxy = ForwardProxy()

    async def work(client: CloudCodeClient) -> Any:
        url = await proxy.start()
        try:
            creds = Credentials(token, acct.project, proxy=url)
            return await client.generate(envelope(acct, "via proxy"), creds)
        finally:
            await proxy.stop()

    body = run_client((fake_google.v1internal,), work)
    assert body["candidates"][0]["content"]["parts"][-1]["text"] == "echo: via proxy"
    assert proxy.relayed == [f"{fake_google.v1internal}:generateContent"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h2m3.5s", 3723.5),
        ("850ms", 0.85),
        ("3723.5s", 3723.5),
        ("2m", 120.0),
        ("42", 42.0),
        ("", None),
        ("soon", None),
        ("1h and more", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        (
            {
                "error": {
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.5s"}
                    ]
                }
            },
            3.5,
        ),
        (
            {
                "error": {
                    "details": [{"@type": "x.ErrorInfo", "metadata": {"quotaResetDelay": "850ms"}}]
                }
            },
            0.85,
        ),
        ({"error": {"retry_after": 7}}, 7.0),
        ({"error": {"details": [{"retryDelay": {"seconds": 4, "nanos": 500000000}}]}}, 4.5),
        ({"error": {"message": "Your quota will reset after 1h2m3s."}}, 3723.0),
        ({"error": {"message": "nothing here"}}, None),
    ],
)
def test_find_retry_delay(body: dict, seconds: float | None) -> None:
    assert find_retry_delay(body) == seconds


def test_retry_after_header_wins() -> None:
    error = classify(429, b'{"error":{"code":429,"message":"slow down"}}', "12")
    assert (error.kind, error.retry_after, error.message) == (
        Failure.RATE_LIMITED,
        12.0,
        "slow down",
    )


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_sse_decoder_is_independent_of_chunking(size: int) -> None:
    raw = (
        b': ping\n\ndata: {"a": 1}\n\ndata: not json\n\nevent: x\ndata: [DONE]\n\n'
        b'data: {"b": [1, 2]}\r\n\r\ndata: {"c": "tail"}'
    )
    decoder = SSEDecoder()
    events = [e for chunk in _chunks(raw, size) for e in decoder.feed(chunk)]
    events += list(decoder.flush())
    assert events == [{"a": 1}, {"b": [1, 2]}, {"c": "tail"}]
