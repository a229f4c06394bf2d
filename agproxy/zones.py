"""Which part of the gateway a path belongs to; auth and the service gate decide by it."""

from __future__ import annotations

from enum import StrEnum


class Zone(StrEnum):
    HEALTH = "health"  # /healthz: open under all_except_health
    ADMIN = "admin"  # /api/* and /metrics: always need the admin password
    CONSOLE = "console"  # console files and Google's sign-in redirect: public, ungated
    AI = "ai"  # everything else: the AI routes (and unknown paths)


HEALTH_PATHS = frozenset({"/healthz", "/health"})
PUBLIC_PATHS = frozenset({"/", "/favicon.ico", "/auth/callback", "/auth/ticket"})


def zone_of(path: str) -> Zone:
    if path in HEALTH_PATHS:
        return Zone.HEALTH
    if path.startswith("/api/") or path == "/api" or path == "/metrics":
        return Zone.ADMIN
    if path in PUBLIC_PATHS or path.startswith("/console/"):
        return Zone.CONSOLE
    return Zone.AI
