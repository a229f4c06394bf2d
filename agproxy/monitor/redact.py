"""Redaction for captured bodies: no key, token or password reaches the monitor.

Three passes, cheapest last to run on a body that is already short:
the gateway's own secrets by value, known credential shapes by pattern, and the value
of any JSON field whose name says it holds a secret. Long base64 runs (images, files)
are summarized so that a capped body keeps its readable parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_PATTERNS = re.compile(
    r"sk-[A-Za-z0-9_\-]{6,}"                    # OpenAI-style and agproxy api keys
    r"|ya29\.[A-Za-z0-9_\-.]+"                  # Google access tokens
    r"|1//[A-Za-z0-9_\-.]{10,}"                 # Google refresh tokens
    r"|AIza[A-Za-z0-9_\-]{20,}"                 # Google api keys
    r"|(?i:bearer)\s+[A-Za-z0-9_\-.=+/]{8,}"    # any bearer credential
    r"|[0-9a-f]{32}\.[A-Za-z0-9]{16}"           # z.ai keys (id.secret)
)
_SECRET_FIELD = re.compile(
    r'("(?:[A-Za-z_\-]*(?:api[_\-]?key|password|secret|token|authorization)[A-Za-z_\-]*)"'
    r'\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_TAIL_WORD = re.compile(r"[^\s\"',:]*$")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{256,}={0,2}")


def _summarize(match: re.Match[str]) -> str:
    return f"[base64, {len(match.group(0))} chars]"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    text = _BASE64_RUN.sub(_summarize, text)
    text = _PATTERNS.sub(REDACTED, text)
    return _SECRET_FIELD.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)


def capture_text(raw: bytes | bytearray, limit: int, truncated: bool,
                 secrets: Iterable[str | None] = ()) -> str:
    """A captured body as stored: decoded, redacted, and marked when it was cut."""
    text = bytes(raw).decode("utf-8", "replace")
    if truncated:
        # The raw capture may end inside a secret: drop the last, possibly partial, word.
        text = _TAIL_WORD.sub("", text)
    text = redact(text, secrets)
    if len(text) > limit:
        text, truncated = text[:limit], True
    return text + ("\n…[truncated]" if truncated else "")
