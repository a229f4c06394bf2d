"""Per-model quota from fetchAvailableModels."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from agproxy.accounts.store import ModelQuota
from agproxy.upstream import CloudCodeClient, Credentials, Failure, UpstreamError

MODEL_PREFIXES = ("gemini", "claude", "gpt", "image", "imagen")


class Forbidden(Exception):
    """fetchAvailableModels still answered 403 without a project: the account is refused."""


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_quotas(body: dict[str, Any]) -> list[ModelQuota]:
    """Models the pool can use: known families with quota info. A missing fraction
    means the quota is exhausted."""
    models = body.get("models") or {}
    found = []
    for name, info in sorted(models.items()):
        if not isinstance(info, dict) or not name.startswith(MODEL_PREFIXES):
            continue
        quota = info.get("quotaInfo")
        if not isinstance(quota, dict):
            continue
        fraction = quota.get("remainingFraction")
        max_out = info.get("maxOutputTokens")
        found.append(
            ModelQuota(
                model=name,
                remaining_fraction=float(fraction) if isinstance(fraction, int | float) else None,
                reset_at=_timestamp(quota.get("resetTime")),
                max_output_tokens=int(max_out) if isinstance(max_out, int) else None,
            )
        )
    return found


async def fetch_quotas(client: CloudCodeClient, creds: Credentials) -> list[ModelQuota]:
    """fetchAvailableModels with the account's project; a 403 is retried once without
    the project, and a second 403 raises Forbidden."""
    body: dict[str, Any] = {"project": creds.project} if creds.project else {}
    try:
        return parse_quotas(
            await client.call("fetchAvailableModels", body, creds, quota_style=True)
        )
    except UpstreamError as exc:
        if exc.kind is not Failure.FORBIDDEN:
            raise
        if not body:
            raise Forbidden(exc.message) from exc
    await asyncio.sleep(0)
    try:
        return parse_quotas(await client.call("fetchAvailableModels", {}, creds, quota_style=True))
    except UpstreamError as exc:
        if exc.kind is Failure.FORBIDDEN:
            raise Forbidden(exc.message) from exc
        raise
