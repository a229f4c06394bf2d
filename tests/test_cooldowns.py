"""Cooldowns and refusal states that last and that users control: saved across a restart,
cleared by hand from the CLI, the admin API and the console."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fake_google import Fault

from conftest import Gateway, gateway_with, google_env, spawn

MODEL = "gemini-3-flash"


def chat(gw: Gateway, text: str, model: str = MODEL) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def cooling(gw: Gateway) -> list[tuple[str, str | None, float]]:
    board = gw.admin("GET", "/api/dashboard").json()
    return [
        (item["email"], item["model"], item["seconds_left"])
        for item in board["attention"]
        if item["state"] == "cooling_down"
    ]


def limit(gw: Gateway, fake_google: Any, acct: Any, model: str = MODEL) -> None:
    """Make `acct` answer a 429 with a 300 s delay once: it cools down for `model`."""
    fake_google.inject(Fault.rate_limited(retry_delay="300s"), email=acct.email, model=model)
    for i in range(6):
        if (acct.email, model) in {(e, m) for e, m, _ in cooling(gw)}:
            return
        assert chat(gw, f"limit {model} {i}", model).status_code == 200
    raise AssertionError(f"{acct.email} never got the 429")


@pytest.fixture
def pair(gateway_factory: Any, fake_google: Any) -> tuple[Gateway, list[Any]]:
    return gateway_with(gateway_factory, fake_google, 2)


def test_a_cooldown_survives_a_restart(
    pair: tuple[Gateway, list[Any]], fake_google: Any, tmp_path: Any
) -> None:
    gw, (first, second) = pair
    limit(gw, fake_google, first)
    time.sleep(1.5)  # saved within a second of the change
    assert gw.stop() == 0
    again = spawn(gw.data_dir, gw.port, **google_env(fake_google))
    try:
        [(email, model, left)] = cooling(again)
        assert (email, model) == (first.email, MODEL) and 290 < left <= 300
        before = len(fake_google.calls("streamGenerateContent", email=first.email))
        assert all(chat(again, f"after {i}").status_code == 200 for i in range(4))
        assert len(fake_google.calls("streamGenerateContent", email=first.email)) == before
        assert fake_google.calls("streamGenerateContent", email=second.email)
    finally:
        again.stop()


def test_reset_from_the_cli_and_the_api(pair: tuple[Gateway, list[Any]], fake_google: Any) -> None:
    gw, (first, _) = pair
    limit(gw, fake_google, first)
    limit(gw, fake_google, first, "gemini-3-pro-high")
    assert {m for e, m, _ in cooling(gw) if e == first.email} == {MODEL, "gemini-3-pro-high"}

    # One model through the admin API: the other stays cooling.
    account_id = next(
        a["id"]
        for a in gw.admin("GET", "/api/accounts").json()["accounts"]
        if a["email"] == first.email
    )
    done = gw.admin("POST", f"/api/accounts/{account_id}/reset", json={"model": MODEL})
    assert done.status_code == 200 and done.json()["cooldowns_cleared"] == 1
    assert [m for e, m, _ in cooling(gw)] == ["gemini-3-pro-high"]

    # Everything through the CLI, while the gateway runs (it holds them in memory).
    result = gw.cli("accounts", "reset", first.email)
    assert result.returncode == 0, result.stderr
    assert "1 cooldowns cleared for every model" in result.stdout
    assert cooling(gw) == []
    bad = gw.admin("POST", f"/api/accounts/{account_id}/reset", json={"model": 5})
    assert bad.status_code == 400 and "model" in bad.text
    missing = gw.admin("POST", "/api/accounts/nope/reset", json={})
    assert missing.status_code == 404


def test_reset_clears_a_forbidden_account(
    pair: tuple[Gateway, list[Any]], fake_google: Any
) -> None:
    gw, (first, _) = pair
    fake_google.inject(Fault.error(403, "The caller does not have permission"), email=first.email)
    for i in range(4):
        assert chat(gw, f"f{i}").status_code == 200
    states = {a["email"]: a["status"] for a in gw.admin("GET", "/api/accounts").json()["accounts"]}
    assert states[first.email] == "forbidden"
    result = gw.cli("accounts", "reset", first.email)
    assert result.returncode == 0 and "state ok" in result.stdout
    states = {a["email"]: a["status"] for a in gw.admin("GET", "/api/accounts").json()["accounts"]}
    assert states[first.email] == "ok"
    assert gw.admin("GET", "/api/proxy/status").json()["active_accounts"] == 2


def test_reset_with_no_gateway_running_clears_the_saved_cooldowns(
    pair: tuple[Gateway, list[Any]], fake_google: Any
) -> None:
    gw, (first, _) = pair
    limit(gw, fake_google, first)
    time.sleep(1.5)
    assert gw.stop() == 0
    result = gw.cli("accounts", "reset", first.email)
    assert result.returncode == 0, result.stderr
    assert "1 cooldowns cleared" in result.stdout
    again = spawn(gw.data_dir, gw.port, **google_env(fake_google))
    try:
        assert cooling(again) == []
    finally:
        again.stop()


def test_backoff_steps_are_checked_on_save(pair: tuple[Gateway, list[Any]]) -> None:
    gw, _ = pair  # what the steps do is a row of tests/test_policy_table.py
    saved = gw.admin("PUT", "/api/config", json={"backoff_steps": [2, 3]})
    assert saved.status_code == 200 and saved.json()["config"]["backoff_steps"] == [2, 3]
    for wrong in ([], [0], ["x"], [1] * 21):
        refused = gw.admin("PUT", "/api/config", json={"backoff_steps": wrong})
        assert refused.status_code == 400 and "backoff_steps" in refused.text
    assert gw.admin("GET", "/api/config").json()["config"]["backoff_steps"] == [2, 3]


def test_error_rules_are_checked_on_save(pair: tuple[Gateway, list[Any]]) -> None:
    gw, _ = pair  # what each action does: rows of tests/test_policy_table.py
    good = [{"status": 429, "contains": "capacity", "action": "retry_other_account"}]
    saved = gw.admin("PUT", "/api/config", json={"error_rules": good})
    assert saved.status_code == 200 and saved.json()["config"]["error_rules"] == good
    for wrong, says in (
        ([{"status": 429, "action": "explode"}], "action"),
        ([{"status": 99, "action": "cooldown"}], "status"),
        ([{"action": "cooldown"}], "status"),
        ([{"status": 429, "action": "cooldown", "extra": 1}], "extra"),
        ("not a list", "error_rules"),
    ):
        refused = gw.admin("PUT", "/api/config", json={"error_rules": wrong})
        assert refused.status_code == 400 and says in refused.text, refused.text
    assert gw.admin("GET", "/api/config").json()["config"]["error_rules"] == good
    result = gw.cli("config", "set", "error_rules", '[{"status": 503, "action": "cooldown"}]')
    assert result.returncode == 0, result.stderr
    assert gw.cli("config", "get", "error_rules").stdout.strip().startswith("[")
