"""The wire to a key-based provider: a request forwarded as it is (the client speaks the
provider's protocol), the Gemini pivot asked in the provider's protocol with its answer
read back as pivot events, and the model list (the console's connection test).

Every refusal that concerns the key or the provider (429, 401, 403, 404, 5xx, a broken
connection) is an UpstreamError classified as a Google one is, so the key ring decides
what follows. Which key asks is the key ring's choice (pool/keyring.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from agproxy.provider_settings import ProviderEntry
from agproxy.providers.pivot import checked_event, for_gemini_api
from agproxy.providers.to_anthropic import MessagesAnswer, messages_request
from agproxy.providers.to_openai import ChatAnswer, chat_request
from agproxy.upstream.errors import TRANSPORT_ERRORS, Failure, UpstreamError, classify, describe
from agproxy.upstream.sessions import Lease, Sessions
from agproxy.upstream.sse import SSEDecoder

TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=20, sock_read=300)
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=20)
ERROR_BODY_LIMIT = 1 << 20  # bytes of an error answer read to classify it
ANTHROPIC_VERSION = "2023-06-01"
# The client's headers a forwarded request keeps (its credentials never: the provider
# gets the provider's key).
FORWARDED = {
    "anthropic_api_key": ("content-type", "accept", "anthropic-version", "anthropic-beta"),
    "openai_compatible": ("content-type", "accept"),
    "gemini_api_key": ("content-type", "accept"),
}
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "key"})
MODELS_SHOWN = 50  # of a provider's model list, in a connection test's answer
MODEL_LISTS = {
    "anthropic_api_key": "/v1/models",
    "openai_compatible": "/models",
    "gemini_api_key": "/v1beta/models",
}


@dataclass
class Passed:
    """A forwarded request's answer: the provider's status, type and bytes as they come."""

    status: int
    content_type: str
    body: AsyncIterator[bytes]
    model: str | None = None


def auth_headers(entry: ProviderEntry, key: str) -> dict[str, str]:
    if entry.kind == "gemini_api_key":
        return {"x-goog-api-key": key}
    if entry.kind == "openai_compatible":
        return {"authorization": f"Bearer {key}"}
    headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    if urlsplit(entry.url).hostname != "api.anthropic.com":  # z.ai and others read either
        headers["authorization"] = f"Bearer {key}"
    return headers


class ProviderClient:
    def __init__(self, sessions: Sessions, default_proxy: Callable[[], str | None]) -> None:
        self.sessions = sessions
        self.default_proxy = default_proxy

    async def _post(
        self, entry: ProviderEntry, path: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[aiohttp.ClientResponse, Lease]:
        """The provider's answer while it is not an error; an UpstreamError when it is
        (its body read and classified, its message naming the provider)."""
        way = self.sessions.lease(entry.proxy or self.default_proxy())
        try:
            response = await way.session.post(
                entry.url + path,
                data=orjson.dumps(payload),
                headers={"content-type": "application/json", **headers},
                timeout=TIMEOUT,
                proxy=way.proxy,
            )
        except BaseException as exc:  # a cancelled call releases the session too
            way.release()
            if isinstance(exc, TRANSPORT_ERRORS):
                raise UpstreamError(
                    Failure.TRANSPORT, 502, f"{entry.name}: request failed: {describe(exc)}"
                ) from exc
            raise
        if response.status < 400:
            return response, way
        with way:
            async with response:
                try:
                    raw = await response.content.read(ERROR_BODY_LIMIT)
                except TRANSPORT_ERRORS as exc:
                    raise UpstreamError(
                        Failure.TRANSPORT, 502, f"{entry.name}: answer failed: {describe(exc)}"
                    ) from exc
        error = classify(response.status, raw, response.headers.get("Retry-After"))
        error.message = f"{entry.name}: {scrubbed(error.message, headers)}"
        raise error

    async def forward(
        self,
        entry: ProviderEntry,
        key: str,
        path: str,
        body: dict[str, Any],
        client_headers: dict[str, str],
    ) -> Passed:
        """`body` POSTed to the provider's `path` as the client sent it (its model already
        the provider's). The provider's answer to a bad request is passed on as it is: its
        body is already the error the client's protocol expects."""
        kept = {k: v for k, v in client_headers.items() if k in FORWARDED[entry.kind]}
        headers = {**kept, **auth_headers(entry, key)}
        model = body.get("model") if isinstance(body.get("model"), str) else None
        try:
            response, way = await self._post(entry, path, body, headers)
        except UpstreamError as error:
            if error.kind not in (Failure.INVALID_REQUEST, Failure.OTHER):
                raise
            raw = orjson.dumps(error.body) if error.body is not None else error.message.encode()
            return Passed(error.status, "application/json", _once(raw), model)
        content_type = response.headers.get("Content-Type", "application/json")
        return Passed(response.status, content_type, _relay(response, way, entry.name), model)

    async def events(
        self, entry: ProviderEntry, key: str, model: str, request: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """The pivot `request` asked of `model` (streamed, in the provider's protocol);
        yields the answer as pivot events."""
        headers = auth_headers(entry, key)
        reader: ChatAnswer | MessagesAnswer | None = None
        if entry.kind == "openai_compatible":
            reader = ChatAnswer(model)
            path, payload = "/chat/completions", chat_request(request, model, stream=True)
        elif entry.kind == "anthropic_api_key":
            reader = MessagesAnswer(model)
            path, payload = "/v1/messages", messages_request(request, model, stream=True)
        else:
            path = f"/v1beta/models/{quote(model, safe='')}:streamGenerateContent?alt=sse"
            payload = for_gemini_api(request)
        response, way = await self._post(entry, path, payload, headers)
        decoder = SSEDecoder()
        with way:
            async with response:
                try:
                    async for chunk in response.content.iter_any():
                        for data in decoder.feed(chunk):
                            for event in _read(entry, reader, data):
                                yield event
                except TRANSPORT_ERRORS as exc:
                    raise UpstreamError(
                        Failure.TRANSPORT,
                        502,
                        f"{entry.name}: the answer broke off mid-stream: {describe(exc)}",
                    ) from exc
                for data in decoder.flush():
                    for event in _read(entry, reader, data):
                        yield event

    async def models(self, entry: ProviderEntry, key: str) -> list[str]:
        """The ids the provider lists for `key`: a request that proves the URL, the key
        and the way there (its proxy) work. UpstreamError when they do not."""
        way = self.sessions.lease(entry.proxy or self.default_proxy())
        with way:
            try:
                async with way.session.get(
                    entry.url + MODEL_LISTS[entry.kind],
                    headers=auth_headers(entry, key),
                    timeout=PROBE_TIMEOUT,
                    proxy=way.proxy,
                ) as response:
                    raw = await response.content.read(ERROR_BODY_LIMIT)
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except TRANSPORT_ERRORS as exc:
                raise UpstreamError(
                    Failure.TRANSPORT, 502, f"{entry.name}: {describe(exc)}"
                ) from exc
        if status >= 400:
            error = classify(status, raw, retry_after)
            error.message = f"{entry.name}: {scrubbed(error.message, {'key': key})}"
            raise error
        return _model_ids(raw)

    async def probe(self, entry: ProviderEntry) -> dict[str, Any]:
        """Each key asks for the provider's models, side by side: what works, what not and why
        (the provider's own message; never the key)."""
        if not entry.keys:
            return {"ok": False, "name": entry.name, "keys": [], "message": "no key is configured"}

        async def one(index: int) -> dict[str, Any]:
            started = time.perf_counter()
            result: dict[str, Any] = {"key": entry.key_name(index)}
            try:
                models = await self.models(entry, entry.keys[index].key)
                result.update(ok=True, status=200, models=models[:MODELS_SHOWN], count=len(models))
            except UpstreamError as error:
                result.update(ok=False, status=error.status, message=error.message[:300])
            result["ms"] = round((time.perf_counter() - started) * 1000)
            return result

        results = await asyncio.gather(*(one(i) for i in range(len(entry.keys))))
        working = sum(r["ok"] for r in results)
        return {
            "ok": working == len(results),
            "name": entry.name,
            "keys": list(results),
            "message": f"{working} of {len(results)} keys work",
        }


def scrubbed(text: str, headers: dict[str, str]) -> str:
    """A provider's message without the key it was sent (some echo a wrong key back)."""
    for name, value in headers.items():
        secret = value.removeprefix("Bearer ")
        if name in SECRET_HEADERS and len(secret) >= 8:
            text = text.replace(secret, "••••")
    return text


def _read(
    entry: ProviderEntry, reader: ChatAnswer | MessagesAnswer | None, data: Any
) -> list[dict[str, Any]]:
    if isinstance(data, dict) and data.get("type") == "error":  # Anthropic, mid-stream
        found = data.get("error")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        kind = Failure.RATE_LIMITED if error.get("type") == "rate_limit_error" else Failure.CAPACITY
        status = 429 if kind is Failure.RATE_LIMITED else 529
        raise UpstreamError(kind, status, f"{entry.name}: {error.get('message') or 'error'}")
    if isinstance(data, dict) and isinstance(data.get("error"), dict):  # OpenAI, Gemini
        raise classify(_status(data["error"]), orjson.dumps(data))
    if reader is None:
        event = checked_event(data)
        return [event] if event is not None else []
    return reader.feed(data)


def _status(error: dict[str, Any]) -> int:
    code = error.get("code")
    return code if isinstance(code, int) and 400 <= code <= 599 else 500


def _model_ids(raw: bytes) -> list[str]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    listed = (data.get("data") or data.get("models") or []) if isinstance(data, dict) else []
    ids = []
    for item in listed:
        if isinstance(item, dict):
            ident = item.get("id") or str(item.get("name") or "").removeprefix("models/")
            if ident:
                ids.append(str(ident))
    return ids


async def _relay(response: aiohttp.ClientResponse, way: Lease, name: str) -> AsyncIterator[bytes]:
    with way:
        async with response:
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            except TRANSPORT_ERRORS as exc:
                raise UpstreamError(
                    Failure.TRANSPORT, 502, f"{name}: the answer broke off: {describe(exc)}"
                ) from exc


async def _once(raw: bytes) -> AsyncIterator[bytes]:
    yield raw
