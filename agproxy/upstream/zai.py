"""z.ai: an Anthropic-compatible provider, forwarded as it is (no translation).

The client's body goes through with `cache_control` keys removed and the model id
mapped to a GLM model; the answer (JSON or SSE) streams back byte for byte. Which key
asks, and what a refusal means, is the key ring's business (pool/keyring.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from agproxy.config import Settings
from agproxy.upstream.errors import (
    TRANSPORT_ERRORS,
    Failure,
    UpstreamError,
    classify,
    describe,
)
from agproxy.upstream.sessions import Lease, Sessions

FORWARDED_HEADERS = ("content-type", "accept", "anthropic-version", "anthropic-beta", "user-agent")
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=20, sock_read=300)
ERROR_BODY_LIMIT = 1 << 20  # bytes of an error answer read to classify it


def strip_cache_control(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_cache_control(v) for k, v in node.items() if k != "cache_control"}
    if isinstance(node, list):
        return [strip_cache_control(v) for v in node]
    return node


def zai_model(requested: str, settings: Settings) -> str:
    """glm ids and non-Claude ids pass; Claude ids map by family to the configured GLM."""
    lower = requested.lower()
    if requested in settings.zai_model_mapping:
        return settings.zai_model_mapping[requested]
    lower = lower.removeprefix("zai:")
    if lower.startswith("glm") or not lower.startswith("claude"):
        return requested.removeprefix("zai:")
    if "opus" in lower:
        return settings.zai_models.get("opus", "glm-4.7")
    if "haiku" in lower:
        return settings.zai_models.get("haiku", "glm-4.5-air")
    return settings.zai_models.get("sonnet", "glm-4.7")


@dataclass
class ZaiResponse:
    status: int
    content_type: str
    body: AsyncIterator[bytes]
    model: str | None = None  # the GLM model the request went to


class ZaiClient:
    def __init__(self, settings: Callable[[], Settings], sessions: Sessions) -> None:
        self.settings = settings
        self._sessions = sessions

    async def forward(
        self, path: str, body: dict[str, Any], client_headers: dict[str, str], key: str
    ) -> ZaiResponse:
        """POST the body to z.ai's `path` (/v1/messages or /v1/messages/count_tokens) with
        `key`. A refusal that concerns the key or z.ai (429, 401, 403, 404, 5xx, a
        connection that fails) is an UpstreamError, classified as a Google one is, so the
        key ring decides what follows; z.ai's answer to a bad request is passed on as it is
        (its body is already the Anthropic error the client expects)."""
        settings = self.settings()
        payload = strip_cache_control(body)
        if isinstance(payload.get("model"), str):
            payload["model"] = zai_model(payload["model"], settings)
        headers = {k: v for k, v in client_headers.items() if k in FORWARDED_HEADERS}
        headers.setdefault("content-type", "application/json")
        headers["x-api-key"] = key
        headers["authorization"] = f"Bearer {key}"
        url = settings.zai_base_url.rstrip("/") + path
        way = self._sessions.lease(settings.upstream_proxy)
        try:
            response = await way.session.post(
                url, data=orjson.dumps(payload), headers=headers, timeout=TIMEOUT, proxy=way.proxy
            )
        except BaseException as exc:  # a cancelled call releases the session too
            way.release()
            if isinstance(exc, TRANSPORT_ERRORS):
                raise UpstreamError(
                    Failure.TRANSPORT, 502, f"z.ai request failed: {describe(exc)}"
                ) from exc
            raise
        content_type = response.headers.get("Content-Type", "application/json")
        model = payload.get("model")
        if response.status < 400:
            return ZaiResponse(response.status, content_type, _relay(response, way), model)
        with way:
            raw = await _error_body(response)
        error = classify(response.status, raw, response.headers.get("Retry-After"))
        if error.kind in (Failure.INVALID_REQUEST, Failure.OTHER):
            return ZaiResponse(response.status, content_type, _replay(raw), model)
        error.message = f"z.ai: {error.message}"
        raise error


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    async with response:
        try:
            return await response.content.read(ERROR_BODY_LIMIT)
        except TRANSPORT_ERRORS as exc:
            raise UpstreamError(
                Failure.TRANSPORT, 502, f"z.ai answer failed: {describe(exc)}"
            ) from exc


async def _relay(response: aiohttp.ClientResponse, way: Lease) -> AsyncIterator[bytes]:
    with way:
        async with response:
            async for chunk in response.content.iter_any():
                yield chunk


async def _replay(raw: bytes) -> AsyncIterator[bytes]:
    yield raw
