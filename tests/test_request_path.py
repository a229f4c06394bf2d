"""The request path end to end where no other file covers it: quota protection keeping
low accounts for their owner, and `agproxy status` showing traffic and cooling accounts.
(The resilience policy is in test_resilience.py, the google-genai SDK in test_gemini_native.py.)"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from fake_google import Fault

from conftest import Gateway, add_to, gateway_with, google_env

MODEL = "gemini-3-flash"
GENERATE = f"/v1beta/models/{MODEL}:generateContent"


def ask(gw: Gateway, text: str, path: str = GENERATE) -> httpx.Response:
    return httpx.post(
        gw.base_url + path,
        timeout=60,
        json={"contents": [{"role": "user", "parts": [{"text": text}]}]},
    )


def test_quota_protection_keeps_low_accounts_for_their_owner(
    gateway_factory: Any, fake_google: Any
) -> None:
    reset = "2099-01-01T00:00:00Z"
    low = fake_google.add_account(
        email=f"low-{uuid.uuid4().hex[:6]}@example.com",
        models={"gemini-3-flash": {"remainingFraction": 0.05, "resetTime": reset}},
    )
    high = fake_google.add_account(
        email=f"high-{uuid.uuid4().hex[:6]}@example.com",
        models={"gemini-3-flash": {"remainingFraction": 0.6, "resetTime": reset}},
    )
    gw = gateway_factory(
        "gw",
        **google_env(fake_google),
        AGPROXY_QUOTA_PROTECTION_PERCENT="10",
        AGPROXY_SCHEDULING_MODE="round_robin",
    )
    add_to(gw, low, high)
    for i in range(4):
        assert ask(gw, f"protected {i}").status_code == 200
    assert {c.account_email for c in fake_google.calls("generateContent")} == {high.email}
    [flash] = [
        q
        for q in gw.admin("GET", "/api/dashboard").json()["quota"]
        if q["model"] == "gemini-3-flash"
    ]
    assert (flash["accounts"], flash["protected"]) == (2, 1)

    # With every account below the line the client is told why, in its protocol's shape.
    fake_google.account(high.email).models["gemini-3-flash"]["remainingFraction"] = 0.02
    assert gw.admin("POST", "/api/accounts/quota").status_code == 200
    refused = ask(gw, "one more")
    assert refused.status_code == 503
    assert "below quota_protection_percent (10%)" in refused.json()["error"]["message"]


def test_cli_status_shows_traffic_and_cooling_accounts(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, accounts = gateway_with(
        gateway_factory, fake_google, 2, AGPROXY_SCHEDULING_MODE="round_robin"
    )
    fake_google.inject(Fault.rate_limited(retry_delay="600s"), email=accounts[0].email, times=3)
    for i in range(3):
        assert ask(gw, f"status {i}").status_code == 200
    out = gw.cli("status").stdout
    assert "proxy service: running" in out
    assert "last hour:     3 requests, 0 errors" in out
    assert re.search(
        rf"! {re.escape(accounts[0].email)}: cooling down for gemini-3-flash, "
        r"9m\d\ds left",
        out,
    ), out
