"""Google's duration strings ("1h2m3.5s", "850ms", "3723.5s") and where errors hide them."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DELAY_KEYS = (
    "retryDelay",
    "retry_delay",
    "quotaResetDelay",
    "quota_reset_delay",
    "retryAfter",
    "retry_after",
)
_TEXT_PATTERNS = (
    re.compile(
        r"(?:quota will reset after|reset after|retry after|try again in)\s+"
        r"((?:\d+(?:\.\d+)?(?:ms|h|m|s)\s*)+)",
        re.I,
    ),
)


def parse_duration(text: str) -> float | None:
    """Seconds in a duration like "1h2m3.5s" or "850ms"; None when it is not one."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for match in _TOKEN.finditer(text):
        if text[pos : match.start()].strip():
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos == 0 or text[pos:].strip():
        try:
            return float(text)  # a bare number of seconds
        except ValueError:
            return None
    return total


def _from_value(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, dict) and "seconds" in value:
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def find_retry_delay(body: Any) -> float | None:
    """The retry delay a Google error body carries, in seconds.

    RetryInfo.retryDelay first, then ErrorInfo metadata.quotaResetDelay, then any such
    key anywhere in the body, then phrases in the message ("reset after 1h2m3s").
    """
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = error.get("details") or []
        for detail in details:
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
                delay = _from_value(detail.get("retryDelay"))
                if delay is not None:
                    return delay
        for detail in details:
            metadata = detail.get("metadata") if isinstance(detail, dict) else None
            if isinstance(metadata, dict):
                delay = _from_value(metadata.get("quotaResetDelay"))
                if delay is not None:
                    return delay
    delay = _deep_search(body)
    if delay is not None:
        return delay
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        for pattern in _TEXT_PATTERNS:
            match = pattern.search(message)
            if match:
                return parse_duration(match.group(1).replace(" ", ""))
    return None


def _deep_search(node: Any, depth: int = 0) -> float | None:
    if depth > 6:
        return None
    if isinstance(node, dict):
        for key in _DELAY_KEYS:
            if key in node:
                delay = _from_value(node[key])
                if delay is not None:
                    return delay
        children: list[Any] = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        delay = _deep_search(child, depth + 1)
        if delay is not None:
            return delay
    return None
