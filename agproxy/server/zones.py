"""Which part of the gateway a path belongs to; auth and the service gate decide by it."""

from __future__ import annotations

from enum import StrEnum


class Zone(StrEnum):
    HEALTH = "health"    # /healthz: open under all_except_health
    ADMIN = "admin"      # /api/*: always needs the admin password
    CONSOLE = "console"  # the web console's static files: public, its data comes from /api
    AI = "ai"            # everything else: the AI routes (and unknown paths)


HEALTH_PATHS = frozenset({"/healthz", "/health"})


def zone_of(path: str) -> Zone:
    if path in HEALTH_PATHS:
        return Zone.HEALTH
    if path.startswith("/api/") or path == "/api":
        return Zone.ADMIN
    if path == "/" or path.startswith("/console/") or path == "/favicon.ico":
        return Zone.CONSOLE
    return Zone.AI
