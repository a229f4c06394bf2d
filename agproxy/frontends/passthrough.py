"""A request for a provider that speaks the client's own protocol: forwarded as it is
(but for its model), through the provider's key ring (retries, cooldowns, the monitor's
attempts), and answered byte for byte while the monitor reads the token counts.

z.ai's dispatch modes come through here too: a Claude request the gateway's plan gives
to the dispatching provider, its model mapped by family (claude-opus-… → glm-…).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agproxy.monitor import note_tokens
from agproxy.protocols import Protocol, error_body
from agproxy.provider_settings import ProviderEntry
from agproxy.providers.registry import Target
from agproxy.service import Gateway
from agproxy.upstream import UpstreamError

log = logging.getLogger("agproxy.providers")
# The protocol each kind speaks: what a forwarded request's client speaks too.
PROTOCOLS = {
    "anthropic_api_key": Protocol.ANTHROPIC,
    "openai_compatible": Protocol.OPENAI,
    "gemini_api_key": Protocol.GOOGLE,
}

USAGE_SCAN_LIMIT = 1 << 20  # bytes of an answer read for its token counts


async def forward(request: Request, target: Target, path: str, body: dict[str, Any]) -> Response:
    """Raises Exhausted when no key is left (the caller may fail over), and UpstreamError
    for a refusal of the request's own."""
    gateway: Gateway = request.app.state.gateway
    headers = {k.lower(): v for k, v in request.headers.items()}
    answer = await gateway.providers.forward(target, path, body, headers)
    chunks = answer.body
    if answer.content_type.startswith("text/event-stream"):
        chunks = _ended_cleanly(chunks, PROTOCOLS[target.entry.kind])
    return StreamingResponse(
        _tap_usage(chunks),
        status_code=answer.status,
        media_type=answer.content_type,
        headers={"x-agproxy-provider": target.name},
    )


async def to_dispatcher(request: Request, path: str, body: dict[str, Any]) -> Response:
    """An Anthropic request for the provider that takes a share of Claude requests."""
    gateway: Gateway = request.app.state.gateway
    entry = gateway.settings.dispatcher
    assert entry is not None  # the plan named it
    model = dispatched_model(str(body.get("model") or ""), entry)
    return await forward(request, Target(entry, model), path, strip_cache_control(body))


def dispatched_model(requested: str, entry: ProviderEntry) -> str:
    """An exact mapping first; the provider's own ids (glm-…) and non-Claude ids pass;
    Claude ids go by family to the configured models."""
    if requested in entry.model_mapping:
        return entry.model_mapping[requested]
    bare = requested.removeprefix(f"{entry.name}:")
    lower = bare.lower()
    if lower.startswith("glm") or not lower.startswith("claude"):
        return bare
    families = entry.claude_models
    for family in ("opus", "haiku"):
        if family in lower and family in families:
            return families[family]
    return families.get("sonnet", bare)


def strip_cache_control(node: Any) -> Any:
    """z.ai refuses Anthropic's cache_control marks."""
    if isinstance(node, dict):
        return {k: strip_cache_control(v) for k, v in node.items() if k != "cache_control"}
    if isinstance(node, list):
        return [strip_cache_control(v) for v in node]
    return node


async def _ended_cleanly(body: AsyncIterator[bytes], protocol: Protocol) -> AsyncIterator[bytes]:
    """A stream that breaks off mid-way ends with an error event in the client's protocol
    (its SDK raises it), not with a connection cut in the middle of a frame."""
    try:
        async for chunk in body:
            yield chunk
    except UpstreamError as error:
        log.warning("%s", error.message)
        frame = orjson.dumps(error_body(protocol, 502, error.message))
        prefix = b"event: error\n" if protocol is Protocol.ANTHROPIC else b""
        yield b"\n\n" + prefix + b"data: " + frame + b"\n\n"


async def _tap_usage(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The provider's bytes untouched, the token counts read on the way: from the events
    of a stream (`data:` lines), or from the one JSON body."""
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
            if line.startswith(b"data:") and b"sage" in line:
                _merge_usage(usage, line[5:])
    if not usage and bytes(kept[:1]) in (b"{", b"["):
        _merge_usage(usage, bytes(kept))
    if usage:
        note_tokens(usage.get("input"), usage.get("output"), cached_tokens=usage.get("cached"))


def _merge_usage(usage: dict[str, int], raw: bytes) -> None:
    """Token counts in any of the three protocols' shapes: Anthropic's `usage` (also in
    message_start's message), OpenAI's `usage`, Gemini's `usageMetadata`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if isinstance(data, list):  # Gemini's non-streamed answer to a streamed call
        data = data[-1] if data and isinstance(data[-1], dict) else {}
    if not isinstance(data, dict):
        return
    message = data.get("message")
    found = data.get("usage") or (message.get("usage") if isinstance(message, dict) else None)
    if isinstance(found, dict):
        counts = {k: v for k, v in found.items() if isinstance(v, int)}
        cached = counts.get("cache_read_input_tokens", 0)
        if "input_tokens" in counts:
            usage["input"] = counts["input_tokens"] + cached
        if cached:
            usage["cached"] = cached
        for name, kind in (("output_tokens", "output"), ("prompt_tokens", "input")):
            if name in counts:
                usage[kind] = counts[name]
        if "completion_tokens" in counts:
            usage["output"] = counts["completion_tokens"]
    metadata = data.get("usageMetadata")
    if isinstance(metadata, dict):
        for name, kind in (("promptTokenCount", "input"), ("candidatesTokenCount", "output")):
            if isinstance(metadata.get(name), int):
                usage[kind] = metadata[name]
