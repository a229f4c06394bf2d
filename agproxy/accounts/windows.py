"""Quota windows: retrieveUserQuotaSummary's 5-hour and weekly buckets per model group.

Google meters each account twice per model group: a short (5-hour) window and a weekly
one. fetchAvailableModels' per-model quota follows the short window, so an account that
has spent its weekly quota still looks fresh there; the weekly bucket is the only place
that says it will fail for days. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GEMINI, THIRD_PARTY = "gemini", "3p"
GROUP_NAMES = {GEMINI: "Gemini models", THIRD_PARTY: "Claude and GPT models"}
SHORT, WEEKLY = "5h", "weekly"
_GROUP_PREFIXES = ((GEMINI, ("gemini",)), (THIRD_PARTY, ("claude", "gpt")))


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """One bucket: a model group's 5-hour or weekly window."""

    bucket_id: str  # gemini-weekly, gemini-5h, 3p-weekly, 3p-5h
    group: str  # gemini, 3p
    window: str  # 5h, weekly
    remaining_fraction: float | None  # None: empty (Google omits the fraction)
    reset_at: float | None

    @property
    def empty(self) -> bool:
        return self.remaining_fraction is None or self.remaining_fraction <= 0

    def public(self) -> dict[str, object]:
        return {
            "bucket_id": self.bucket_id,
            "group": self.group,
            "group_name": GROUP_NAMES.get(self.group, self.group),
            "window": self.window,
            "remaining_fraction": self.remaining_fraction,
            "reset_at": self.reset_at,
        }


def model_group(model: str) -> str | None:
    """The bucket group that meters `model`: gemini-* → gemini, claude-* and gpt-* → 3p;
    None for models no window meters (imagen…)."""
    for group, prefixes in _GROUP_PREFIXES:
        if model.startswith(prefixes):
            return group
    return None


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _window(bucket: dict[str, Any]) -> QuotaWindow | None:
    bucket_id = bucket.get("bucketId")
    if not isinstance(bucket_id, str) or "-" not in bucket_id or len(bucket_id) > 64:
        return None
    group, _, suffix = bucket_id.rpartition("-")
    window = bucket.get("window")
    fraction = bucket.get("remainingFraction")
    return QuotaWindow(
        bucket_id=bucket_id,
        group=group[:32],
        window=(window if isinstance(window, str) and window else suffix)[:16],
        remaining_fraction=(
            float(fraction)
            if isinstance(fraction, int | float) and not isinstance(fraction, bool)
            else None
        ),
        reset_at=parse_time(bucket.get("resetTime")),
    )


def parse_summary(body: Any) -> list[QuotaWindow]:
    """retrieveUserQuotaSummary's groups → buckets, flattened; malformed parts skipped."""
    groups = body.get("groups") if isinstance(body, dict) else None
    found: dict[str, QuotaWindow] = {}
    for group in groups if isinstance(groups, list) else []:
        buckets = group.get("buckets") if isinstance(group, dict) else None
        for bucket in buckets if isinstance(buckets, list) else []:
            window = _window(bucket) if isinstance(bucket, dict) else None
            if window is not None:
                found[window.bucket_id] = window
    return sorted(found.values(), key=lambda w: w.bucket_id)


def weekly_blocked_until(windows: Iterable[QuotaWindow], model: str, now: float) -> float | None:
    """When an empty weekly window keeps this account from `model` (its group's weekly
    reset time; math.inf when Google gave none), or None when nothing does."""
    group = model_group(model)
    if group is None:
        return None
    for window in windows:
        if window.group == group and window.window == WEEKLY and window.empty:
            if window.reset_at is None:
                return math.inf
            return window.reset_at if window.reset_at > now else None
    return None
