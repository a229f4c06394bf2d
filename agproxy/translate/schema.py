"""JSON Schema → the subset the backend accepts for function parameters and response schemas.

The backend refuses keywords outside a small whitelist; constraints it cannot
express are kept as text in the description so the model still sees them.
"""

from __future__ import annotations

from typing import Any

KEEP = frozenset({"type", "description", "properties", "required", "items", "enum", "title"})
CONSTRAINTS = {
    "minLength": "minLen",
    "maxLength": "maxLen",
    "pattern": "pattern",
    "minimum": "min",
    "maximum": "max",
    "multipleOf": "multipleOf",
    "exclusiveMinimum": "exclMin",
    "exclusiveMaximum": "exclMax",
    "minItems": "minItems",
    "maxItems": "maxItems",
    "format": "format",
}
MAX_DEPTH = 12


def clean_schema(schema: Any, upper_types: bool = True) -> dict[str, Any]:
    """A cleaned copy of `schema` (never modified in place)."""
    if not isinstance(schema, dict):
        return {"type": "OBJECT" if upper_types else "object", "properties": {}}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _clean(schema, defs, upper_types, 0)


def _list(node: dict[str, Any], key: str) -> list[Any]:
    """A keyword that should hold an array; a client's wrong type counts as absent."""
    value = node.get(key)
    return value if isinstance(value, list) else []


def _dict(node: dict[str, Any], key: str) -> dict[str, Any]:
    value = node.get(key)
    return value if isinstance(value, dict) else {}


def _resolve(node: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if isinstance(target, dict) and depth < MAX_DEPTH:
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return merged
        return {"type": "string", "description": f"(Unresolved $ref: {ref})"}
    return node


def _clean(node: Any, defs: dict[str, Any], upper: bool, depth: int) -> dict[str, Any]:
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        return {"type": "STRING" if upper else "string"}
    node = _merge_all_of(_resolve(node, defs, depth), defs, depth)
    description = str(node.get("description") or "")
    types = node.get("type")
    nullable = False
    for combinator in ("anyOf", "oneOf"):
        branches = [b for b in _list(node, combinator) if isinstance(b, dict)]
        if branches:
            branches = [_resolve(b, defs, depth) for b in branches]
            real = [b for b in branches if b.get("type") != "null"]
            nullable = nullable or len(real) < len(branches)
            richest = max(real or branches, key=_richness)
            node = {**{k: v for k, v in node.items() if k != combinator}, **richest}
            kinds = sorted({str(b.get("type")) for b in real if b.get("type")})
            if len(kinds) > 1:
                description = (description + f" Accepts: {' | '.join(kinds)}").strip()
            types = node.get("type")
    if isinstance(types, list):
        real_types = [t for t in types if t != "null"]
        nullable = nullable or len(real_types) < len(types)
        types = real_types[0] if real_types else None
    if types is None:
        types = "object" if "properties" in node else "array" if "items" in node else "string"
    notes = [f"{label}: {node[key]}" for key, label in CONSTRAINTS.items() if key in node]
    if notes:
        description = (description + f" [Constraint: {', '.join(notes)}]").strip()
    if nullable:
        description = (description + " (nullable)").strip()

    out: dict[str, Any] = {"type": str(types).upper() if upper else str(types).lower()}
    if description:
        out["description"] = description
    if isinstance(node.get("title"), str):
        out["title"] = node["title"]
    if isinstance(node.get("enum"), list):
        out["enum"] = ["null" if v is None else str(v) for v in node["enum"]]
    if out["type"].lower() == "object":
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        out["properties"] = {
            name: _clean(sub, defs, upper, depth + 1)
            for name, sub in props.items()
            if isinstance(sub, dict)
        }
        required = [
            r for r in _list(node, "required") if isinstance(r, str) and r in out["properties"]
        ]
        if required:
            out["required"] = list(dict.fromkeys(required))
    elif out["type"].lower() == "array" and isinstance(node.get("items"), dict):
        out["items"] = _clean(node["items"], defs, upper, depth + 1)
    return out


def _merge_all_of(node: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    """allOf folded into one schema: properties and required lists joined, other keys
    taken from the first part that has them."""
    if not isinstance(node.get("allOf"), list):
        return node
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    for part in node["allOf"]:
        part = _resolve(part, defs, depth) if isinstance(part, dict) else {}
        merged["properties"] = {**_dict(merged, "properties"), **_dict(part, "properties")}
        merged["required"] = _list(merged, "required") + _list(part, "required")
        for key, value in part.items():
            merged.setdefault(key, value)
    return merged


def _richness(branch: dict[str, Any]) -> int:
    kind = branch.get("type")
    return (
        {"object": 3, "array": 2, "null": 0}.get(str(kind), 1)
        if kind
        else (3 if "properties" in branch else 1)
    )
