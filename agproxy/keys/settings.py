"""What a client key's settings may be: one check shared by the CLI and the admin API, so
both refuse the same input with the same words.

`checked(values)` takes the fields a caller gives (JSON from the API, text from the CLI)
and returns them as the store keeps them, or raises `BadSetting` naming the field.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from agproxy.keys.store import LIMITS, ClientKey

COUNTS = ("rpm", "tpm", "concurrency", "daily_tokens")  # whole numbers above 0
MAX_COUNT = 10**12  # far above any real limit; keeps SQLite's 64-bit integers safe
NAME_CHARS = 100
PATTERN_CHARS = 200
MAX_PATTERNS = 100
FIELDS = ("name", "models", "expires_at", *LIMITS, "enabled")
ALIASES = {"expires": "expires_at"}
# Words that clear a setting: no limit, no expiry, every model.
NONE_WORDS = ("", "none", "never", "off", "unlimited")


class BadSetting(ValueError):
    """A refused setting: `param` names the field, `problem` says what is wrong with it."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param} {problem}")
        self.param = param
        self.problem = problem

    @property
    def message(self) -> str:
        return str(self)


def state(key: ClientKey, now: float | None = None) -> str:
    """`disabled`, `expired` or `enabled`, as lists show it (a disabled key stays disabled
    whatever its expiry)."""
    if not key.enabled:
        return "disabled"
    return "expired" if key.expired(time.time() if now is None else now) else "enabled"


def checked(
    values: Mapping[str, Any], now: float | None = None, require_name: bool = False
) -> dict[str, Any]:
    """The given fields, checked and in the store's form. `None` (or `"none"`) clears a
    limit or the expiry; an empty `models` means every model."""
    now = time.time() if now is None else now
    out: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = ALIASES.get(raw_name, raw_name)
        if name not in FIELDS:
            raise BadSetting(raw_name, f"is not a key setting (settings: {', '.join(FIELDS)})")
        if name in out:
            raise BadSetting(raw_name, "is given twice")
        out[name] = _check(name, value, now)
    if require_name and "name" not in out:
        raise BadSetting("name", "is required")
    return out


def _check(name: str, value: Any, now: float) -> Any:
    if name == "name":
        return key_name(value)
    if name == "models":
        return model_patterns(value)
    if name == "expires_at":
        return expiry(value, now)
    if name == "enabled":
        if not isinstance(value, bool):
            raise BadSetting(name, f"must be true or false, not {value!r}")
        return value
    if name == "quota_share":
        return quota_share(value)
    return count(name, value)


def key_name(value: Any) -> str:
    if not isinstance(value, str):
        raise BadSetting("name", "must be text")
    text = value.strip()
    if not 1 <= len(text) <= NAME_CHARS:
        raise BadSetting("name", f"must be 1 to {NAME_CHARS} characters")
    if not text.isprintable():
        raise BadSetting("name", "must not hold control characters (tabs, line breaks)")
    return text


def _cleared(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)


def count(name: str, value: Any) -> int | None:
    """A positive whole number (JSON number or decimal text), or None for no limit."""
    if _cleared(value):
        return None
    whole = (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
        or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None)
    )
    number = int(value) if whole else None
    if number is None or not 1 <= number <= MAX_COUNT:
        raise BadSetting(name, f"must be a whole number from 1 to {MAX_COUNT:,}, not {value!r}")
    return number


def quota_share(value: Any) -> float | None:
    """A percentage above 0 and at most 100, or None for no share limit."""
    if _cleared(value):
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().removesuffix("%"))
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not 0 < number <= 100:
        raise BadSetting(
            "quota_share", f"must be a percentage above 0 and at most 100, not {value!r}"
        )
    return number


def model_patterns(value: Any) -> tuple[str, ...]:
    """Model ids or `*` patterns: a list (each item may hold several, separated by commas
    or spaces), or such text. None, an empty list or empty text mean every model; an
    empty item in a list is refused."""
    if value is None:
        return ()
    items: list[Any]
    if isinstance(value, str):
        items = [value] if value.strip() else []
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise BadSetting("models", "must be a list of model ids or patterns")
    patterns: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip(" ,\t\n"):
            raise BadSetting("models", f"must be non-empty model ids or patterns, not {item!r}")
        for pattern in re.split(r"[,\s]+", item.strip(" ,\t\n")):
            if len(pattern) > PATTERN_CHARS or not pattern.isprintable():
                raise BadSetting("models", f"{pattern[:40]!r} is not a model id or pattern")
            if pattern not in patterns:
                patterns.append(pattern)
    if len(patterns) > MAX_PATTERNS:
        raise BadSetting("models", f"may hold at most {MAX_PATTERNS} patterns")
    return tuple(patterns)


def expiry(value: Any, now: float) -> float | None:
    """When the key stops working (Unix time): an ISO date (its 00:00 UTC), an ISO date and
    time (UTC when it names no zone), or Unix seconds; it must be in the future."""
    if _cleared(value):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        when = float(value)
    elif isinstance(value, str):
        when = _parse_time(value.strip())
    else:
        raise BadSetting("expires_at", f"must be an ISO date or date and time, not {value!r}")
    if not math.isfinite(when) or when <= now:
        raise BadSetting("expires_at", f"must be in the future ({format_time(when)} is not)")
    return when


def _parse_time(text: str) -> float:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadSetting(
            "expires_at",
            f"must be an ISO date (2027-01-31) or date and time (2027-01-31T18:00, "
            f"UTC unless it names a zone), not {text!r}",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(ts: float | None) -> str:
    """`2027-01-31 18:00 UTC`, or `never`."""
    if ts is None:
        return "never"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return repr(ts)
