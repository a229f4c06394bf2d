"""Per-model quota from fetchAvailableModels; the 5-hour and weekly windows from
retrieveUserQuotaSummary."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agproxy.accounts.store import ModelQuota
from agproxy.accounts.windows import QuotaWindow, parse_summary, parse_time
from agproxy.upstream import CloudCodeClient, Credentials, Failure, UpstreamError

log = logging.getLogger("agproxy.accounts")

MODEL_PREFIXES = ("gemini", "claude", "gpt", "image", "imagen")


class Forbidden(Exception):
    """fetchAvailableModels still answered 403 without a project: the account is refused."""


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
                reset_at=parse_time(quota.get("resetTime")),
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


async def fetch_windows(client: CloudCodeClient, creds: Credentials) -> list[QuotaWindow] | None:
    """retrieveUserQuotaSummary, best effort: any failure yields None (no summary), never
    an error, so the per-model quota refresh stands on its own."""
    body: dict[str, Any] = {"project": creds.project} if creds.project else {}
    try:
        answer = await client.call("retrieveUserQuotaSummary", body, creds, quota_style=True)
    except UpstreamError as exc:
        log.info("no quota summary (%s): %s", exc.status, exc.message)
        return None
    except Exception:  # best effort: whatever broke, the quota refresh goes on
        log.warning("no quota summary", exc_info=True)
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("groups"), list):
        log.info("no quota summary: the answer has no groups")
        return None
    return parse_summary(answer)
