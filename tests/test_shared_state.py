"""Two gateway processes sharing state through a real Redis (and one store): what one
learns, the other knows. The two are workers of one gateway as `serve --workers 2` starts
them (AGPROXY_WORKER), each on a port of its own here so a test can choose which one a
request goes to."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client
from fake_google import Fault

from conftest import Gateway, add_to, free_port, google_env, launch, ready, stop_all

MODEL = "gemini-3-flash"


def chat(gw: Gateway, text: str, key: str | None = None, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key or gw.api_key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": text}]},
        timeout=timeout,
    )


def pair_of(data_dir: Path, fake: Any, redis_url: str, **env: str) -> tuple[Gateway, Gateway]:
    """Two workers of one gateway on one data directory, each on its own port."""
    group = uuid.uuid4().hex[:8]
    launched = [
        launch(
            data_dir,
            **google_env(fake),
            AGPROXY_REDIS_URL=redis_url,
            AGPROXY_PORT=str(free_port()),
            AGPROXY_WORKER=f"{group}:{index}:2",
            **env,
        )
        for index in range(2)
    ]
    return ready(launched[0]), ready(launched[1])


@pytest.fixture
def pair(tmp_path: Path, fake_google: Any, own_redis: Any) -> Iterator[tuple[Gateway, Gateway]]:
    first, second = pair_of(tmp_path / "gw", fake_google, own_redis.url)
    try:
        yield first, second
    finally:
        stop_all([first, second])


def accounts_in(gw: Gateway, fake: Any, n: int) -> list[Any]:
    tag = uuid.uuid4().hex[:6]
    made = [fake.add_account(email=f"shared{i}-{tag}@example.com") for i in range(n)]
    add_to(gw, *made)
    return made


def serving(gw: Gateway, n: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = gw.admin("GET", "/api/proxy/status").json()
        if status["running"] and status["active_accounts"] == n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{gw.base_url} is not serving {n} accounts: {status}")


def cooling(gw: Gateway) -> set[tuple[str, str | None]]:
    board = gw.admin("GET", "/api/dashboard").json()
    return {
        (item["email"], item["model"])
        for item in board["attention"]
        if item["state"] == "cooling_down"
    }


def test_a_429_seen_by_one_cools_the_account_on_the_other_within_a_second(
    pair: tuple[Gateway, Gateway], fake_google: Any
) -> None:
    first, second = pair
    limited, other = accounts_in(first, fake_google, 2)
    serving(second, 2)
    fake_google.inject(Fault.rate_limited(retry_delay="300s"), email=limited.email, model=MODEL)
    for i in range(4):
        assert chat(first, f"hello {i}").status_code == 200
        if (limited.email, MODEL) in cooling(first):
            break
    seen_at = time.monotonic()
    assert (limited.email, MODEL) in cooling(first)
    while (limited.email, MODEL) not in cooling(second):
        assert time.monotonic() - seen_at < 1.0, "the cooldown did not reach the other process"
        time.sleep(0.02)
    # And the other process acts on it: none of its requests go to the cooling account.
    before = len(fake_google.calls("streamGenerateContent", email=limited.email))
    assert all(chat(second, f"after {i}").status_code == 200 for i in range(4))
    assert len(fake_google.calls("streamGenerateContent", email=limited.email)) == before
    assert fake_google.calls("streamGenerateContent", email=other.email)

    # A reset by hand on the second clears it on the first as well.
    account_id = next(
        a["id"]
        for a in second.admin("GET", "/api/accounts").json()["accounts"]
        if a["email"] == limited.email
    )
    assert second.admin("POST", f"/api/accounts/{account_id}/reset", json={}).status_code == 200
    deadline = time.monotonic() + 1.0
    while (limited.email, MODEL) in cooling(first):
        assert time.monotonic() < deadline, "the reset did not reach the other process"
        time.sleep(0.02)


def burst(first: Gateway, second: Gateway, name: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: chat((first, second)[i % 2], f"{name} {i}"), range(20)))
    assert [a.status_code for a in answers] == [200] * 20


def test_a_burst_needing_a_token_refresh_makes_one_refresh_call(
    pair: tuple[Gateway, Gateway], fake_google: Any
) -> None:
    first, second = pair
    [account] = accounts_in(first, fake_google, 1)
    serving(second, 1)
    fake_google.account(account.email).access_token_ttl = 122

    # Google refuses the token both processes hold (401): one refresh in all.
    fake_google.expire_access_tokens(account.email)
    before = fake_google.token_refresh_count(account.refresh_token)
    burst(first, second, "refused")
    assert fake_google.token_refresh_count(account.refresh_token) - before == 1

    # The token expires (it lives 122 s: 2 s after it was issued it is inside the 120 s
    # margin, and every request wants a new one): one refresh in all.
    time.sleep(2.5)
    before = fake_google.token_refresh_count(account.refresh_token)
    burst(first, second, "expiring")
    assert fake_google.token_refresh_count(account.refresh_token) - before == 1


def test_a_client_keys_rpm_holds_exactly_across_both(
    pair: tuple[Gateway, Gateway], fake_google: Any
) -> None:
    first, second = pair
    accounts_in(first, fake_google, 2)
    serving(second, 2)
    made = first.admin("POST", "/api/keys", json={"name": "team", "rpm": 10})
    assert made.status_code == 201, made.text
    key = made.json()["secret"]
    # (With auth off on loopback, a key the process does not know yet is not refused:
    # its log says when it has it.)
    second.wait_for_log("client keys changed; 1 keys", timeout=2)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: chat((first, second)[i % 2], f"rpm {i}", key), range(16)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 10 and codes.count(429) == 6, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert "10 requests per minute" in refused.json()["error"]["message"]


def test_a_conversation_keeps_its_account_whichever_process_serves_it(
    pair: tuple[Gateway, Gateway], fake_google: Any
) -> None:
    first, second = pair
    accounts_in(first, fake_google, 3)
    serving(second, 3)
    opening = [{"role": "user", "content": f"Plan a trip {uuid.uuid4().hex}"}]

    def turn(gw: Gateway, history: list[dict[str, str]]) -> str:
        answer = httpx.post(
            gw.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {gw.api_key}"},
            json={"model": MODEL, "messages": history},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        history.append({"role": "assistant", "content": "ok"})
        history.append({"role": "user", "content": "and then?"})
        return str(fake_google.requests[-1].account_email)

    history = list(opening)
    served_by = [turn(gw, history) for gw in (first, second, second, first, second, first)]
    assert len(set(served_by)) == 1, served_by
    # Other conversations still rotate over the pool.
    others = {turn(first, [{"role": "user", "content": f"other {i}"}]) for i in range(6)}
    assert len(others) == 3


def test_monitor_rows_from_both_processes(pair: tuple[Gateway, Gateway], fake_google: Any) -> None:
    first, second = pair
    accounts_in(first, fake_google, 1)
    serving(second, 1)
    tag = uuid.uuid4().hex[:8]
    for i in range(3):
        assert chat(first, f"{tag} first {i}").status_code == 200
        assert chat(second, f"{tag} second {i}").status_code == 200
    deadline = time.monotonic() + 5
    while True:
        rows = first.admin("GET", "/api/logs?limit=100").json()["logs"]
        mine = [r for r in rows if r["path"] == "/v1/chat/completions"]
        if len(mine) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(mine) == 6
    # Each process's line in the list is renewed every 2 s.
    deadline = time.monotonic() + 5
    while True:
        processes = second.admin("GET", "/api/proxy/status").json()["processes"]
        if all(p["requests"] >= 3 for p in processes) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [p["requests"] >= 3 for p in processes] == [True, True], processes
    assert {p["worker"] for p in processes} == {0, 1}
    assert [p["this_process"] for p in processes] == [True, False]


def test_redis_killed_under_load_fails_nothing_and_resyncs(
    tmp_path: Path, fake_google: Any, own_redis: Any
) -> None:
    first, second = pair_of(tmp_path / "gw", fake_google, own_redis.url)
    try:
        limited, _, _ = accounts_in(first, fake_google, 3)
        serving(second, 3)
        failures: list[str] = []
        done = 0
        stop = time.monotonic() + 4.0

        def load(gw: Gateway) -> None:
            nonlocal done
            while time.monotonic() < stop:
                try:
                    answer = chat(gw, f"load {uuid.uuid4().hex}", timeout=10)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                done += 1

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            running = [pool.submit(load, gw) for gw in (first, second, first, second)]
            time.sleep(1.0)
            own_redis.kill()
            # While Redis is away, one process learns of a 429.
            fake_google.inject(
                Fault.rate_limited(retry_delay="600s"), email=limited.email, model=MODEL
            )
            for future in running:
                future.result()
        assert failures == [] and done > 20, (done, failures[:3])
        for gw in (first, second):
            log = gw.log()
            assert log.count("went away") == 1, log[-3000:]

        own_redis.start()
        for gw in (first, second):
            gw.wait_for_log("is back: shared state re-synced", timeout=5)
        # The cooldown learned while Redis was away is in Redis now, and on both.
        client = redis_client.Redis.from_url(own_redis.url)
        stored = {k.decode().split("\x1f")[1] for k in client.hgetall("agproxy:cooldowns")}
        client.close()
        assert MODEL in stored
        for gw in (first, second):
            assert (limited.email, MODEL) in cooling(gw)
        assert chat(first, "after").status_code == 200
    finally:
        stop_all([first, second])


def test_status_lists_the_processes_and_they_survive_a_missing_redis(
    tmp_path: Path, fake_google: Any
) -> None:
    """redis_url naming a Redis that is not there: the gateway serves alone, and says so
    once."""
    gw = ready(
        launch(
            tmp_path / "gw",
            **google_env(fake_google),
            AGPROXY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        )
    )
    try:
        accounts_in(gw, fake_google, 1)
        assert chat(gw, "alone").status_code == 200
        assert gw.log().count("is not reachable") == 1
        status = gw.admin("GET", "/api/proxy/status").json()
        assert [p["this_process"] for p in status["processes"]] == [True]
        masked = gw.admin("GET", "/api/config").json()["config"]
        assert masked["redis_url"].startswith("redis://127.0.0.1:")
    finally:
        gw.stop()


def test_a_redis_url_with_a_password_is_masked(tmp_path: Path, fake_google: Any) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    gw = ready(launch(tmp_path / "gw", **google_env(fake_google), AGPROXY_REDIS_URL=url))
    try:
        shown = gw.admin("GET", "/api/config").json()["config"]["redis_url"]
        assert "hunter2" not in shown and "••••" in shown
        assert "hunter2" not in gw.log()
    finally:
        gw.stop()
    config = json.loads((tmp_path / "gw" / "config.json").read_text())
    assert "redis_url" not in config  # the environment's value is never written back


def test_a_reset_with_no_gateway_running_clears_the_copy_in_redis(
    tmp_path: Path, fake_google: Any, own_redis: Any
) -> None:
    """Otherwise the next gateway to start would take the cooldown back from Redis."""
    first, second = pair_of(tmp_path / "gw", fake_google, own_redis.url)
    try:
        limited, _ = accounts_in(first, fake_google, 2)
        fake_google.inject(Fault.rate_limited(retry_delay="900s"), email=limited.email)
        for i in range(4):
            assert chat(first, f"limit {i}").status_code == 200
        assert (limited.email, MODEL) in cooling(first)
    finally:
        stop_all([first, second])
    client = redis_client.Redis.from_url(own_redis.url)
    try:
        assert client.hlen("agproxy:cooldowns") == 1
        result = first.cli("accounts", "reset", limited.email)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 cooldowns cleared" in result.stdout
        assert client.hlen("agproxy:cooldowns") == 0
        own_redis.kill()
        again = first.cli("accounts", "reset", limited.email)
        assert again.returncode == 1 and "Redis at redis://127.0.0.1" in again.stderr
    finally:
        client.close()


def test_damaged_lines_in_the_process_list_are_dropped_not_a_500(
    pair: tuple[Gateway, Gateway], own_redis: Any
) -> None:
    first, _ = pair
    client = redis_client.Redis.from_url(own_redis.url)
    try:
        client.hset(
            "agproxy:processes",
            mapping={
                "junk": b"not json",
                "list": b"[1, 2]",
                "text-seen": b'{"id": "x", "seen_at": "soon", "worker": "w"}',
            },
        )
        status = first.admin("GET", "/api/proxy/status")
        assert status.status_code == 200, status.text
        assert {p["worker"] for p in status.json()["processes"]} <= {0, 1}
        deadline = time.monotonic() + 2
        while client.hexists("agproxy:processes", "junk"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not client.hexists("agproxy:processes", "text-seen")
    finally:
        client.close()
