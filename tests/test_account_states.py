"""Accounts at risk: a 403 asking to verify the account (or a terms-of-service refusal)
puts the account in a state that shows Google's reason and link everywhere, a tiny probe
brings it back when Google accepts it again, and a webhook hears of each change and of a
model's pool going empty."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fake_google import Fault
from fake_google._faults import VALIDATION_URL

from conftest import Gateway, gateway_with


class Receiver:
    """A webhook endpoint on localhost that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b["event"] == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.shutdown()


def chat(gw: Gateway, text: str) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def states(gw: Gateway) -> dict[str, dict[str, Any]]:
    return {a["email"]: a for a in gw.admin("GET", "/api/accounts").json()["accounts"]}


def wait_for(check: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("not reached in time")


def test_a_verification_request_is_shown_re_probed_and_alerted(
    gateway_factory: Any, fake_google: Any, receiver: Receiver
) -> None:
    gw, (first, second) = gateway_with(
        gateway_factory,
        fake_google,
        2,
        AGPROXY_ALERT_WEBHOOK_URL=receiver.url,
        AGPROXY_REPROBE_MINUTES="0.02",  # about a second between probes
    )
    # Refused twice: the request that meets it, then the first probe; the second passes.
    fake_google.inject(Fault.forbidden(validation=True), email=first.email, times=2)
    for i in range(4):
        assert chat(gw, f"hello {i}").status_code == 200  # the other account serves
        if states(gw)[first.email]["status"] == "needs_verification":
            break
    shown = states(gw)[first.email]
    assert shown["status"] == "needs_verification" and shown["status_url"] == VALIDATION_URL
    assert "Verify your account" in shown["status_reason"]
    listed = gw.cli("accounts", "list")
    assert "needs_verification" in listed.stdout and f"open {VALIDATION_URL}" in listed.stdout
    metrics = gw.get("/metrics", headers={"Authorization": f"Bearer {gw.api_key}"}).text
    [line] = [m for m in metrics.splitlines() if m.startswith("agproxy_account_attention{")]
    assert 'state="needs_verification"' in line and VALIDATION_URL in line

    # Re-probed until Google accepts it: back in rotation.
    wait_for(lambda: states(gw)[first.email]["status"] == "ok")
    assert states(gw)[first.email]["status_url"] is None
    assert gw.admin("GET", "/api/proxy/status").json()["active_accounts"] == 2
    probes = fake_google.calls("generateContent", email=first.email)
    assert len(probes) == 2  # one refused, one passed
    assert probes[0].body["request"]["generationConfig"]["maxOutputTokens"] == 8

    # Exactly one POST per change, with no secret in it.
    wait_for(lambda: len(receiver.events("account_state")) == 2, 10)
    time.sleep(1)
    changes = receiver.events("account_state")
    assert [(c["account"], c["state"]) for c in changes] == [
        (first.email, "needs_verification"),
        (first.email, "ok"),
    ]
    assert changes[0]["link"] == VALIDATION_URL and "Verify your account" in changes[0]["reason"]
    sent = json.dumps(receiver.bodies)
    for secret in (first.refresh_token, gw.api_key, "ya29."):
        assert secret not in sent
    # And each change is in the monitor.
    events = [r for r in gw.admin("GET", "/api/logs").json()["logs"] if r["protocol"] == "event"]
    assert sorted(r["status"] for r in events) == [200, 403]


def test_a_terms_of_service_refusal_is_its_own_state(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, (first, _) = gateway_with(gateway_factory, fake_google, 2, AGPROXY_REPROBE_MINUTES="0")
    refusal = "This account has been disabled for violation of the Terms of Service."
    fake_google.inject(Fault.error(403, refusal), email=first.email)
    for i in range(4):
        assert chat(gw, f"hi {i}").status_code == 200
    shown = states(gw)[first.email]
    assert shown["status"] == "refused" and refusal in shown["status_reason"]
    board = gw.admin("GET", "/api/dashboard").json()
    assert [i["state"] for i in board["attention"]] == ["refused"]
    assert gw.cli("accounts", "reset", first.email).returncode == 0
    assert states(gw)[first.email]["status"] == "ok"


def test_an_empty_pool_is_alerted_once(
    gateway_factory: Any, fake_google: Any, receiver: Receiver
) -> None:
    gw, (only,) = gateway_with(
        gateway_factory, fake_google, 1, AGPROXY_ALERT_WEBHOOK_URL=receiver.url
    )
    fake_google.inject(Fault.rate_limited(retry_delay="120s"), email=only.email)
    assert chat(gw, "limited").status_code == 429
    assert chat(gw, "still limited").status_code == 429
    wait_for(lambda: receiver.events("pool_empty"), 10)
    time.sleep(1)
    [empty] = receiver.events("pool_empty")
    assert empty["model"] == "gemini-3-flash" and 100 < empty["retry_after"] <= 120
    assert "rate limited" in empty["reason"]
