"""Redaction for everything the monitor stores: no key, token or password reaches it.

JSON escapes are decoded first (`sk-\\u0061…`, `1\\/\\/0g…` are the same secrets
spelled differently), then three passes, cheapest last to run on a body that is already
short: the gateway's own secrets by value, known credential shapes by pattern, and the
value of any JSON field whose name says it holds a secret. Long base64 runs (images,
files) are summarized so that a capped body keeps its readable parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import orjson

REDACTED = "[redacted]"

# Separate passes: each one starting with a literal is a fast search, an alternation
# of them all is not (a 64 KiB body: 2.7 ms against 3.9 ms).
_PATTERNS = (
    re.compile(
        r"sk-[A-Za-z0-9_\-]{6,}"  # OpenAI-style and agproxy api keys
        r"|ya29\.[A-Za-z0-9_\-.]+"  # Google access tokens
        r"|1//[A-Za-z0-9_\-.]{10,}"  # Google refresh tokens
        r"|AIza[A-Za-z0-9_\-]{20,}"  # Google api keys
        r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens (classic, OAuth, app)
        r"|github_pat_[A-Za-z0-9_]{20,}"  # GitHub fine-grained tokens
        r"|A(?:KIA|SIA|IDA|ROA|GPA|NPA|NVA|PKA)[A-Z0-9]{16}(?![A-Z0-9])"  # AWS key ids
        r"|xox[abeoprs]-[A-Za-z0-9\-]{10,}"  # Slack tokens
        r"|xapp-[0-9]-[A-Za-z0-9\-]{10,}"  # Slack app tokens
        r"|hooks\.slack\.com/services/[A-Za-z0-9/]+"  # Slack webhooks
        # PEM and PGP private keys, to their END line, or to the end of a cut capture.
        r"|-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?s:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*)"
    ),
    re.compile(r"(?i:bearer)\s+[A-Za-z0-9_\-.=+/]{8,}"),  # any bearer credential
    re.compile(r"[0-9a-f]{32}\.[A-Za-z0-9]{16}"),  # z.ai keys (id.secret)
)
# AWS secret access keys: exactly 40 base64 characters standing alone (longer runs are
# data); `_aws_secret` keeps those that do not mix cases and digits (git hashes).
_FORTY = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_SECRET_FIELD = re.compile(
    r'("(?:[A-Za-z_\-]*(?:api[_\-]?key|password|passwd|secret|token|authorization'
    r'|credential|private[_\-]?key)[A-Za-z_\-]*)"'
    r'\s*:\s*)"(?:[^"\\]|\\.)*"',
    re.IGNORECASE,
)
FIELD_CACHE_CHARS = 300
_TAIL_WORD = re.compile(r"[^\s\"',:]*$")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{256,}={0,2}")
# An escaped backslash is matched as a pair, so `\\u0061` (a backslash, then "u0061")
# is left alone.
_JSON_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|/|\\)")


def _aws_secret(match: re.Match[str]) -> str:
    found = match.group(0)
    mixed = found.upper() != found != found.lower() and any(c.isdigit() for c in found)
    return REDACTED if mixed else found


def _summarize(match: re.Match[str]) -> str:
    return f"[base64, {len(match.group(0))} chars]"


def _unescape_one(match: re.Match[str]) -> str:
    code = match.group(1)
    if code is None:
        return "/" if match.group(0) == "\\/" else match.group(0)
    char = chr(int(code, 16))
    if char == '"' or char == "\\":
        return "\\" + char  # the short escape, which a secret's JSON form uses
    if char < " " or "\ud800" <= char <= "\udfff":
        return match.group(0)  # must stay escaped in JSON
    return char


def unescape(text: str) -> str:
    """`\\uXXXX` and `\\/` replaced by the characters they stand for, wherever the
    result is still the same JSON: what a pattern or a secret compares against."""
    return _JSON_ESCAPE.sub(_unescape_one, text) if "\\" in text else text


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    text = unescape(text)
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
            escaped = orjson.dumps(secret).decode()[1:-1]
            if escaped != secret:  # as written inside a JSON string
                text = text.replace(escaped, REDACTED)
    text = _BASE64_RUN.sub(_summarize, text)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _FORTY.sub(_aws_secret, text)
    return _SECRET_FIELD.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)


@lru_cache(maxsize=4096)
def _short(text: str, secrets: tuple[str | None, ...]) -> str:
    return redact(text, secrets)


def redact_field(text: str | None, secrets: tuple[str | None, ...] = ()) -> str | None:
    """`redact` for a record's short columns (path, models, user agent...), which repeat
    from request to request: remembered, so a record costs a few lookups."""
    if text is None:
        return None
    return _short(text, secrets) if len(text) <= FIELD_CACHE_CHARS else redact(text, secrets)


def capture_text(
    raw: bytes | bytearray, limit: int, truncated: bool, secrets: Iterable[str | None] = ()
) -> str:
    """A captured body as stored: decoded, redacted, and marked when it was cut."""
    text = bytes(raw).decode("utf-8", "replace")
    if truncated:
        # The raw capture may end inside a secret: drop the last, possibly partial, word.
        text = _TAIL_WORD.sub("", text)
    text = redact(text, secrets)
    if len(text) > limit:
        text, truncated = text[:limit], True
    return text + ("\n…[truncated]" if truncated else "")
