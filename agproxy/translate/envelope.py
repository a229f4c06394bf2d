"""The Cloud Code Assist envelope around a Gemini request, and what goes into it."""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import time
from typing import Any

# Request ids only need to be unique, not unpredictable: a per-process random prefix and
# a counter cost nothing, where secrets.token_hex showed up in profiles.
_PREFIX = os.urandom(2).hex()
_COUNTER = itertools.count(1)


def request_id() -> str:
    return f"agent/{int(time.time() * 1000)}/{_PREFIX}{next(_COUNTER) & 0xFFFF:04x}"


@functools.lru_cache(maxsize=4096)
def derive_session_id(account_id: str) -> str:
    """The backend's per-account session id (FNV-1 style over the account id, as i64)."""
    h = -3750763034362895579 & 0xFFFFFFFFFFFFFFFF
    for byte in account_id.encode():
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        h ^= byte
    return str(h - (1 << 64) if h >= 1 << 63 else h)


def wrap(
    request: dict[str, Any], model: str, project: str, account_id: str, request_type: str = "agent"
) -> dict[str, Any]:
    inner = dict(request)
    inner.setdefault("sessionId", derive_session_id(account_id))
    return {
        "project": project,
        "model": model,
        "userAgent": "antigravity",
        "requestType": request_type,
        "requestId": request_id(),
        "request": inner,
    }


def conversation_key(contents: Any) -> str | None:
    """A stable key for a conversation: its first substantial user text, hashed.
    Requests of one conversation share it, so they can stay on one account."""
    if not isinstance(contents, list):
        return None
    for content in contents:
        if not isinstance(content, dict) or content.get("role", "user") != "user":
            continue
        parts = content.get("parts")
        texts = (
            [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
            if isinstance(parts, list)
            else []
        )
        text = " ".join(texts).strip()
        if len(text) > 10:
            return "sid-" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return None
