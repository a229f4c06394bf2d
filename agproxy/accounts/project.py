"""Finding an account's Cloud Code project and subscription tier.

loadCodeAssist names the project; an account without one is onboarded (the default
allowed tier, a long-running operation polled until done); when that fails too,
requests use the well-known fallback project without storing it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agproxy.upstream import CloudCodeClient, Credentials, UpstreamError

FALLBACK_PROJECT = "bamboo-precept-lgxtn"
METADATA = {"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}
ONBOARD_POLLS = 10
ONBOARD_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class ProjectInfo:
    project_id: str | None  # None: nothing found; use FALLBACK_PROJECT for requests
    tier: str | None


def tier_of(info: dict[str, Any]) -> str | None:
    """The tier as the reference names it: paid tier, else current tier, else the
    default allowed tier marked (Restricted) when the account is ineligible."""

    def name(tier: Any) -> str | None:
        if isinstance(tier, dict):
            return tier.get("name") or tier.get("id")
        return None

    paid = name(info.get("paidTier"))
    if paid:
        return paid
    if not info.get("ineligibleTiers"):
        current = name(info.get("currentTier"))
        if current:
            return current
    for tier in info.get("allowedTiers") or []:
        if isinstance(tier, dict) and tier.get("isDefault"):
            label = name(tier)
            return f"{label} (Restricted)" if label else None
    return name(info.get("currentTier"))


def _project_of(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and value.get("id"):
        return str(value["id"])
    return None


async def discover_project(
    client: CloudCodeClient, creds: Credentials, poll_seconds: float = ONBOARD_POLL_SECONDS
) -> ProjectInfo:
    """loadCodeAssist, then onboardUser when there is no project. Raises UpstreamError
    only when loadCodeAssist itself fails."""
    info = await client.call("loadCodeAssist", {"metadata": METADATA}, creds)
    tier = tier_of(info)
    project = _project_of(info.get("cloudaicompanionProject"))
    if project:
        return ProjectInfo(project, tier)
    default = next(
        (t for t in info.get("allowedTiers") or [] if isinstance(t, dict) and t.get("isDefault")),
        None,
    )
    tier_id = (default or {}).get("id") or "free-tier"
    try:
        operation = await client.call(
            "onboardUser", {"tierId": tier_id, "metadata": METADATA}, creds
        )
        for _ in range(ONBOARD_POLLS):
            if operation.get("done"):
                break
            await asyncio.sleep(poll_seconds)
            operation = await client.get(str(operation["name"]), creds)
        project = _project_of((operation.get("response") or {}).get("cloudaicompanionProject"))
    except (UpstreamError, KeyError, AttributeError):
        project = None
    return ProjectInfo(project, tier)
