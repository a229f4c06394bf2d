"""Typed reads of a client's JSON for the translators.

Each accessor checks only the field it reads and names it when the type is wrong, so a
wrong type becomes a 400 saying which field, not an exception deep in a translator.
Absent and null mean "not given" everywhere.
"""

from __future__ import annotations

from typing import Any

import orjson

# orjson writes at most 254 levels of nesting; the envelope and the translation put a
# few levels around what the client sent, so the client may use up to this many.
MAX_NESTING = 200
_MARGIN = 254 - MAX_NESTING
_NAMED_LEVELS = 8  # path segments named in the "nested too deeply" message


class BadRequest(ValueError):
    """The client's request cannot be translated; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def wrong(where: str, expected: str) -> BadRequest:
    return BadRequest(f"{where} must be {expected}", where)


def as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise wrong(where, "an object")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise wrong(where, "an array")
    return value


def opt_dict(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """obj[key] as an object; {} when absent or null."""
    value = obj.get(key)
    if value is None:
        return {}
    return as_dict(value, f"{where}.{key}" if where else key)


def opt_list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    """obj[key] as an array; [] when absent or null."""
    value = obj.get(key)
    if value is None:
        return []
    return as_list(value, f"{where}.{key}" if where else key)


def opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    """obj[key] as a string; None when absent or null."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise wrong(f"{where}.{key}" if where else key, "a string")


def text(obj: dict[str, Any], key: str, where: str) -> str:
    """obj[key] as a string; "" when absent or null."""
    return opt_str(obj, key, where) or ""


def strings(obj: dict[str, Any], key: str, where: str) -> list[str] | None:
    """obj[key] as a string or an array of strings (stop sequences); None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    name = f"{where}.{key}" if where else key
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise wrong(name, "a string or an array of strings")


def check_nesting(
    value: Any, where: str = "the request body", raw: bytes | bytearray | None = None
) -> None:
    """Refuse JSON nested deeper than MAX_NESTING: the gateway could not write it upstream.
    orjson's own limit does the counting at C speed (about 0.1 ms for 400 KB); `raw`, when
    given, skips even that for bodies with too few brackets to be that deep."""
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return
    wrapped = value
    for _ in range(_MARGIN):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        deep = _deep_path(value, MAX_NESTING) if where == "the request body" else where
        raise BadRequest(
            f"{deep or where} is nested too deeply (at most {MAX_NESTING} levels)", deep
        ) from None


def _deep_path(value: Any, limit: int) -> str | None:
    """The top-level field under which `value` nests deeper than `limit` (only walked
    once a body is known to be too deep, to name the field)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth >= limit:
            return path
        if depth == _NAMED_LEVELS:
            path += "..."  # the field is named by then; the rest is the nesting itself
        if depth >= _NAMED_LEVELS:
            children = node.values() if isinstance(node, dict) else node
            stack += [(v, depth + 1, path) for v in children if isinstance(v, dict | list)]
        elif isinstance(node, dict):
            stack += [
                (v, depth + 1, f"{path}.{k}" if path else str(k))
                for k, v in node.items()
                if isinstance(v, dict | list)
            ]
        else:
            stack += [
                (v, depth + 1, f"{path}[{i}]")
                for i, v in enumerate(node)
                if isinstance(v, dict | list)
            ]
    return None
