"""Model ids: clients ask for names the pool may never have listed (newer or internal
names, `models/` prefixes); resolve them to the closest model the pool serves."""

from __future__ import annotations

import re

FAMILY_WORDS = ("image", "lite", "flash", "pro", "claude", "opus", "sonnet", "haiku", "thinking")


def clean(model: str) -> str:
    model = model.strip()
    model = model.removeprefix("models/")
    return model.split(":", 1)[0]


def _traits(model: str) -> set[str]:
    lower = model.lower()
    return {w for w in FAMILY_WORDS if w in lower}


def _version(model: str) -> float:
    match = re.search(r"(\d+(?:\.\d+)?)", model)
    return float(match.group(1)) if match else 0.0


def resolve(requested: str, available: tuple[str, ...]) -> str | None:
    """`requested` itself when served; else the available model of the same family
    (flash/pro/image/claude…) with the closest version; None when no family matches."""
    if requested in available:
        return requested
    lower = {m.lower(): m for m in available}
    if requested.lower() in lower:
        return lower[requested.lower()]
    wanted = _traits(requested)
    if not wanted:
        return None
    family = [m for m in available if _traits(m) == wanted]
    if not family:
        core = wanted & {"image", "flash", "pro", "claude", "opus", "sonnet", "haiku"}
        family = [m for m in available if core and core <= _traits(m)]
    if not family:
        return None
    version = _version(requested)
    return min(family, key=lambda m: (abs(_version(m) - version), -_version(m), m))
