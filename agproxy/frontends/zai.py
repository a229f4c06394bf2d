"""z.ai as the Anthropic front end's second provider: the request forwarded as it is,
through the key ring (retries, cooldowns, the monitor's attempts), and the answer streamed
back byte for byte while the monitor reads its token counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agproxy.monitor import note, note_tokens
from agproxy.pool.keyring import KeyAttempt
from agproxy.service import Gateway
from agproxy.upstream.zai import ZaiResponse, zai_model

USAGE_SCAN_LIMIT = 1 << 20  # bytes of a z.ai answer read for its token counts


async def forward(request: Request, path: str, body: dict[str, Any]) -> Response:
    """The Anthropic request as z.ai's: forwarded as it is, answered byte for byte.
    Raises Exhausted when no key is left (the caller may fail over to Google), and
    UpstreamError for a refusal of the request's own."""
    gateway: Gateway = request.app.state.gateway
    headers = {k.lower(): v for k, v in request.headers.items()}
    settings = gateway.settings

    async def attempt(a: KeyAttempt) -> ZaiResponse:
        return await gateway.zai.forward(path, body, headers, a.key)

    model = zai_model(str(body.get("model") or ""), settings)
    answer = await gateway.zai_keys.run(model, settings.retry_max_attempts, attempt)
    note(routed_model=answer.model, provider="zai")
    return StreamingResponse(
        _tap_usage(answer.body),
        status_code=answer.status,
        media_type=answer.content_type,
        headers={"x-agproxy-provider": "zai"},
    )


async def _tap_usage(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass z.ai's bytes through untouched while reading the token counts for the
    monitor: `usage` in message_start/message_delta events, or in the one JSON body."""
    usage: dict[str, int] = {}
    pending = b""
    kept = bytearray()
    async for chunk in body:
        yield chunk
        if len(kept) < USAGE_SCAN_LIMIT:
            kept.extend(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > USAGE_SCAN_LIMIT:
            pending = b""  # one huge line (a JSON body): read from `kept` at the end
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                _merge_usage(usage, line[5:])
    if not usage and kept[:1] == b"{":
        _merge_usage(usage, bytes(kept))
    if usage:
        note_tokens(
            usage.get("input_tokens", 0) + usage.get("cache_read_input_tokens", 0),
            usage.get("output_tokens"),
            cached_tokens=usage.get("cache_read_input_tokens"),
        )


def _merge_usage(usage: dict[str, int], raw: bytes) -> None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if not isinstance(data, dict):
        return
    message = data.get("message")
    found = data.get("usage") or (message.get("usage") if isinstance(message, dict) else None)
    if isinstance(found, dict):
        usage.update({k: v for k, v in found.items() if isinstance(v, int)})
