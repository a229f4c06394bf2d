"""`agproxy setup CLIENT`: point a client's own configuration file at this gateway.

Each client's file is merged, never replaced: only the keys that say where the gateway
is and which key to send are set, everything else stays. The file as it was is kept
beside it (`<file>.agproxy-backup`, or a marker when there was no file) so that `--undo`
puts it back byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agproxy.datadir import atomic_write

BACKUP = ".agproxy-backup"
ABSENT = ".agproxy-absent"  # marker: there was no file before setup made one


class SetupError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Client:
    name: str
    path: Callable[[Path], Path]  # the config file, from the home directory
    merge: Callable[[str | None, str, str], str]  # (text now, base URL, key) → new text
    probe: Callable[[str, str], tuple[str, str, dict[str, str], dict[str, Any]]]


def _json_object(text: str | None, path_hint: str) -> dict[str, Any]:
    if not text or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SetupError(f"{path_hint} is not valid JSON ({exc}); fix it first") from exc
    if not isinstance(data, dict):
        raise SetupError(f"{path_hint} does not hold a JSON object; fix it first")
    return data


def _claude_code(text: str | None, base: str, key: str) -> str:
    data = _json_object(text, "~/.claude/settings.json")
    env = data.setdefault("env", {})
    if not isinstance(env, dict):
        raise SetupError('~/.claude/settings.json: "env" is not an object; fix it first')
    env["ANTHROPIC_BASE_URL"] = base
    env["ANTHROPIC_AUTH_TOKEN"] = key
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _opencode(text: str | None, base: str, key: str) -> str:
    data = _json_object(text, "~/.config/opencode/opencode.json")
    providers = data.setdefault("provider", {})
    if not isinstance(providers, dict):
        raise SetupError('opencode.json: "provider" is not an object; fix it first')
    providers["agproxy"] = {
        "npm": "@ai-sdk/openai-compatible",
        "name": "agproxy",
        "options": {"baseURL": base + "/v1", "apiKey": key},
        "models": {m: {"name": f"{m} (agproxy)"} for m in MODELS},
    }
    data.setdefault("$schema", "https://opencode.ai/config.json")
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _gemini_cli(text: str | None, base: str, key: str) -> str:
    wanted = {"GOOGLE_GEMINI_BASE_URL": base, "GEMINI_API_KEY": key}
    lines = (text or "").splitlines()
    kept = [ln for ln in lines if ln.split("=", 1)[0].strip().removeprefix("export ") not in wanted]
    return "\n".join([*kept, *(f"{k}={v}" for k, v in wanted.items())]) + "\n"


_TABLE = re.compile(r"^\s*\[")


def _codex(text: str | None, base: str, key: str) -> str:
    lines = (text or "").splitlines()
    try:
        tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as exc:
        raise SetupError(f"~/.codex/config.toml is not valid TOML ({exc}); fix it first") from exc
    first_table = next((i for i, ln in enumerate(lines) if _TABLE.match(ln)), len(lines))
    top = [ln for ln in lines[:first_table] if not re.match(r"^\s*model_provider\s*=", ln)]
    rest, skipping = [], False
    for line in lines[first_table:]:
        if _TABLE.match(line):
            skipping = line.strip() == "[model_providers.agproxy]"
        if not skipping:
            rest.append(line)
    section = [
        "[model_providers.agproxy]",
        'name = "agproxy"',
        f"base_url = {json.dumps(base + '/v1')}",
        'wire_api = "responses"',
        "supports_websockets = true",  # Codex then speaks to /v1/responses over one socket
        f"http_headers = {{ Authorization = {json.dumps('Bearer ' + key)} }}",
    ]
    merged = ['model_provider = "agproxy"', *top, *rest, "", *section]
    out = "\n".join(merged).strip("\n") + "\n"
    tomllib.loads(out)  # what is written must parse
    return out


MODELS = ("gemini-3-flash", "claude-sonnet-4-6")
PROMPT = "Reply with: OK"


def _claude_probe(base: str, key: str) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16,
            "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    return "POST", base + "/v1/messages", headers, body


def _codex_probe(base: str, key: str) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    body = {"model": "gemini-3-flash", "input": PROMPT, "stream": True, "store": False}
    return "POST", base + "/v1/responses", {"Authorization": f"Bearer {key}"}, body


def _gemini_probe(base: str, key: str) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    url = base + "/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse"
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    return "POST", url, {"x-goog-api-key": key}, body


def _chat_probe(base: str, key: str) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    body = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": PROMPT}]}
    return "POST", base + "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, body


CLIENTS = {
    "claude-code": Client(
        "claude-code", lambda h: h / ".claude" / "settings.json", _claude_code, _claude_probe
    ),
    "codex": Client("codex", lambda h: h / ".codex" / "config.toml", _codex, _codex_probe),
    "gemini-cli": Client(
        "gemini-cli", lambda h: h / ".gemini" / ".env", _gemini_cli, _gemini_probe
    ),
    "opencode": Client(
        "opencode",
        lambda h: h / ".config" / "opencode" / "opencode.json",
        _opencode,
        _chat_probe,
    ),
}


def write(path: Path, new: str) -> Path | None:
    """Write the merged file, keeping the file as it was for `undo` (once: a second
    setup keeps the first backup, the state before agproxy touched the file). Returns
    the backup or marker made now, if any (a rollback removes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backup, absent = path.with_name(path.name + BACKUP), path.with_name(path.name + ABSENT)
    made = None
    if not backup.exists() and not absent.exists():
        made = backup if path.exists() else absent
        atomic_write(made, path.read_bytes() if path.exists() else b"", _mode(path))
    atomic_write(path, new.encode(), _mode(path))
    return made


def roll_back(path: Path, old: bytes | None, made: Path | None) -> None:
    """Put the file back as it was just before this setup (a failed verification)."""
    if old is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write(path, old, _mode(path))
    if made is not None:
        made.unlink(missing_ok=True)


def undo(path: Path) -> str:
    backup, absent = path.with_name(path.name + BACKUP), path.with_name(path.name + ABSENT)
    if backup.exists():
        atomic_write(path, backup.read_bytes(), _mode(backup))
        backup.unlink()
        return f"restored {path} as it was before `agproxy setup`"
    if absent.exists():
        path.unlink(missing_ok=True)
        absent.unlink()
        return f"removed {path} (there was none before `agproxy setup`)"
    raise SetupError(f"nothing to undo: {path} has no agproxy backup")


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777 if path.exists() else 0o600
