"""`agproxy setup CLIENT` on a temporary HOME that already holds each client's config:
unrelated settings kept, the gateway's settings merged in, checked through the gateway
with the client's own request shape, `--undo` byte for byte, a clean rollback when the
gateway is down."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conftest import Gateway, gateway_with, run_cli

BEFORE = {
    "claude-code": (
        ".claude/settings.json",
        b'{\n  "model": "opus",\n  "env": {"DISABLE_TELEMETRY": "1"},\n  "permissions": {"allow": ["Bash(ls)"]}\n}\n',
    ),
    "codex": (
        ".codex/config.toml",
        b'model = "gpt-5-codex"\napproval_policy = "on-request"\nmodel_provider = "openai"\n\n'
        b'[model_providers.other]\nname = "other"\nbase_url = "https://example.com/v1"\n\n'
        b'[mcp_servers.docs]\ncommand = "docs-mcp"\n',
    ),
    "gemini-cli": (".gemini/.env", b"GEMINI_MODEL=gemini-3-flash\nexport GEMINI_API_KEY=old\n"),
    "opencode": (
        ".config/opencode/opencode.json",
        b'{"theme": "tokyonight", "provider": {"ollama": {"npm": "x"}}}\n',
    ),
}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for relative, content in BEFORE.values():
        (home / relative).parent.mkdir(parents=True, exist_ok=True)
        (home / relative).write_bytes(content)
    return home


def setup(gw: Gateway, home: Path, *args: str) -> Any:
    return run_cli(gw.data_dir, "setup", *args, env={**gw.env, "HOME": str(home)})


@pytest.fixture
def gw(gateway_factory: Any, fake_google: Any) -> Gateway:
    return gateway_with(gateway_factory, fake_google, 1)[0]


def test_each_client_is_merged_checked_and_undone(gw: Gateway, home: Path) -> None:
    for client, (relative, before) in BEFORE.items():
        result = setup(gw, home, client)
        assert result.returncode == 0, (client, result.stdout, result.stderr)
        assert "now points at" in result.stdout
        written = (home / relative).read_text()
        assert gw.base_url in written and gw.api_key in written
        assert (home / relative).with_name(Path(relative).name + ".agproxy-backup").exists()
        undone = setup(gw, home, client, "--undo")
        assert undone.returncode == 0, undone.stderr
        assert (home / relative).read_bytes() == before  # byte for byte
    # What each merge kept, looked at once more.
    assert setup(gw, home, "claude-code").returncode == 0
    claude = json.loads((home / BEFORE["claude-code"][0]).read_text())
    assert claude["model"] == "opus" and claude["permissions"] == {"allow": ["Bash(ls)"]}
    assert claude["env"] == {
        "DISABLE_TELEMETRY": "1",
        "ANTHROPIC_BASE_URL": gw.base_url,
        "ANTHROPIC_AUTH_TOKEN": gw.api_key,
    }
    assert setup(gw, home, "codex").returncode == 0
    codex = tomllib.loads((home / BEFORE["codex"][0]).read_text())
    assert codex["model"] == "gpt-5-codex" and codex["approval_policy"] == "on-request"
    assert codex["model_provider"] == "agproxy" and codex["mcp_servers"]["docs"]
    assert codex["model_providers"]["other"]["base_url"] == "https://example.com/v1"
    assert codex["model_providers"]["agproxy"]["wire_api"] == "responses"
    assert codex["model_providers"]["agproxy"]["supports_websockets"] is True
    assert codex["model_providers"]["agproxy"]["base_url"] == gw.base_url + "/v1"
    assert setup(gw, home, "gemini-cli").returncode == 0
    env = (home / BEFORE["gemini-cli"][0]).read_text().splitlines()
    assert "GEMINI_MODEL=gemini-3-flash" in env and f"GEMINI_API_KEY={gw.api_key}" in env
    assert "export GEMINI_API_KEY=old" not in env
    assert setup(gw, home, "opencode").returncode == 0
    opencode = json.loads((home / BEFORE["opencode"][0]).read_text())
    assert opencode["theme"] == "tokyonight" and opencode["provider"]["ollama"] == {"npm": "x"}
    assert opencode["provider"]["agproxy"]["options"]["baseURL"] == gw.base_url + "/v1"


def test_print_changes_nothing_and_masks_the_key(gw: Gateway, home: Path) -> None:
    relative, before = BEFORE["claude-code"]
    shown = setup(gw, home, "claude-code", "--print")
    assert shown.returncode == 0 and "ANTHROPIC_BASE_URL" in shown.stdout
    assert gw.api_key not in shown.stdout
    assert (home / relative).read_bytes() == before


def test_a_gateway_that_is_down_rolls_back(gw: Gateway, home: Path) -> None:
    assert gw.stop() == 0
    for client, (relative, before) in BEFORE.items():
        result = setup(gw, home, client)
        assert result.returncode == 1 and "was not set up" in result.stderr, client
        assert "is as it was" in result.stderr
        assert (home / relative).read_bytes() == before
        assert not (home / relative).with_name(Path(relative).name + ".agproxy-backup").exists()
    # A client with no file yet: none is left behind either.
    (home / ".claude" / "settings.json").unlink()
    assert setup(gw, home, "claude-code").returncode == 1
    assert not (home / ".claude" / "settings.json").exists()
    assert list((home / ".claude").iterdir()) == []


def test_a_broken_file_is_left_alone(gw: Gateway, home: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.write_text("{not json")
    result = setup(gw, home, "claude-code")
    assert result.returncode == 1 and "not valid JSON" in result.stderr
    assert path.read_text() == "{not json"
    nothing = setup(gw, home, "opencode", "--undo")
    assert nothing.returncode == 1 and "nothing to undo" in nothing.stderr
