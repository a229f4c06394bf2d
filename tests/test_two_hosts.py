"""Two `agproxy serve` instances, each with its own data directory and port, on one
PostgreSQL store (`store_url`) and one Redis (`redis_url`): they behave as one gateway.
Real servers both (tests/servers.py)."""

from __future__ import annotations

import concurrent.futures
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_google import Fault

from conftest import Gateway, add_to, google_env, launch, ready, stop_all

MODEL = "gemini-3-flash"


def chat(gw: Gateway, text: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers=headers,
        json={"model": MODEL, "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


@pytest.fixture
def hosts(
    tmp_path: Path, fake_google: Any, postgres: Any, own_redis: Any
) -> Iterator[tuple[Gateway, Gateway]]:
    shared = {"AGPROXY_STORE_URL": postgres.database(), "AGPROXY_REDIS_URL": own_redis.url}
    launched = [launch(tmp_path / name, **google_env(fake_google), **shared) for name in ("a", "b")]
    gateways = (ready(launched[0]), ready(launched[1]))
    try:
        yield gateways
    finally:
        stop_all(list(gateways))


def start(gw: Gateway, accounts: int) -> None:
    """Start the service of a host once the accounts another host added reached it."""
    deadline = time.monotonic() + 5
    while True:
        answer = gw.admin("POST", "/api/proxy/start")
        if answer.status_code == 200 and answer.json()["active_accounts"] == accounts:
            return
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)


def cooling(gw: Gateway) -> set[tuple[str, str | None]]:
    board = gw.admin("GET", "/api/dashboard").json()
    return {(i["email"], i["model"]) for i in board["attention"] if i["state"] == "cooling_down"}


def test_two_hosts_on_one_store_and_one_redis_behave_as_one_gateway(
    hosts: tuple[Gateway, Gateway], fake_google: Any
) -> None:
    a, b = hosts
    tag = uuid.uuid4().hex[:6]
    limited, other = (fake_google.add_account(email=f"h{i}-{tag}@example.com") for i in range(2))
    add_to(a, limited, other)
    start(b, 2)
    made = b.admin("POST", "/api/keys", json={"name": "team", "rpm": 8})
    assert made.status_code == 201, made.text
    key = made.json()["secret"]
    a.wait_for_log("client keys changed; 1 keys", timeout=3)

    # A 429 seen by one host cools the account on the other within a second.
    fake_google.inject(Fault.rate_limited(retry_delay="300s"), email=limited.email, model=MODEL)
    for i in range(4):
        assert chat(a, f"warm {i}").status_code == 200
        if (limited.email, MODEL) in cooling(a):
            break
    seen = time.monotonic()
    while (limited.email, MODEL) not in cooling(b):
        assert time.monotonic() - seen < 1.0
        time.sleep(0.02)

    # A key's rpm holds across both hosts.
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: chat((a, b)[i % 2], f"rpm {i}", key), range(12)))
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 8 and codes.count(429) == 4, codes

    # The monitor and the statistics of either host show both hosts' requests (each
    # writes its records in batches, off the request path: they arrive within a second).
    for gw in (a, b):
        deadline = time.monotonic() + 5
        while True:
            rows = gw.admin("GET", "/api/logs?limit=500").json()["logs"]
            keyed = [r for r in rows if r.get("key_name") == "team"]
            if len(keyed) >= 12 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(keyed) == 12, len(keyed)
        by_key = gw.admin("GET", "/api/stats/summary").json()["by_key"]
        assert sum(k["requests"] for k in by_key if k.get("key") == "team") >= 8, by_key


def test_killing_one_host_loses_no_acknowledged_account_key_or_record(
    hosts: tuple[Gateway, Gateway], fake_google: Any
) -> None:
    a, b = hosts
    account = fake_google.add_account(email=f"k-{uuid.uuid4().hex[:6]}@example.com")
    add_to(a, account)
    made = a.admin("POST", "/api/keys", json={"name": "kept"})
    assert made.status_code == 201
    tag = uuid.uuid4().hex
    for i in range(5):
        assert chat(a, f"{tag} {i}").status_code == 200
    # Listing the records is their acknowledgement: written to the store by then.
    assert len([r for r in a.admin("GET", "/api/logs?limit=50").json()["logs"]]) >= 5
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()

    listed = b.admin("GET", "/api/accounts").json()["accounts"]
    assert [x["email"] for x in listed] == [account.email]
    assert [k["name"] for k in b.admin("GET", "/api/keys").json()["keys"]] == ["kept"]
    rows = b.admin("GET", "/api/logs?limit=50").json()["logs"]
    assert len([r for r in rows if r["path"] == "/v1/chat/completions"]) == 5
    # And the survivor serves, with the account the dead host added.
    start(b, 1)
    assert chat(b, "still here").status_code == 200
