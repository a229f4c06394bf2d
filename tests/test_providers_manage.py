"""Managing providers: the admin API and `agproxy providers add|list|test|remove`, a
running gateway picking a change up, and a z.ai config from before serving as the zai
provider after an upgrade."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_providers import OPENAI_KEY, FakeOpenAI
from fake_zai import KEY as ZAI_KEY
from fake_zai import FakeZai

from conftest import Gateway, run_cli, spawn

WRONG_KEY = "sk-wrong-openai-key-000000000"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = spawn(tmp_path_factory.mktemp("manage") / "gw")
    yield gw
    gw.stop()


def entry(upstream: FakeOpenAI, name: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "openai_compatible",
        "base_url": upstream.base_url,
        "keys": [{"key": OPENAI_KEY, "name": "main"}],
        "models": [{"id": "fake-gpt", "aliases": [f"{name}-fast"]}],
        **more,
    }


def chat(gw: Gateway, model: str) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def wait_until(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_the_admin_api_adds_changes_tests_and_removes(
    gateway: Gateway, upstream: FakeOpenAI
) -> None:
    added = gateway.admin("POST", "/api/providers", json=entry(upstream, "one"))
    assert added.status_code == 201, added.text
    shown = added.json()["provider"]
    assert shown["keys"] == [{"key": "••••6789", "name": "main"}] and shown["serving"]
    assert OPENAI_KEY not in added.text
    started = gateway.admin("POST", "/api/proxy/start")  # a provider alone can serve
    assert started.status_code == 200, started.text
    assert chat(gateway, "one-fast").status_code == 200
    twice = gateway.admin("POST", "/api/providers", json=entry(upstream, "one"))
    assert twice.status_code == 409 and "exists already" in twice.json()["error"]["message"]

    # The key sent back masked keeps the key; a second one is added beside it.
    keys = [*shown["keys"], {"key": WRONG_KEY, "name": "stale"}]
    changed = gateway.admin("PATCH", "/api/providers/one", json={"keys": keys})
    assert changed.status_code == 200, changed.text
    saved = gateway.config_file()["providers"][0]["keys"]
    assert saved == [{"key": OPENAI_KEY, "name": "main"}, {"key": WRONG_KEY, "name": "stale"}]

    tested = gateway.admin("POST", "/api/providers/one/test").json()
    assert tested["ok"] is False and tested["message"] == "1 of 2 keys work"
    by_key = {k["key"]: k for k in tested["keys"]}
    assert by_key["main"]["ok"] and "fake-gpt" in by_key["main"]["models"]
    assert by_key["stale"]["status"] == 401 and WRONG_KEY not in json.dumps(tested)

    off = gateway.admin("PATCH", "/api/providers/one", json={"enabled": False})
    assert off.json()["provider"]["serving"] is False
    assert chat(gateway, "one-fast").status_code == 404
    ids = {m["id"] for m in gateway.get("/v1/models").json()["data"]}
    assert "one-fast" not in ids

    removed = gateway.admin("DELETE", "/api/providers/one")
    assert removed.json() == {"removed": "one"}
    assert gateway.admin("DELETE", "/api/providers/one").status_code == 404
    assert "providers" not in gateway.config_file()
    for secret in (OPENAI_KEY, WRONG_KEY):
        assert secret not in gateway.log()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"name": "google"}, "not google"),
        ({"base_url": "file:///etc/passwd"}, "not an http(s) URL"),
        ({"kind": "cohere"}, "kind"),
        ({"keys": "not-a-list"}, "keys"),
        ({"models": [{"id": ""}]}, "id"),
    ],
)
def test_a_wrong_entry_is_a_400_and_saves_nothing(
    gateway: Gateway, upstream: FakeOpenAI, change: dict[str, Any], says: str
) -> None:
    before = gateway.config_file()
    refused = gateway.admin("POST", "/api/providers", json={**entry(upstream, "bad"), **change})
    assert refused.status_code == 400, refused.text
    assert says in refused.json()["error"]["message"]
    assert gateway.config_file() == before


def test_the_cli_adds_lists_tests_and_removes(
    gateway: Gateway, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """On the running gateway's data directory: the gateway picks each change up."""
    added = gateway.cli(
        "providers", "add", "cli", "--kind", "openai_compatible",
        "--base-url", upstream.base_url, "--key", f"main:{OPENAI_KEY}",
        "--model", "fake-gpt=cli-fast,cli-quick",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert (
        "provider cli added (openai_compatible" in added.stdout and OPENAI_KEY not in added.stdout
    )
    assert stat.S_IMODE((gateway.data_dir / "config.json").stat().st_mode) == 0o600
    wait_until(
        lambda: (
            gateway.admin("POST", "/api/proxy/start").status_code == 200
            and chat(gateway, "cli-quick").status_code == 200
        )
    )

    listed = gateway.cli("providers", "list")
    assert "cli  openai_compatible" in listed.stdout and "main ••••6789" in listed.stdout
    assert "fake-gpt (cli-fast, cli-quick)" in listed.stdout and OPENAI_KEY not in listed.stdout
    tested = gateway.cli("providers", "test", "cli")
    assert tested.returncode == 0 and "main: ok, 2 models" in tested.stdout, tested.stdout

    again = gateway.cli(
        "providers", "add", "cli", "--kind", "openai_compatible", "--key", "k-1234567"
    )
    assert again.returncode != 0 and "exists already" in again.stderr
    assert gateway.cli("providers", "remove", "cli").returncode == 0
    wait_until(lambda: chat(gateway, "cli-quick").status_code == 404)
    missing = gateway.cli("providers", "remove", "cli")
    assert missing.returncode != 0 and "no provider named 'cli'" in missing.stderr


def test_the_cli_test_fails_with_a_wrong_key(tmp_path: Path, upstream: FakeOpenAI) -> None:
    data = tmp_path / "d"
    added = run_cli(
        data, "providers", "add", "bad", "--kind", "openai_compatible",
        "--base-url", upstream.base_url, "--key", WRONG_KEY,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    tested = run_cli(data, "providers", "test", "bad")
    assert tested.returncode == 1
    assert "bad key 1: failed, 401" in tested.stdout and WRONG_KEY not in tested.stdout


def test_a_zai_config_from_before_serves_as_the_zai_provider(tmp_path: Path) -> None:
    zai = FakeZai().start()
    try:
        data = tmp_path / "old"
        data.mkdir()
        old = {
            "api_key": "sk-old-config-0123456789",
            "zai_base_url": zai.base_url,
            "zai_api_key": ZAI_KEY,
            "zai_dispatch_mode": "exclusive",
        }
        (data / "config.json").write_text(json.dumps(old))
        gw = spawn(data)
        try:
            answer = httpx.post(
                gw.base_url + "/v1/messages",
                headers={"x-api-key": gw.api_key, "anthropic-version": "2023-06-01"},
                json={
                    "model": "claude-opus-4",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-agproxy-provider"] == "zai"
            assert zai.requests[-1]["body"]["model"] == "glm-4.7"  # opus → the family's GLM
            saved = gw.config_file()
            assert not [k for k in saved if k.startswith("zai_")]
            assert saved["providers"][0]["name"] == "zai"
            listed = gw.cli("providers", "list")
            assert (
                "zai  anthropic_api_key" in listed.stdout
                and "takes Claude requests: exclusive" in listed.stdout
            )
            assert ZAI_KEY not in listed.stdout
        finally:
            gw.stop()
    finally:
        zai.stop()
