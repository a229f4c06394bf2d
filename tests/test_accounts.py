"""Accounts end to end: the CLI and the admin API against the fake Google upstream."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_google import Fault

from conftest import Borrowed, Gateway, add_to, agproxy_env, borrow, google_env, run_cli, spawn


def email() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.com"


def cli(tmp_path: Path, fake: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path, *args, env=agproxy_env(tmp_path, **google_env(fake), **env))


def accounts_json(tmp_path: Path, fake: Any) -> list[dict[str, Any]]:
    result = cli(tmp_path, fake, "accounts", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- add ----------------------------------------------------------------------
def test_add_validates_the_token_and_stores_email_project_tier_quota(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    acct = fake_google.add_account(
        email=email(), project="proj-add", paid_tier=("g1-pro-tier", "Google AI Pro")
    )
    result = cli(tmp_path, fake_google, "accounts", "add", "--refresh-token", acct.refresh_token)
    assert result.returncode == 0, result.stderr
    assert f"added {acct.email} (project proj-add, tier Google AI Pro" in result.stdout
    [stored] = accounts_json(tmp_path, fake_google)
    assert (stored["email"], stored["project_id"], stored["tier"], stored["state"]) == (
        acct.email,
        "proj-add",
        "Google AI Pro",
        "enabled",
    )
    assert {q["model"] for q in stored["quotas"]} >= {"gemini-3-flash", "claude-sonnet-4-6"}
    assert "chat_20706" not in {q["model"] for q in stored["quotas"]}  # no quotaInfo: skipped
    # Tokens never appear in what the CLI shows.
    listing = cli(tmp_path, fake_google, "accounts", "list").stdout
    for secret in [acct.refresh_token, *acct.access_tokens]:
        assert secret not in listing and secret not in json.dumps(stored)

    again = cli(tmp_path, fake_google, "accounts", "add", "--refresh-token", acct.refresh_token)
    assert again.returncode == 0 and f"already present: {acct.email}" in again.stdout
    assert len(accounts_json(tmp_path, fake_google)) == 1


def test_a_refused_token_stores_nothing_and_says_why(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    result = cli(tmp_path, fake_google, "accounts", "add", "--refresh-token", "1//not-a-token")
    assert result.returncode == 1
    assert (
        "Google refused the refresh token: invalid_grant: Token has been expired or revoked."
        in result.stderr
    )
    assert "1//not-a-token" not in result.stderr
    assert accounts_json(tmp_path, fake_google) == []


def test_project_is_onboarded_when_the_account_has_none(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    acct = fake_google.add_account(email=email(), project=None)
    result = cli(tmp_path, fake_google, "accounts", "add", "--refresh-token", acct.refresh_token)
    assert result.returncode == 0, result.stderr
    [stored] = accounts_json(tmp_path, fake_google)
    assert stored["project_id"].startswith("onboarded-")
    methods = [r.path for r in fake_google.requests if r.account_email == acct.email]
    assert any(p.endswith(":onboardUser") for p in methods)


# -- import -------------------------------------------------------------------
def test_import_reports_added_duplicate_invalid_and_is_idempotent(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    good = [fake_google.add_account(email=email()) for _ in range(3)]
    revoked = fake_google.add_account(email=email())
    fake_google.revoke(revoked.refresh_token)
    file = tmp_path / "tokens.json"
    file.write_text(
        json.dumps(
            [
                {"refresh_token": good[0].refresh_token, "email": good[0].email},
                {"refresh_token": good[1].refresh_token},
                good[2].refresh_token,
                {"refresh_token": good[0].refresh_token},  # repeated in the file
                {"refresh_token": revoked.refresh_token},
                {"refresh_token": "1//garbage"},
                {"email": "no-token@example.com"},
            ]
        )
    )
    result = cli(tmp_path, fake_google, "accounts", "import", str(file), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"] == {"added": 3, "updated": 0, "duplicate": 1, "invalid": 3}
    by_line = {r["line"]: r for r in report["results"]}
    assert by_line[5]["outcome"] == "invalid" and "invalid_grant" in by_line[5]["reason"]
    assert by_line[7]["reason"] == "no refresh_token in this entry"
    assert {a["email"] for a in accounts_json(tmp_path, fake_google)} == {g.email for g in good}

    again = json.loads(cli(tmp_path, fake_google, "accounts", "import", str(file), "--json").stdout)
    assert again["summary"] == {"added": 0, "updated": 0, "duplicate": 4, "invalid": 3}
    assert len(accounts_json(tmp_path, fake_google)) == 3


def test_import_of_plain_lines_prints_a_table(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    acct = fake_google.add_account(email=email())
    file = tmp_path / "tokens.txt"
    file.write_text(f"# my accounts\n{acct.refresh_token}\n\n1//bad\n")
    result = cli(tmp_path, fake_google, "accounts", "import", str(file))
    assert result.returncode == 0
    assert re.search(rf"^2\s+added\s+{re.escape(acct.email)}", result.stdout, re.M)
    assert re.search(r"^4\s+invalid\s+-\s+Google refused", result.stdout, re.M)
    assert "1 added, 0 updated, 0 duplicate, 1 invalid" in result.stdout
    assert "[2/2]" in result.stderr  # per-line progress when not on a terminal


def test_kill_9_during_import_keeps_every_account_reported_added(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    accounts = [fake_google.add_account(email=email()) for _ in range(12)]
    file = tmp_path / "many.txt"
    file.write_text("\n".join(a.refresh_token for a in accounts))
    # Slow token answers so the import is still running when it is killed.
    fake_google.inject(Fault.slow(0.4), method="token", times=12)
    env = agproxy_env(tmp_path, **google_env(fake_google))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agproxy", "accounts", "import", str(file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported: list[str] = []
    assert proc.stderr is not None
    while len(reported) < 3:
        line = proc.stderr.readline()
        assert line, "import ended before three accounts were reported"
        match = re.search(r": added (\S+)", line)
        if match:
            reported.append(match.group(1))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    db = sqlite3.connect(tmp_path / "agproxy.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {row[0] for row in db.execute("SELECT email FROM accounts")}
    assert set(reported) <= stored
    assert len(stored) < 12  # it really was interrupted


# -- manage -------------------------------------------------------------------
def test_disable_enable_remove_export(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    a, b = fake_google.add_account(email=email()), fake_google.add_account(email=email())
    for acct in (a, b):
        assert (
            cli(
                tmp_path, fake_google, "accounts", "add", "--refresh-token", acct.refresh_token
            ).returncode
            == 0
        )
    assert cli(tmp_path, fake_google, "accounts", "disable", a.email).returncode == 0
    states = {x["email"]: x["state"] for x in accounts_json(tmp_path, fake_google)}
    assert states == {a.email: "disabled", b.email: "enabled"}
    assert cli(tmp_path, fake_google, "accounts", "enable", a.email).returncode == 0
    assert accounts_json(tmp_path, fake_google)[0]["state"] == "enabled"

    out = tmp_path / "export.json"
    assert cli(tmp_path, fake_google, "accounts", "export", str(out)).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600
    exported = json.loads(out.read_text())
    assert {e["refresh_token"] for e in exported} == {a.refresh_token, b.refresh_token}

    removed = cli(tmp_path, fake_google, "accounts", "remove", b.email, "--yes")
    assert removed.returncode == 0
    assert [x["email"] for x in accounts_json(tmp_path, fake_google)] == [a.email]
    missing = cli(tmp_path, fake_google, "accounts", "remove", "nobody@example.com", "--yes")
    assert missing.returncode == 1 and "no single account matches" in missing.stderr

    # Re-importing the export brings b back.
    back = json.loads(cli(tmp_path, fake_google, "accounts", "import", str(out), "--json").stdout)
    assert back["summary"]["added"] == 1 and back["summary"]["duplicate"] == 1


def test_quota_command_refreshes_and_shows_models(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    acct = fake_google.add_account(
        email=email(),
        models={
            "gemini-3-flash": {"remainingFraction": 0.25, "resetTime": "2099-01-01T00:00:00Z"},
            "claude-sonnet-4-6": {"remainingFraction": None, "resetTime": "2099-01-01T00:00:00Z"},
        },
    )
    cli(tmp_path, fake_google, "accounts", "add", "--refresh-token", acct.refresh_token)
    result = cli(tmp_path, fake_google, "accounts", "quota")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"{re.escape(acct.email)}\s+gemini-3-flash\s+25%", result.stdout)
    assert re.search(r"claude-sonnet-4-6\s+exhausted", result.stdout)


# -- with a running gateway ---------------------------------------------------
@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    gw = spawn(tmp_path_factory.mktemp("accounts") / "gw", **google_env(fake_google_server))
    yield gw
    gw.stop()


@pytest.fixture
def empty(gateway: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    """The module's gateway with an empty pool and its service stopped: the accounts a test
    adds (by any means) are removed afterwards, and a service it started is stopped."""
    with borrow(gateway, fake_google) as turn:
        assert not turn.accounts_before and not turn.was_running
        yield turn


def test_running_gateway_picks_up_cli_changes_and_starts_with_one_account(
    empty: Borrowed, fake_google: Any
) -> None:
    gw = empty.gw
    assert gw.admin("POST", "/api/proxy/start").status_code == 409  # empty pool
    acct = fake_google.add_account(email=email())
    add_to(gw, acct, start=False)
    status = gw.admin("POST", "/api/proxy/start").json()
    assert (status["running"], status["active_accounts"]) == (True, 1)
    models = gw.get("/v1/models").json()["data"]
    assert "gemini-3-flash" in {m["id"] for m in models}

    gw.cli("accounts", "disable", acct.email)
    deadline = time.monotonic() + 5
    while gw.admin("GET", "/api/proxy/status").json()["active_accounts"] != 0:
        assert time.monotonic() < deadline, "disable not picked up"
        time.sleep(0.1)


def test_admin_api_add_import_toggle_remove(empty: Borrowed, fake_google: Any) -> None:
    gw = empty.gw
    acct = fake_google.add_account(email=email())
    added = gw.admin("POST", "/api/accounts", json={"refresh_token": acct.refresh_token})
    assert added.status_code == 201 and added.json()["account"]["email"] == acct.email
    assert acct.refresh_token not in added.text
    bad = gw.admin("POST", "/api/accounts", json={"refresh_token": "1//nope"})
    assert bad.status_code == 400 and "invalid_grant" in bad.json()["error"]["message"]

    other = fake_google.add_account(email=email())
    imported = gw.admin(
        "POST",
        "/api/accounts/import",
        json={"text": f"{other.refresh_token}\n1//bad\n{acct.refresh_token}"},
    )
    assert imported.json()["summary"] == {"added": 1, "updated": 0, "duplicate": 1, "invalid": 1}
    listed = gw.admin("GET", "/api/accounts").json()
    assert listed["active_accounts"] == 2
    ids = {a["email"]: a["id"] for a in listed["accounts"]}

    off = gw.admin("POST", f"/api/accounts/{ids[acct.email]}/disable").json()["account"]
    assert off["state"] == "disabled"
    assert gw.admin("GET", "/api/accounts").json()["active_accounts"] == 1
    assert gw.admin("DELETE", f"/api/accounts/{ids[other.email]}").status_code == 200
    assert gw.admin("DELETE", "/api/accounts/nope").status_code == 404
    assert [a["email"] for a in gw.admin("GET", "/api/accounts").json()["accounts"]] == [acct.email]


def test_web_sign_in_through_the_gateway_callback(empty: Borrowed, fake_google: Any) -> None:
    gw = empty.gw
    acct = fake_google.add_account(email=email())
    fake_google.consent_email = acct.email
    start = gw.admin("POST", "/api/accounts/oauth/start").json()
    assert start["redirect_uri"] == f"http://localhost:{gw.port}/auth/callback"
    assert "code_challenge=" in start["url"] and f"state={start['state']}" in start["url"]
    # The user's browser: consent, then Google's redirect to the gateway.
    page = httpx.get(start["url"], follow_redirects=True, timeout=30)
    assert page.status_code == 200 and f"{acct.email} is in the pool" in page.text
    status = gw.admin("GET", f"/api/accounts/oauth/{start['state']}").json()
    assert status == {"status": "done", "email": acct.email, "error": None}
    assert gw.admin("GET", "/api/accounts").json()["accounts"][0]["email"] == acct.email

    # A callback with a forged state is refused and adds nothing.
    forged = gw.get("/auth/callback?code=whatever&state=forged")
    assert forged.status_code == 400 and "unknown or expired" in forged.text


def test_cli_login_with_the_loopback_callback(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    acct = fake_google.add_account(email=email(), project="proj-login")
    fake_google.consent_email = acct.email
    env = agproxy_env(tmp_path, **google_env(fake_google))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agproxy", "accounts", "login", "--no-browser", "--timeout", "30"],
        env=env,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    url = ""
    while not url.startswith("http"):
        url = proc.stdout.readline().strip()
    assert url.startswith(fake_google.authorize_url)
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in url
    landing = httpx.get(url, follow_redirects=True, timeout=30)
    assert landing.status_code == 200 and "Signed in" in landing.text
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"added {acct.email} (project proj-login" in out
    assert [a["email"] for a in accounts_json(tmp_path, fake_google)] == [acct.email]


def test_cli_login_by_pasting_the_redirect_url(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    acct = fake_google.add_account(email=email())
    fake_google.consent_email = acct.email
    env = agproxy_env(tmp_path, **google_env(fake_google))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agproxy", "accounts", "login", "--manual", "--timeout", "30"],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = ""
    while not url.startswith("http"):
        url = proc.stdout.readline().strip()
    # Headless: the browser elsewhere ends on the (unreachable) loopback URL; the user
    # copies it from the address bar.
    consent = httpx.get(url, follow_redirects=False, timeout=30)
    assert consent.status_code in (302, 303)
    proc.stdin.write(consent.headers["location"] + "\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"added {acct.email}" in out


def test_cli_login_times_out_clearly(tmp_path, fake_google) -> None:  # type: ignore[no-untyped-def]
    result = cli(tmp_path, fake_google, "accounts", "login", "--no-browser", "--timeout", "1")
    assert result.returncode == 1
    assert "no sign-in within 1s" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["accounts"],
        ["accounts", "login"],
        ["accounts", "add"],
        ["accounts", "import"],
        ["accounts", "list"],
        ["accounts", "remove"],
        ["accounts", "quota"],
        ["accounts", "export"],
    ],
)
def test_accounts_commands_have_help(tmp_path: Path, command: list[str]) -> None:
    result = run_cli(tmp_path, *command, "--help")
    assert result.returncode == 0 and "Usage: agproxy accounts" in result.stdout


def test_last_used_times_are_saved_in_one_batch(tmp_path: Path) -> None:
    from agproxy.accounts.store import AccountStore
    from agproxy.db import open_database

    engine = open_database(tmp_path / "t.db")
    try:
        store = AccountStore(engine)
        ids = [store.upsert(f"u{i}@example.com", f"1//rt-{i}")[0].id for i in range(3)]
        store.touch_used({ids[0]: 100.0, ids[2]: 300.0})
        used = {a.id: a.last_used_at for a in store.all()}
        assert [used[i] for i in ids] == [100.0, None, 300.0]
    finally:
        engine.dispose()
