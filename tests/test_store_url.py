"""`store_url`: `agproxy serve` and the CLI on a real PostgreSQL server, end to end; the
setting's checks, and its password never shown or logged."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from agproxy.config import Settings
from agproxy.db import MIGRATIONS, store_location
from conftest import (
    add_accounts,
    free_port,
    google_env,
    launch,
    run_cli,
    spawn,
    spawn_all,
    stop_all,
)

PASSWORD = "s3cret-store-pass"  # the test server trusts any password: it is never checked


def with_password(url: str) -> str:
    return url.replace("agproxy@", f"agproxy:{PASSWORD}@", 1)


def logs(gw: Any, **params: Any) -> list[dict[str, Any]]:
    listed = gw.admin("GET", "/api/logs", params=params)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["logs"])


def ask(gw: Any, key: str, text: str) -> httpx.Response:
    answer = httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer


def test_a_gateway_on_postgres_serves_records_and_keeps_it_all_across_a_restart(
    tmp_path: Path, postgres: Any, fake_google: Any
) -> None:
    url = with_password(postgres.database())
    data_dir = tmp_path / "gw"
    env = {**google_env(fake_google), "AGPROXY_STORE_URL": url}
    gw = spawn(data_dir, **env)
    try:
        [acct] = add_accounts(gw, fake_google)
        made = gw.admin("POST", "/api/keys", json={"name": "team", "daily_tokens": 10**12})
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        # A NUL in the path (%00), which PostgreSQL's text cannot hold, is recorded too.
        odd = httpx.post(gw.base_url + "/v1/chat%00completions", json={}, timeout=30)
        assert odd.status_code == 404
        [nul] = logs(gw)
        assert nul["path"] == "/v1/chat\ufffdcompletions"
        assert gw.admin("POST", "/api/logs/clear").status_code == 200
        ask(gw, secret, "through postgres")
        [record] = logs(gw)
        assert (record["routed_model"], record["key_name"], record["status"]) == (
            "gemini-3-flash",
            "team",
            200,
        )
        assert logs(gw, model="GEMINI") == [record]  # case ignored, as on SQLite
        summary = gw.admin("GET", "/api/stats/summary").json()
        assert (summary["requests"], summary["by_key"][0]["key"]) == (1, "team")
        usage = gw.admin("GET", "/api/stats/usage", params={"bucket": "hour"}).json()
        assert sum(point["requests"] for point in usage["series"]) == 1
        shown = gw.admin("GET", "/api/config").json()["config"]["store_url"]
        assert shown == url.replace(PASSWORD, "••••")
    finally:
        assert gw.stop() == 0
    assert not (data_dir / "agproxy.db").exists()  # the store is PostgreSQL's

    listed = run_cli(data_dir, "accounts", "list", env=gw.env)  # the CLI opens it too
    assert listed.returncode == 0 and acct.email in listed.stdout, listed.stderr
    again = spawn(data_dir, **env)
    try:
        [account] = again.admin("GET", "/api/accounts").json()["accounts"]
        assert account["email"] == acct.email and account["last_used_at"] is not None
        [key] = again.admin("GET", "/api/keys").json()["keys"]
        assert (key["name"], key["daily_tokens"]) == ("team", 10**12)
        assert [r["id"] for r in logs(again)] == [record["id"]]
        ask(again, secret, "after the restart")
        assert len(logs(again)) == 2
    finally:
        again.stop()
    assert PASSWORD not in gw.log() + again.log() + listed.stdout + listed.stderr


def test_two_gateways_starting_at_once_on_a_new_database_migrate_it_once(
    tmp_path: Path, postgres: Any
) -> None:
    url = postgres.database()
    gateways = spawn_all(
        {name: (tmp_path / name, {"AGPROXY_STORE_URL": url}) for name in ("a", "b")}
    )
    try:
        for gw in gateways.values():
            assert gw.admin("GET", "/api/accounts").json()["accounts"] == []
    finally:
        stop_all(list(gateways.values()))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars()
            assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("store_url", "said"),
    [
        ("mysql://root:hunter2-pass@db/agproxy", "is not a database agproxy can use"),
        ("sqlite:///:memory:", "is not a database agproxy can use"),
        ("postgresql://u@127.0.0.1:5432/x?password=hunter2-pass", "not as ?password="),
        # A server that does not answer: the start fails with the reason, not a traceback.
        (f"postgresql://u:hunter2-pass@127.0.0.1:{free_port()}/x", "cannot open the store"),
    ],
)
def test_a_store_that_cannot_be_used_stops_serve_with_one_line(
    tmp_path: Path, store_url: str, said: str
) -> None:
    gw = launch(tmp_path / "gw", AGPROXY_STORE_URL=store_url)
    deadline = time.monotonic() + 30
    while gw.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    status = gw.stop(signal.SIGKILL)
    output = gw.log()
    assert status == 2, output
    assert said in output and "Traceback" not in output
    assert "hunter2-pass" not in output


def test_config_set_checks_store_url_and_never_shows_its_password(
    tmp_path: Path, postgres: Any
) -> None:
    data_dir = tmp_path / "d"
    refused = run_cli(
        data_dir, "config", "set", "store_url", "postgres+asyncpg://u:hunter2-pass@h/x"
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "store_url" in refused.stderr and "postgresql+psycopg://" in refused.stderr
    assert "hunter2-pass" not in refused.stderr + refused.stdout

    url = with_password(postgres.database()).replace("postgresql+psycopg://", "postgres://")
    saved = run_cli(data_dir, "config", "set", "store_url", url)
    assert saved.returncode == 0, saved.stderr
    assert PASSWORD not in saved.stdout and "••••" in saved.stdout
    assert "until `agproxy serve` starts again" in saved.stdout
    for args in (("config", "get", "store_url"), ("config", "get"), ("config", "get", "--json")):
        shown = run_cli(data_dir, *args)
        assert shown.returncode == 0 and PASSWORD not in shown.stdout, shown.stderr
        assert "postgresql+psycopg://agproxy:••••@" in shown.stdout
    revealed = run_cli(data_dir, "config", "get", "store_url", "--reveal")
    assert PASSWORD in revealed.stdout
    # The CLI uses it at once: a key made now is in the PostgreSQL database.
    made = run_cli(data_dir, "keys", "create", "cli-team")
    assert made.returncode == 0, made.stderr
    assert json.loads((data_dir / "config.json").read_text())["store_url"] == url
    engine = sa.create_engine(with_password(url.replace("postgres://", "postgresql+psycopg://")))
    try:
        with engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM client_keys")).scalars().all()
        assert names == ["cli-team"]
    finally:
        engine.dispose()


def test_the_admin_api_masks_store_url_and_says_when_it_applies(
    tmp_path: Path, postgres: Any
) -> None:
    gw = spawn(tmp_path / "gw")
    try:
        url = with_password(postgres.database())
        put = gw.admin("PUT", "/api/config", json={"store_url": url})
        assert put.status_code == 200, put.text
        answer = put.json()
        assert answer["apply_at_restart"] == ["store_url"]
        assert answer["config"]["store_url"] == url.replace(PASSWORD, "••••")
        assert PASSWORD not in gw.admin("GET", "/api/config").text
        bad = gw.admin("PUT", "/api/config", json={"store_url": "redis://x"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "store_url"
        logged = gw.wait_for_log("store_url changed")
        assert "store_url changed" in logged and PASSWORD not in logged
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("store_url", "where"),
    [
        (None, "DATA/agproxy.db"),
        ("sqlite:///state/agproxy.db", "DATA/state/agproxy.db"),
        ("sqlite:////srv/agproxy.db", "/srv/agproxy.db"),
        ("postgres://u:p@db:5432/agproxy", "postgresql+psycopg://u:p@db:5432/agproxy"),
        ("postgresql://db/agproxy", "postgresql+psycopg://db/agproxy"),
        ("postgresql+psycopg:///agproxy?host=/run/postgresql", None),
    ],
)
def test_where_the_store_is(tmp_path: Path, store_url: str | None, where: str | None) -> None:
    settings = Settings(api_key="sk-test-000000", store_url=store_url)
    found = store_location(settings, tmp_path)
    expected = where or store_url
    if isinstance(found, Path):
        assert str(found) == str(expected).replace("DATA", str(tmp_path))
    else:
        assert found == expected


def test_a_postgresql_store_going_away_is_a_503_and_requests_go_on(
    tmp_path: Path, fake_google: Any
) -> None:
    """The pool lives in memory: AI requests are answered while the store is down, and
    what reads the store gets 503 with Retry-After, naming no URL or password."""
    from servers import PostgresServer

    server = PostgresServer().start()
    try:
        url = server.database()
        gw = spawn(tmp_path / "gw", **google_env(fake_google), AGPROXY_STORE_URL=url)
        try:
            add_accounts(gw, fake_google, prefix="pgdown")
            server.close()  # PostgreSQL stops
            answer = httpx.post(
                gw.base_url + "/v1/chat/completions",
                json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            listed = gw.admin("GET", "/api/accounts")
            assert listed.status_code == 503, listed.text
            assert listed.headers["retry-after"] == "5"
            assert "store_url" in listed.text and "agproxy@" not in listed.text
            assert httpx.get(gw.base_url + "/healthz", timeout=5).status_code == 200
            time.sleep(2.5)  # the monitor retries its write at every flush: said once
            assert gw.log().count("could not write") == 1, gw.log()[-2000:]
        finally:
            gw.stop()
    finally:
        server.close()
