"""Model mapping rules: the user's exact and wildcard rules, then the built-in table.

A rule's key may hold `*` wildcards (`gpt-4*`); the most specific matching key
(most non-`*` characters) wins, and of equally specific keys the one listed first.
The result is then resolved against the models the pool serves (router.models.resolve),
so a mapping to a family name still lands on a model some account has.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agproxy.router.models import clean, resolve

# Defaults (reference MAPPING §2.1): well-known ids of other vendors → a Gemini/Claude
# model the backend serves.
BUILTIN: dict[str, str] = {
    **dict.fromkeys(
        [
            "claude-sonnet-4-6",
            "claude-sonnet-4-5",
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet-20240620",
            "claude-haiku-4",
            "claude-3-haiku-20240307",
            "claude-haiku-4-5-20251001",
        ],
        "claude-sonnet-4-6",
    ),
    **dict.fromkeys(
        ["claude-sonnet-4-6-thinking", "claude-sonnet-4-5-thinking", "claude-sonnet-4-5-20250929"],
        "claude-sonnet-4-6-thinking",
    ),
    **dict.fromkeys(
        [
            "claude-opus-4",
            "claude-opus-4-5-thinking",
            "claude-opus-4-5-20251101",
            "claude-opus-4-6",
            "claude-opus-4-6-thinking",
            "claude-opus-4.6",
            "claude-opus-4.6-thinking",
            "claude-opus-4-6-20260201",
        ],
        "claude-opus-4-6-thinking",
    ),
    **dict.fromkeys(
        [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-4-turbo-preview",
            "gpt-4-0125-preview",
            "gpt-4-1106-preview",
            "gpt-4-0613",
            "gpt-4o",
            "gpt-4o-2024-05-13",
            "gpt-4o-2024-08-06",
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-16k",
            "gpt-3.5-turbo-0125",
            "gpt-3.5-turbo-1106",
            "gpt-3.5-turbo-0613",
            "gemini-2.5-flash-lite",
            "internal-background-task",
        ],
        "gemini-2.5-flash",
    ),
    **dict.fromkeys(["gemini-3-pro-high", "gemini-3.1-pro-high"], "gemini-pro-agent"),
    "gemini-3-pro": "gemini-3-pro-preview",
    "gemini-3.1-pro": "gemini-3.1-pro-preview",
    "gemini-3-pro-image-preview": "gemini-3-pro-image",
    "gemini-3-flash-preview": "gemini-3-flash",
}


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


def matching_rule(model: str, rules: Mapping[str, str]) -> str | None:
    """The key of the user's rule that applies to `model`: the exact key, else the most
    specific wildcard (first listed on a tie)."""
    if model in rules:
        return model
    best: tuple[int, str] | None = None
    for key in rules:
        if "*" in key and _wildcard(key).match(model):
            weight = len(key.replace("*", ""))
            if best is None or weight > best[0]:
                best = (weight, key)
    return best[1] if best else None


def apply_rules(model: str, rules: Mapping[str, str]) -> str | None:
    """The target of the user's rule for `model`, if one applies."""
    key = matching_rule(model, rules)
    return None if key is None else rules[key]


@dataclass(frozen=True)
class Trace:
    """How a requested id was routed, for the console's "test a model" and the CLI."""

    requested: str
    model: str | None  # what serves it; None when nothing fits
    rule: str | None  # the user's rule key, or the built-in table's key
    source: str  # rule | builtin | served | family | claude-family | none


def trace(requested: str, rules: Mapping[str, str], served: tuple[str, ...]) -> Trace:
    model = clean(requested)
    rule = matching_rule(model, rules)
    target, source = (rules[rule], "rule") if rule is not None else (None, "")
    if target is None and model not in served and model.lower() in BUILTIN:
        rule, target, source = model.lower(), BUILTIN[model.lower()], "builtin"
    candidate = resolve(target or model, served)
    if candidate is None and target is not None:
        candidate, rule, source = resolve(model, served), None, ""
    if candidate is not None and not source:
        source = "served" if candidate == model else "family"
    if candidate is None and model.lower().startswith("claude"):
        candidate, source = _claude_family(model.lower(), served), "claude-family"
    return Trace(requested, candidate, rule, source if candidate else "none")


def route(requested: str, rules: Mapping[str, str], served: tuple[str, ...]) -> str | None:
    """The model that will serve `requested`, or None when nothing fits."""
    return trace(requested, rules, served).model


def _claude_family(model: str, served: tuple[str, ...]) -> str | None:
    """Claude ids newer than any table: opus → an opus, else a sonnet; sonnet and haiku →
    a sonnet; the thinking variant when the id asks for it and one is served."""
    claude = [m for m in served if m.lower().startswith("claude")]
    order = ("opus", "sonnet") if "opus" in model else ("sonnet", "opus")
    for family in order:
        found = [m for m in claude if family in m.lower()]
        if found:
            thinking = [m for m in found if "thinking" in m.lower()]
            plain = [m for m in found if "thinking" not in m.lower()]
            wanted = thinking if "thinking" in model else plain
            return sorted(wanted or found)[-1]
    return None


def close_matches(requested: str, served: tuple[str, ...]) -> list[str]:
    return difflib.get_close_matches(clean(requested), list(served), n=5, cutoff=0.3)
