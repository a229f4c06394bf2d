"""Anthropic's web search server tool over Google Search grounding: pure functions.

Anthropic runs `web_search` on its own servers and answers with `server_tool_use` and
`web_search_tool_result` blocks followed by text whose `citations` point at the results.
The Cloud Code backend has Google Search grounding instead: the model searches by itself
and the answer's `groundingMetadata` names the queries (`webSearchQueries`), the pages
(`groundingChunks[].web`) and which part of the text each page supports
(`groundingSupports`, UTF-8 byte offsets into the answer). This module turns one into the
other, builds the gateway's own search call (used when the request also has client tools,
which the backend refuses next to `googleSearch`), and renders earlier search blocks of the
history as text the model can read.
"""

from __future__ import annotations

import base64
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from agproxy.translate.fields import BadRequest, as_dict, opt_dict, opt_str

WEB_SEARCH_TYPE = re.compile(r"web_search_\d{8}\Z")
DEFAULT_MAX_USES = 5
CITED_TEXT_CHARS = 150  # Anthropic's cited_text is at most this long
SUMMARY_CHARS = 20_000  # what one search result may add to the model's context

# The Anthropic-defined tools the client runs itself: the request names them by type only,
# so the model is given their schema here (Anthropic's documented inputs).
_FILE_COMMANDS = {
    "path": {"type": "string", "description": "Absolute path of the file or directory."},
    "file_text": {"type": "string", "description": "Content of the file to create."},
    "old_str": {"type": "string", "description": "Exact text to replace."},
    "new_str": {"type": "string", "description": "Replacement (or inserted) text."},
    "insert_line": {"type": "integer", "description": "Line after which to insert."},
    "insert_text": {"type": "string", "description": "Text to insert."},
    "view_range": {
        "type": "array",
        "items": {"type": "integer"},
        "description": "[first, last] line to view; -1 as last means the end.",
    },
}
CLIENT_TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "bash_": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The bash command to run."},
            "restart": {"type": "boolean", "description": "Restart the bash session."},
        },
    },
    "text_editor_": {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "enum": ["view", "create", "str_replace", "insert", "undo_edit"],
            },
            **_FILE_COMMANDS,
        },
        "required": ["command", "path"],
    },
    "memory_": {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "enum": ["view", "create", "str_replace", "insert", "delete", "rename"],
            },
            **_FILE_COMMANDS,
            "old_path": {"type": "string"},
            "new_path": {"type": "string"},
        },
        "required": ["command"],
    },
    "computer_": {
        "type": "object",
        "properties": {
            "action": {
                "type": "string",
                "enum": [
                    "key",
                    "type",
                    "mouse_move",
                    "left_click",
                    "left_click_drag",
                    "right_click",
                    "middle_click",
                    "double_click",
                    "triple_click",
                    "screenshot",
                    "cursor_position",
                    "scroll",
                    "hold_key",
                    "wait",
                    "left_mouse_down",
                    "left_mouse_up",
                    "zoom",
                ],  # fmt: skip
            },
            "coordinate": {"type": "array", "items": {"type": "integer"}},
            "start_coordinate": {"type": "array", "items": {"type": "integer"}},
            "region": {"type": "array", "items": {"type": "integer"}},
            "text": {"type": "string"},
            "scroll_direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
            "scroll_amount": {"type": "integer"},
            "duration": {"type": "number"},
        },
        "required": ["action"],
    },
}
SUPPORTED_TYPES = "custom tools, web_search_*, bash_*, text_editor_*, memory_*, computer_*"


def client_tool_schema(kind: str) -> dict[str, Any] | None:
    """The input schema of an Anthropic-defined client tool type (`bash_20250124`, ...);
    None for any other type. Toolsets (`computer_toolset_*`) are not single tools."""
    if "toolset" in kind:
        return None
    for prefix, schema in CLIENT_TOOL_SCHEMAS.items():
        if kind.startswith(prefix):
            return schema
    return None


def refused_tool(kind: str, where: str) -> BadRequest:
    return BadRequest(
        f"{where}.type: the tool type {kind[:60]!r} is not supported by this gateway: "
        "it is run by Anthropic's servers (or is a toolset) and the Google backend has no "
        f"equivalent. Supported tool types: {SUPPORTED_TYPES}.",
        f"{where}.type",
    )


@dataclass(frozen=True)
class WebSearch:
    """A request's `web_search_*` tool: its name, how many searches it allows, its domain
    filters and the user's location."""

    name: str = "web_search"
    max_uses: int = DEFAULT_MAX_USES
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    location: str = ""

    def hint(self) -> str:
        """What the model is told of the filters and location (grounding has no switch for
        them; the results are also filtered, see `allows`)."""
        lines = []
        if self.allowed_domains:
            lines.append("Only use web results from: " + ", ".join(self.allowed_domains) + ".")
        if self.blocked_domains:
            lines.append("Never use web results from: " + ", ".join(self.blocked_domains) + ".")
        if self.location:
            lines.append(f"The user is located in {self.location}.")
        return " ".join(lines)

    def allows(self, url: str, title: str) -> bool:
        """Whether a result passes the domain filters. Grounding gives a redirect URL and
        the site's domain as the title, so both are checked."""
        hosts = {(urlsplit(url).hostname or "").lower(), title.lower().strip()}

        def matches(domains: tuple[str, ...]) -> bool:
            return any(
                host == d or host.endswith("." + d) for host in hosts for d in domains if host
            )

        if self.allowed_domains and not matches(self.allowed_domains):
            return False
        return not matches(self.blocked_domains)


def web_search_tool(tool: dict[str, Any], where: str) -> WebSearch:
    max_uses = tool.get("max_uses")
    if max_uses is None:
        max_uses = DEFAULT_MAX_USES
    if isinstance(max_uses, bool) or not isinstance(max_uses, int) or max_uses < 1:
        raise BadRequest(f"{where}.max_uses: a positive integer is required", f"{where}.max_uses")
    location = opt_dict(tool, "user_location", where)
    place = ", ".join(
        str(location[k]) for k in ("city", "region", "country") if isinstance(location.get(k), str)
    )
    return WebSearch(
        name=opt_str(tool, "name", where) or "web_search",
        max_uses=max_uses,
        allowed_domains=_domains(tool, "allowed_domains", where),
        blocked_domains=_domains(tool, "blocked_domains", where),
        location=place,
    )


def _domains(tool: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = tool.get(key) or []
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise BadRequest(f"{where}.{key} must be an array of strings", f"{where}.{key}")
    return tuple(re.sub(r"^https?://", "", d).strip("/").lower() for d in value if d)


def search_declaration(search: WebSearch) -> dict[str, Any]:
    """The function the model is offered when the request also has client tools; the
    gateway runs it (see frontends/anthropic_search.py)."""
    return {
        "name": search.name,
        "description": "Search the web with Google and get the findings with their sources. "
        "Use it for current events and facts you are not sure of. " + search.hint(),
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The search query."}},
            "required": ["query"],
        },
    }


def grounded_request(query: str, search: WebSearch) -> dict[str, Any]:
    """The inner request of the gateway's own search: the query, Google Search only."""
    system = (
        "You are a web search assistant. Search the web for the user's query and report "
        "the relevant findings concisely and factually. " + search.hint()
    )
    return {
        "contents": [{"role": "user", "parts": [{"text": query}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": system.strip()}]},
        "tools": [{"googleSearch": {}}],
        "generationConfig": {"maxOutputTokens": 8192},
    }


def server_tool_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "srvtoolu_" + "".join(secrets.choice(alphabet) for _ in range(24))


@dataclass
class SearchDone:
    """A search the gateway ran, fed to the answer's translator: `results` are
    `web_search_result` blocks, None when the search failed (`error_code` says why)."""

    tool_use_id: str
    query: str
    results: list[dict[str, Any]] | None
    summary: str = ""  # the grounded answer, for the model
    error_code: str = ""

    def content(self) -> list[dict[str, Any]] | dict[str, Any]:
        if self.results is None:
            return {"type": "web_search_tool_result_error", "error_code": self.error_code}
        return self.results

    def for_model(self) -> str:
        """The functionResponse the model reads."""
        if self.results is None:
            return f"The web search failed ({self.error_code}); answer without it."
        sources = "\n".join(
            f"[{i}] {r['title']}: {r['url']}" for i, r in enumerate(self.results, 1)
        )
        return f"{self.summary[:SUMMARY_CHARS]}\n\nSources:\n{sources or '(none)'}"


class NextRound:
    """Marks the start of another upstream call within one answer (after searches)."""


def _encode(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def result_block(url: str, title: str) -> dict[str, Any]:
    """A `web_search_result`. Its encrypted_content is opaque to clients, which send it
    back in later turns; here it carries the url and title."""
    return {
        "type": "web_search_result",
        "url": url,
        "title": title,
        "encrypted_content": _encode({"url": url, "title": title}),
        "page_age": None,
    }


def _chunks(grounding: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for chunk in grounding.get("groundingChunks") or []:
        web = chunk.get("web") if isinstance(chunk, dict) else None
        web = web if isinstance(web, dict) else {}
        uri = str(web.get("uri") or "")
        out.append((uri, str(web.get("title") or urlsplit(uri).hostname or uri)))
    return out


def search_results(grounding: dict[str, Any], search: WebSearch) -> list[dict[str, Any]]:
    return [
        result_block(url, title)
        for url, title in _chunks(grounding)
        if url and search.allows(url, title)
    ]


def cited_spans(
    answer: str, grounding: dict[str, Any], search: WebSearch
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The answer cut into (text, citations): each span a support covers carries a
    `web_search_result_location` per page it cites; the text between carries none."""
    chunks = _chunks(grounding)
    raw = answer.encode()
    spans: list[tuple[str, list[dict[str, Any]]]] = []
    cursor = 0  # byte offset of the text not yet in a span
    for start, end, segment, indices in _supports(raw, grounding):
        if start < cursor:
            continue  # overlaps the previous support: keep the first
        citations = [
            {
                "type": "web_search_result_location",
                "url": chunks[i][0],
                "title": chunks[i][1],
                "encrypted_index": _encode({"i": i, "url": chunks[i][0]}),
                "cited_text": segment[:CITED_TEXT_CHARS],
            }
            for i in indices
            if 0 <= i < len(chunks) and chunks[i][0] and search.allows(*chunks[i])
        ]
        if not citations:
            continue
        if start > cursor:
            spans.append((raw[cursor:start].decode(errors="replace"), []))
        spans.append((raw[start:end].decode(errors="replace"), citations))
        cursor = end
    if cursor < len(raw):
        spans.append((raw[cursor:].decode(errors="replace"), []))
    return [(said, citations) for said, citations in spans if said]


def _supports(raw: bytes, grounding: dict[str, Any]) -> list[tuple[int, int, str, list[int]]]:
    """(start, end, text, chunk indices) of each support, as byte offsets into `raw`; a
    segment whose offsets do not hold its text is looked for by its text."""
    found = []
    for support in grounding.get("groundingSupports") or []:
        support = support if isinstance(support, dict) else {}
        segment = support.get("segment")
        segment = segment if isinstance(segment, dict) else {}
        said = str(segment.get("text") or "")
        indices = [i for i in support.get("groundingChunkIndices") or [] if isinstance(i, int)]
        start, end = segment.get("startIndex") or 0, segment.get("endIndex") or 0
        if not (isinstance(start, int) and isinstance(end, int)):
            continue
        if said and raw[start:end] != said.encode():
            at = raw.find(said.encode())
            if at < 0:
                continue
            start, end = at, at + len(said.encode())
        if indices and 0 <= start < end <= len(raw):
            found.append((start, end, said or raw[start:end].decode(errors="replace"), indices))
    return sorted(found, key=lambda s: s[0])


def history_text(block: dict[str, Any], where: str) -> str:
    """An earlier `server_tool_use` or `web_search_tool_result` block as text the model
    reads (the backend has no such blocks; the results are already known)."""
    if block.get("type") == "server_tool_use":
        query = opt_dict(block, "input", where).get("query")
        name = opt_str(block, "name", where) or "web_search"
        return f"[{name}: {query}]" if query else f"[{name}]"
    content = block.get("content")
    if not isinstance(content, list):
        code = as_dict(content, f"{where}.content").get("error_code") if content else None
        return f"[Web search failed: {code or 'unknown error'}]"
    lines = []
    for j, result in enumerate(content):
        result = as_dict(result, f"{where}.content[{j}]")
        title, url = result.get("title") or "", result.get("url") or ""
        lines.append(f"{j + 1}. {title} {url}".strip())
    return "[Web search results:\n" + "\n".join(lines) + "]" if lines else "[No web results]"


def model_turn(parts: list[dict[str, Any]], skip_signature: str) -> dict[str, Any]:
    """The model's streamed parts as one history turn for the next call: pieces of text
    joined, pieces of thought joined with their signature (a thought without one is left
    out: the backend refuses unsigned thinking), and the first function call signed (the
    backend's sentinel when the model gave no signature)."""
    out: list[dict[str, Any]] = []
    for part in parts:
        previous = out[-1] if out else {}
        if part.get("thought") and previous.get("thought"):
            previous["text"] = str(previous.get("text") or "") + str(part.get("text") or "")
            if part.get("thoughtSignature"):
                previous["thoughtSignature"] = part["thoughtSignature"]
        elif set(part) == {"text"} and set(previous) == {"text"}:
            previous["text"] += str(part["text"])
        else:
            out.append(dict(part))
    out = [p for p in out if not p.get("thought") or p.get("thoughtSignature")]
    calls = [p for p in out if "functionCall" in p]
    if calls and not any(p.get("thoughtSignature") for p in calls):
        calls[0]["thoughtSignature"] = skip_signature
    return {"role": "model", "parts": out or [{"text": " "}]}
