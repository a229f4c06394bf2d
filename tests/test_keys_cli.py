"""`agproxy keys …` on a data directory, and the one check of a key's settings it shares
with the admin API. The CLI runs in this process (click's runner); one test runs it as
the real command."""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from agproxy.cli import cli
from agproxy.db.tables import client_keys
from agproxy.keys.settings import BadSetting, checked, state
from agproxy.keys.store import KeyStore, digest
from conftest import data_dir_store, put_on_test_postgres, run_cli

SECRET = re.compile(r"\bsk-[0-9a-f]{48}\b")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in __import__("os").environ if n.startswith("AGPROXY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AGPROXY_DATA_DIR", str(tmp_path))
    put_on_test_postgres(tmp_path)  # before the CLI's first command opens the store
    return tmp_path


def keys(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["keys", *args], input=input, catch_exceptions=False)


def rows(data_dir: Path) -> list[dict[str, Any]]:
    engine = data_dir_store(data_dir)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(client_keys))]
    finally:
        engine.dispose()


def database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("agproxy.db*"))


def test_create_prints_the_secret_once_and_the_database_keeps_only_its_digest(
    data_dir: Path,
) -> None:
    made = keys(
        "create", "ci-bot", "--models", "gemini-*, claude-*", "--models", "gpt-4o",
        "--rpm", "30", "--tpm", "100000", "--concurrency", "2", "--daily-tokens", "2000000",
        "--quota-share", "25", "--expires", "2099-01-31",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    secrets = SECRET.findall(made.output)
    assert len(secrets) == 1
    secret = secrets[0]
    assert "shown only now" in made.output
    [row] = rows(data_dir)
    assert row["digest"] == digest(secret) and row["prefix"] == secret[:8]
    assert orjson.loads(row["models"]) == ["gemini-*", "claude-*", "gpt-4o"]
    assert (row["rpm"], row["tpm"], row["concurrency"], row["daily_tokens"]) == (
        30, 100000, 2, 2000000,
    )  # fmt: skip
    assert row["quota_share"] == 25.0
    assert row["expires_at"] == calendar.timegm((2099, 1, 31, 0, 0, 0))
    assert secret not in str(row) and secret[3:] not in str(row)
    if "store_url" in orjson.loads((data_dir / "config.json").read_bytes()):
        return  # AGPROXY_TEST_STORE=postgres: no database file to read
    # The secret is nowhere in the database files (WAL included); its digest is.
    raw = database_bytes(data_dir)
    assert secret.encode() not in raw and secret[3:].encode() not in raw
    assert digest(secret).encode() in raw

    listed = keys("list")
    assert listed.exit_code == 0
    assert SECRET.search(listed.output) is None and secret[8:20] not in listed.output
    line = next(x for x in listed.output.splitlines() if x.startswith("ci-bot"))
    for part in (secret[:8] + "…", "gemini-*, claude-*, gpt-4o", "30 rpm", "100,000 tpm",
                 "2 at once", "2,000,000 tokens/day", "25% of quota", "2099-01-31", "enabled"):  # fmt: skip
        assert part in line, (part, line)
    as_json = orjson.loads(keys("list", "--json").output)
    assert as_json[0]["prefix"] == secret[:8] + "…" and as_json[0]["state"] == "enabled"
    assert "digest" not in as_json[0] and secret not in keys("list", "--json").output
    shown = keys("show", "ci-bot")
    assert shown.exit_code == 0 and secret not in shown.output
    assert "today:" in shown.output and "0 requests" in shown.output
    assert secret not in keys("show", "ci-bot", "--json").output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rpm", "0"], "'--rpm': must be a whole number"),
        (["--tpm", "-5"], "'--tpm': must be a whole number"),
        (["--concurrency", "1.5"], "'--concurrency': must be a whole number"),
        (["--daily-tokens", "lots"], "'--daily-tokens': must be a whole number"),
        (["--quota-share", "0"], "'--quota-share': must be a percentage above 0 and at most 100"),
        (["--quota-share", "100.5"], "'--quota-share': must be a percentage above 0"),
        (["--quota-share", "nan"], "'--quota-share': must be a percentage"),
        (["--expires", "2001-01-01"], "'--expires': must be in the future"),
        (["--expires", "next tuesday"], "'--expires': must be an ISO date (2027-01-31)"),
        (["--expires", "2099-02-30"], "'--expires': must be an ISO date"),
        (["--models", ""], "'--models': must be non-empty model ids or patterns"),
        (["--models", "gemini-*", "--models", " "], "'--models': must be non-empty"),
        (["--rpm", ""], "'--rpm': must not be empty"),
        (["--expires", " "], "'--expires': must not be empty"),
    ],
)
def test_bad_input_is_refused_with_exit_2_and_nothing_written(
    data_dir: Path, args: list[str], says: str
) -> None:
    result = keys("create", "someone", *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert SECRET.search(result.output) is None
    assert rows(data_dir) == []


def test_a_taken_or_blank_name_is_refused_and_nothing_written(data_dir: Path) -> None:
    assert keys("create", "alice").exit_code == 0
    again = keys("create", "alice", "--rpm", "5")
    assert again.exit_code == 2 and "a client key named 'alice' exists already" in again.output
    blank = keys("create", "  ")
    assert blank.exit_code == 2 and "Invalid value for 'NAME': must not be empty" in blank.output
    long = keys("create", "x" * 101)
    assert long.exit_code == 2 and "'NAME': must be 1 to 100 characters" in long.output
    assert [r["name"] for r in rows(data_dir)] == ["alice"]
    assert rows(data_dir)[0]["rpm"] is None


def test_disable_enable_rotate_delete(data_dir: Path) -> None:
    first = SECRET.findall(keys("create", "bob", "--expires", "2099-06-01T12:30").output)[0]
    assert keys("disable", "bob").exit_code == 0
    assert "disabled" in next(x for x in keys("list").output.splitlines() if x.startswith("bob"))
    assert not rows(data_dir)[0]["enabled"]
    assert keys("enable", "bob").exit_code == 0
    assert "enabled" in next(x for x in keys("list").output.splitlines() if x.startswith("bob"))

    rotated = keys("rotate", "bob")
    assert rotated.exit_code == 0 and "shown only now" in rotated.output
    [second] = SECRET.findall(rotated.output)
    assert second != first
    [row] = rows(data_dir)
    assert row["digest"] == digest(second) and row["rotated_at"] is not None
    assert row["expires_at"] == calendar.timegm((2099, 6, 1, 12, 30, 0))  # settings kept
    assert second.encode() not in database_bytes(data_dir)

    kept = keys("delete", "bob", input="n\n")
    assert kept.exit_code == 1 and "Delete client key 'bob'" in kept.output
    assert len(rows(data_dir)) == 1
    assert keys("delete", rows(data_dir)[0]["id"], input="y\n").exit_code == 0  # by id too
    assert rows(data_dir) == []
    keys("create", "carol")
    assert keys("delete", "carol", "--yes").exit_code == 0 and rows(data_dir) == []
    missing = keys("show", "nobody")
    assert missing.exit_code == 1 and "no client key is named 'nobody'" in missing.output


def test_create_and_rotate_with_json_for_scripts(data_dir: Path) -> None:
    made = orjson.loads(keys("create", "script", "--json", "--quota-share", "12.5%").output)
    assert SECRET.fullmatch(made["secret"])
    assert made["key"]["quota_share"] == 12.5 and made["key"]["prefix"] == made["secret"][:8] + "…"
    turned = orjson.loads(keys("rotate", "script", "--json").output)
    assert turned["secret"] != made["secret"] and turned["key"]["rotated_at"]


def test_the_real_command(tmp_path: Path) -> None:
    made = run_cli(tmp_path, "keys", "create", "ops", "--rpm", "10")
    assert made.returncode == 0, made.stderr
    secret = SECRET.findall(made.stdout)[0]
    listed = run_cli(tmp_path, "keys", "list")
    assert "ops" in listed.stdout and secret not in listed.stdout + listed.stderr
    bad = run_cli(tmp_path, "keys", "create", "x", "--quota-share", "101")
    assert bad.returncode == 2 and "--quota-share" in bad.stderr
    assert run_cli(tmp_path, "keys", "--help").returncode == 0


# -- the shared check ------------------------------------------------------------------------
NOW = calendar.timegm((2027, 3, 10, 12, 0, 0))


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ({"rpm": 5, "tpm": "1000", "concurrency": 1.0}, {"rpm": 5, "tpm": 1000, "concurrency": 1}),
        ({"rpm": None, "daily_tokens": "none"}, {"rpm": None, "daily_tokens": None}),
        ({"quota_share": 100}, {"quota_share": 100.0}),
        ({"quota_share": "0.5%"}, {"quota_share": 0.5}),
        ({"models": []}, {"models": ()}),
        ({"models": "gemini-*"}, {"models": ("gemini-*",)}),
        ({"models": ["a", "b,a", " c  d "]}, {"models": ("a", "b", "c", "d")}),
        ({"expires": "2027-03-11"}, {"expires_at": NOW + 12 * 3600}),
        ({"expires_at": "2027-03-10T13:00"}, {"expires_at": NOW + 3600}),
        ({"expires_at": "2027-03-10T13:00Z"}, {"expires_at": NOW + 3600}),
        ({"expires_at": "2027-03-10T15:00+02:00"}, {"expires_at": NOW + 3600}),
        ({"expires_at": NOW + 60}, {"expires_at": NOW + 60}),
        ({"expires_at": None}, {"expires_at": None}),
        ({"name": "  team a  ", "enabled": False}, {"name": "team a", "enabled": False}),
    ],
)
def test_checked_settings(given: dict[str, Any], stored: dict[str, Any]) -> None:
    assert checked(given, now=NOW) == stored


@pytest.mark.parametrize(
    ("given", "param"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rpm": True}, "rpm"),
        ({"tpm": 1.5}, "tpm"),
        ({"concurrency": 10**13}, "concurrency"),
        ({"daily_tokens": [1]}, "daily_tokens"),
        ({"quota_share": 0}, "quota_share"),
        ({"quota_share": -1}, "quota_share"),
        ({"quota_share": 101}, "quota_share"),
        ({"quota_share": float("inf")}, "quota_share"),
        ({"quota_share": False}, "quota_share"),
        ({"models": [""]}, "models"),
        ({"models": [1]}, "models"),
        ({"models": {"a": 1}}, "models"),
        ({"expires_at": "2027-03-10T11:59"}, "expires_at"),
        ({"expires_at": NOW}, "expires_at"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"expires_at": True}, "expires_at"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": 5}, "name"),
        ({"enabled": "yes"}, "enabled"),
        ({"secret": "sk-mine"}, "secret"),
        ({"digest": "00"}, "digest"),
    ],
)
def test_checked_refuses(given: dict[str, Any], param: str) -> None:
    with pytest.raises(BadSetting) as refused:
        checked(given, now=NOW)
    assert refused.value.param == param
    assert str(refused.value).startswith(param + " ")


def test_a_name_is_required_to_create() -> None:
    with pytest.raises(BadSetting, match="name is required"):
        checked({"rpm": 3}, require_name=True)


def test_state_of_a_key(store: Any) -> None:
    keys = KeyStore(store)
    key, _ = keys.create("k", expires_at=time.time() + 60)
    assert state(key) == "enabled"
    assert state(key, now=time.time() + 120) == "expired"
    keys.update(key.id, enabled=False)
    assert state(keys.find("k"), now=time.time() + 120) == "disabled"


@pytest.mark.parametrize(
    "command", ["create", "list", "show", "disable", "enable", "rotate", "delete"]
)
def test_every_keys_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, ["keys", command, "--help"])
    assert result.exit_code == 0 and "Usage: cli keys" in result.output
    assert len(result.output.splitlines()) >= 4
    assert (
        "--by [model|account|protocol|key|provider]"
        in CliRunner().invoke(cli, ["stats", "--help"]).output
    )
