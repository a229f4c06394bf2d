"""The shared request path through the Gemini-native API: google-genai SDK end to end, and
the resilience policy under the fake upstream's faults (checked in its request log)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest
from fake_google import Fault, count_tokens
from google import genai
from google.genai import types

from conftest import Gateway, add_to, gateway_with, google_env

MODEL = "gemini-3-flash"
GENERATE = f"/v1beta/models/{MODEL}:generateContent"
STREAM = f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"


def email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:6]}@example.com"


def ask(gw: Gateway, text: str, path: str = GENERATE) -> httpx.Response:
    return httpx.post(
        gw.base_url + path,
        timeout=60,
        json={"contents": [{"role": "user", "parts": [{"text": text}]}]},
    )


def served_by(fake: Any, accounts: list, rpc: str = "generateContent") -> dict[str, int]:
    return {a.email: len(fake.calls(rpc, email=a.email)) for a in accounts}


# -- google-genai SDK ---------------------------------------------------------------------
@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
def test_genai_sdk_generate_stream_count(
    gateway_factory: Any, fake_google: Any, api_version: str
) -> None:
    gw, _ = gateway_with(gateway_factory, fake_google, 1)
    client = genai.Client(
        api_key=gw.api_key,
        http_options=types.HttpOptions(base_url=gw.base_url, api_version=api_version),
    )
    reply = client.models.generate_content(model=MODEL, contents="Hello there")
    assert reply.text == "echo: Hello there"
    assert reply.usage_metadata is not None and reply.usage_metadata.prompt_token_count == (
        count_tokens([{"role": "user", "parts": [{"text": "Hello there"}]}])
    )
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="stream it"))
    assert len(chunks) >= 2 and "".join(c.text or "" for c in chunks) == "echo: stream it"
    counted = client.models.count_tokens(model=MODEL, contents="count me")
    assert counted.total_tokens == count_tokens([{"role": "user", "parts": [{"text": "count me"}]}])
    envelope = fake_google.calls("generateContent")[-1].body
    assert envelope["requestType"] == "agent" and envelope["userAgent"] == "antigravity"
    assert envelope["requestId"].startswith("agent/") and envelope["request"]["sessionId"]


def test_genai_function_calling_and_image_part(gateway_factory: Any, fake_google: Any) -> None:
    gw, _ = gateway_with(gateway_factory, fake_google, 1)
    client = genai.Client(api_key=gw.api_key, http_options={"base_url": gw.base_url})
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="Weather",
        parameters={
            "type": "OBJECT",
            "properties": {"city": {"type": "STRING"}},
            "required": ["city"],
        },
    )
    fake_google.script(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    first = client.models.generate_content(model=MODEL, contents="Weather in Paris?", config=config)
    [call] = first.function_calls or []
    assert call.name == "get_weather" and call.args == {"city": "Paris"}
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")
    second = client.models.generate_content(
        model=MODEL,
        config=config,
        contents=[
            types.Content(
                role="user",
                parts=[
                    types.Part(text="Weather in Paris?"),
                    types.Part.from_bytes(data=png, mime_type="image/png"),
                ],
            ),
            first.candidates[0].content,  # type: ignore[index]
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(
                        name="get_weather", response={"result": "sunny"}
                    )
                ],
            ),
        ],
    )
    assert second.text and second.text.startswith("echo:")
    sent = fake_google.calls("generateContent")[-1].body["request"]["contents"]
    image = sent[0]["parts"][1].get("inlineData") or sent[0]["parts"][1]["inline_data"]
    assert (image.get("mimeType") or image.get("mime_type")) == "image/png"  # passed through
    assert sent[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_unknown_ids_resolve_by_family(gateway_factory: Any, fake_google: Any) -> None:
    gw, _ = gateway_with(gateway_factory, fake_google, 1)
    response = ask(gw, "hi", "/v1beta/models/gemini-3.5-flash-preview-09-2026:generateContent")
    assert response.status_code == 200 and response.headers["x-agproxy-model"] == MODEL
    unknown = ask(gw, "hi", "/v1beta/models/llama-70b:generateContent")
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"


# -- resilience ---------------------------------------------------------------------------
def test_a_rate_limited_account_is_skipped_until_its_cooldown_ends(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, accounts = gateway_with(
        gateway_factory, fake_google, 3, AGPROXY_SCHEDULING_MODE="round_robin"
    )
    limited = accounts[0]
    fake_google.inject(Fault.rate_limited(retry_delay="2s"), email=limited.email, times=1)
    for i in range(9):
        assert ask(gw, f"request {i}").status_code == 200
    calls = served_by(fake_google, accounts)
    assert calls[limited.email] == 1  # the 429, then skipped while cooling down
    assert sum(calls.values()) == 10  # 9 answers + the one 429
    time.sleep(2.2)
    for i in range(6):
        assert ask(gw, f"later {i}").status_code == 200
    assert served_by(fake_google, accounts)[limited.email] > 1  # back after its cooldown


def test_expired_token_is_refreshed_and_retried_once(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google, 1)
    before = fake_google.token_refresh_count(acct.refresh_token)
    fake_google.inject(Fault.unauthenticated(), email=acct.email)
    assert ask(gw, "after 401").status_code == 200
    assert fake_google.token_refresh_count(acct.refresh_token) == before + 1
    assert len(fake_google.calls("generateContent", email=acct.email)) == 2


def test_403_marks_the_account_forbidden_and_moves_on(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, accounts = gateway_with(
        gateway_factory, fake_google, 2, AGPROXY_SCHEDULING_MODE="round_robin"
    )
    bad = accounts[0]
    fake_google.inject(Fault.forbidden(validation=True), email=bad.email, times=5)
    answers = [ask(gw, f"q{i}").status_code for i in range(4)]
    assert answers == [200, 200, 200, 200]
    assert len(fake_google.calls("generateContent", email=bad.email)) <= 1
    listed = {a["email"]: a for a in gw.admin("GET", "/api/accounts").json()["accounts"]}
    assert listed[bad.email]["state"] == "forbidden"
    assert listed[bad.email]["status_reason"].startswith("Forbidden (403): Verify your account")
    assert gw.admin("GET", "/api/proxy/status").json()["active_accounts"] == 1


def test_all_limited_is_a_429_with_retry_after(gateway_factory: Any, fake_google: Any) -> None:
    gw, accounts = gateway_with(gateway_factory, fake_google, 2)
    for acct in accounts:
        fake_google.inject(Fault.rate_limited(retry_delay="40s"), email=acct.email, times=3)
    response = ask(gw, "everyone is limited")
    assert response.status_code == 429
    assert 38 <= int(response.headers["retry-after"]) <= 40
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    again = ask(gw, "still limited")  # no upstream call: the cooldowns answer
    assert again.status_code == 429 and sum(served_by(fake_google, accounts).values()) == 2


def test_a_400_is_returned_at_once(gateway_factory: Any, fake_google: Any) -> None:
    gw, accounts = gateway_with(gateway_factory, fake_google, 2)
    fake_google.inject(Fault.invalid_argument("Invalid `signature`"), times=1)
    response = ask(gw, "bad request")
    assert response.status_code == 400 and "Invalid `signature`" in response.text
    assert sum(served_by(fake_google, accounts).values()) == 1
    assert ask(gw, "fine").status_code == 200  # nobody was cooled down or disabled
    assert gw.admin("GET", "/api/proxy/status").json()["active_accounts"] == 2


def test_5xx_is_retried(gateway_factory: Any, fake_google: Any) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google, 1)
    fake_google.inject(Fault.server_error(503), email=acct.email)
    assert ask(gw, "retry me").status_code == 200
    assert len(fake_google.calls("generateContent", email=acct.email)) == 2


def test_stream_cut_after_bytes_ends_with_an_error_event(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google, 1)
    fake_google.inject(Fault.cut_stream(after_events=1), email=acct.email)
    response = ask(gw, "a long answer that gets cut", STREAM)
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert len(events) == 2 and '"error"' in events[-1] and "UNAVAILABLE" in events[-1]
    assert len(fake_google.calls("streamGenerateContent", email=acct.email)) == 1


def test_stream_cut_before_any_byte_is_retried(gateway_factory: Any, fake_google: Any) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google, 1)
    fake_google.inject(Fault.cut_stream(after_events=0), email=acct.email)
    response = ask(gw, "retry before the first byte", STREAM)
    assert response.status_code == 200 and '"error"' not in response.text
    assert len(fake_google.calls("streamGenerateContent", email=acct.email)) == 2


def test_sticky_sessions_and_retry_budget(gateway_factory: Any, fake_google: Any) -> None:
    gw, accounts = gateway_with(gateway_factory, fake_google, 3)
    for _ in range(4):
        assert ask(gw, "the same long conversation opener").status_code == 200
    counts = served_by(fake_google, accounts)
    assert sorted(counts.values()) == [0, 0, 4]  # one conversation, one account
    for i in range(6):
        ask(gw, f"a different conversation number {i}")
    assert all(served_by(fake_google, accounts).values())  # new ones spread out

    capped, capped_accounts = gateway_with(
        gateway_factory, fake_google, 3, name="capped", AGPROXY_RETRY_MAX_ATTEMPTS="2"
    )
    fake_google.reset()
    fake_google.inject(Fault.server_error(500), times=10)
    assert ask(capped, "budget").status_code == 502  # the upstream's 500
    assert sum(served_by(fake_google, capped_accounts).values()) == 2


def test_client_disconnect_cancels_the_upstream_call(
    gateway_factory: Any, fake_google: Any
) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google, 1)
    fake_google.inject(Fault.stall(20), email=acct.email)
    with httpx.stream(
        "POST",
        gw.base_url + STREAM,
        timeout=30,
        json={"contents": [{"role": "user", "parts": [{"text": "a slow one"}]}]},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # got the first event; now hang up
    left_at = time.monotonic()
    deadline = left_at + 5
    while not fake_google.disconnects:
        assert time.monotonic() < deadline, "the upstream stream was not closed"
        time.sleep(0.05)
    [gone] = fake_google.disconnects
    assert gone["email"] == acct.email and gone["at"] - left_at < 2


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
