"""The `agproxy` command line against a running gateway (and without one)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_google import Fault

from conftest import (
    ZAI_ENV,
    Borrowed,
    Gateway,
    add_to,
    borrow,
    free_port,
    google_env,
    run_cli,
    spawn,
)

KEY_RULE = 'api_key must start with "sk-" and be at least 10 characters long'


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["status"],
        ["start"],
        ["stop"],
        ["config"],
        ["config", "get"],
        ["config", "set"],
        ["doctor"],
    ],
)
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    result = run_cli(tmp_path, *command, "--help")
    assert result.returncode == 0
    assert "Usage: agproxy" in result.stdout
    # Each help says what the command does, not just its usage line.
    assert len(result.stdout.splitlines()) >= 4


@pytest.fixture(scope="module")
def zai_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway serving through z.ai (set in its environment), running, for the tests
    that leave it so: settings they change are reset afterwards."""
    gw = spawn(tmp_path_factory.mktemp("cli") / "gw", **ZAI_ENV)
    yield gw
    gw.stop()


@pytest.fixture
def running(zai_gateway: Gateway) -> Iterator[Borrowed]:
    with borrow(zai_gateway) as turn:
        assert turn.was_running
        yield turn
        assert turn.running()  # as the test found it


def test_status_start_stop(running: Borrowed) -> None:
    gw = running.gw
    status = json.loads(gw.cli("status", "--json").stdout)
    assert status["running"] is True and status["port"] == gw.port

    stopped = gw.cli("stop")
    assert stopped.returncode == 0 and "proxy service: stopped" in stopped.stdout
    assert gw.get("/healthz").status_code == 503

    started = gw.cli("start", "--json")
    assert started.returncode == 0 and json.loads(started.stdout)["running"] is True
    assert gw.get("/healthz").json() == {"status": "ok"}


def test_cli_without_a_gateway_says_how_to_start_one(tmp_path: Path) -> None:
    env_port = str(free_port())
    from conftest import agproxy_env

    result = run_cli(tmp_path, "status", env=agproxy_env(tmp_path, AGPROXY_PORT=env_port))
    assert result.returncode == 1
    assert f"no gateway answers at http://127.0.0.1:{env_port}" in result.stderr
    assert "agproxy serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_set_validates_and_a_running_gateway_picks_it_up(running: Borrowed) -> None:
    gw = running.gw
    running.reset_afterwards("auth_mode")  # should the test end before it resets it itself
    path = gw.data_dir / "config.json"
    before = path.read_bytes()

    refused = gw.cli("config", "set", "api_key", "abc")
    assert refused.returncode == 1
    assert KEY_RULE in refused.stderr
    assert path.read_bytes() == before

    assert gw.cli("config", "set", "auth_mode", "strict").returncode == 0
    assert json.loads(path.read_text())["auth_mode"] == "strict"
    # The running gateway applies the change by itself, within about a second.
    deadline = time.monotonic() + 5
    while gw.get("/v1/models").status_code != 401:
        assert time.monotonic() < deadline, "auth_mode change not picked up"
        time.sleep(0.1)
    assert gw.get("/v1/models", headers={"x-api-key": gw.api_key}).status_code == 200

    got = gw.cli("config", "get", "auth_mode")
    assert got.stdout.strip() == "strict"
    listing = gw.cli("config", "get").stdout
    assert "auth_mode" in listing and "(file)" in listing and "(env AGPROXY_ZAI_API_KEY)" in listing
    assert gw.api_key not in listing  # masked without --reveal
    assert gw.cli("config", "get", "api_key", "--reveal").stdout.strip() == gw.api_key

    assert gw.cli("config", "set", "auth_mode", "default").returncode == 0
    assert "auth_mode" not in json.loads(path.read_text())


def test_config_set_refuses_env_overridden_and_unknown_keys(tmp_path: Path) -> None:
    from conftest import agproxy_env

    env = agproxy_env(tmp_path, AGPROXY_PORT="9123")
    result = run_cli(tmp_path, "config", "set", "port", "9000", env=env)
    assert result.returncode == 1 and "AGPROXY_PORT" in result.stderr
    result = run_cli(tmp_path, "config", "set", "colour", "blue", env=env)
    assert result.returncode == 1 and "unknown config key 'colour'" in result.stderr


def test_corrupt_config_is_reported_with_file_and_line_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    broken = b'{\n  "port": 8045,\n  "auth_mode": "off"\n  "allow_lan_access": true\n}\n'
    path.write_bytes(broken)
    for command in (["serve"], ["config", "get"], ["config", "set", "port", "9000"]):
        result = run_cli(tmp_path, *command)
        output = result.stdout + result.stderr
        assert result.returncode != 0, command
        assert str(path) in output and "line 4" in output, output
        assert "Traceback" not in output
        assert path.read_bytes() == broken


def test_doctor_against_a_running_gateway(gateway_factory, fake_google) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory(AGPROXY_AUTH_MODE="strict", **google_env(fake_google))
    add_to(gw, fake_google.add_account(email="doctor@example.com"))
    result = gw.cli("doctor")
    assert result.returncode == 0, result.stdout
    out = result.stdout
    assert f"✓ gateway reachable at http://127.0.0.1:{gw.port}" in out
    assert '✓ GET /healthz → {"status":"ok"}' in out
    for form in (
        "Authorization: Bearer",
        "Authorization (bare)",
        "x-api-key",
        "x-goog-api-key",
        "?key=",
    ):
        assert f"✓ key accepted as {form}" in out
    assert f"base_url=http://127.0.0.1:{gw.port}/v1" in out
    assert f"ANTHROPIC_BASE_URL=http://127.0.0.1:{gw.port}   (no /v1)" in out
    assert "✓ Gemini request to gemini-3-flash answered: 'echo: Reply with: OK'" in out
    assert "✓ OpenAI request to gemini-3-flash answered: 'echo: Reply with: OK'" in out
    assert "✓ Anthropic request to claude-sonnet-4-6 answered: 'echo: Reply with: OK'" in out
    assert "✗" not in out
    # A failing protocol is named with the upstream's reason and the fix.
    fake_google.inject(Fault.invalid_argument("the request was refused"), times=1)
    failed = gw.cli("doctor")
    assert failed.returncode == 1
    assert (
        "✗ Gemini request to gemini-3-flash failed: HTTP 400: upstream: the request was refused"
    ) in failed.stdout
    assert "fix: see `agproxy accounts list`" in failed.stdout
    assert "✓ OpenAI request to gemini-3-flash answered" in failed.stdout


def test_doctor_says_how_to_get_a_model(running: Borrowed) -> None:
    gw = running.gw  # running, but no Google account: nothing to ask
    result = gw.cli("doctor")
    assert result.returncode == 1
    assert "✗ no model to send a request to" in result.stdout
    assert "fix: add a Google account: `agproxy accounts login`" in result.stdout
    # z.ai (ZAI_ENV points nowhere reachable) is still asked, as Claude Code would ask it.
    assert "Anthropic request to claude-sonnet-4-6" in result.stdout


def test_doctor_names_the_fix_when_the_service_is_stopped(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory()  # empty pool: the service cannot start
    result = gw.cli("doctor")
    assert result.returncode == 1
    assert "✗ proxy service is stopped" in result.stdout
    assert "fix: `agproxy start`" in result.stdout


def test_doctor_with_nothing_listening(tmp_path: Path) -> None:
    from conftest import agproxy_env

    port = free_port()
    result = run_cli(tmp_path, "doctor", env=agproxy_env(tmp_path, AGPROXY_PORT=str(port)))
    assert result.returncode == 1
    assert f"✗ nothing answers at http://127.0.0.1:{port}" in result.stdout
    assert "fix: start the gateway with `agproxy serve`" in result.stdout
