"""The fake Google upstream, checked through plain httpx so other suites can trust it."""

from __future__ import annotations

import base64
import calendar
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fake_google import (
    CLIENT_ID,
    CLIENT_SECRET,
    FALLBACK_PROJECT,
    GROUNDED_SENTENCES,
    SEARCH_SOURCES,
    FakeGoogle,
    Fault,
    count_tokens,
    format_duration,
    parse_duration,
    search_queries,
    search_uri,
)

CLIENT = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "Token has been expired or revoked.",
}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# One pooled client: building a client per call (httpx.get/post) costs ~20 ms of SSL setup.
http = httpx.Client(timeout=10, trust_env=False)


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    http.close()


# -- helpers ------------------------------------------------------------------------------
def email() -> str:
    return f"fg-{uuid.uuid4().hex[:8]}@example.com"


def refresh(fake: FakeGoogle, refresh_token: str, **extra: str) -> httpx.Response:
    return http.post(
        fake.token_url,
        data={**CLIENT, "grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
    )


def token(fake: FakeGoogle, acct: Any) -> str:
    response = refresh(fake, acct.refresh_token)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def rpc(
    fake: FakeGoogle,
    access_token: str | None,
    method: str,
    body: Any = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> httpx.Response:
    auth = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return http.post(
        f"{fake.v1internal}:{method}" + (f"?{query}" if query else ""),
        json=body if body is not None else {},
        headers={**auth, **(headers or {})},
        timeout=10,
        **kw,
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def model_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def envelope(
    model: str = "gemini-3-flash",
    project: str | None = "proj-a",
    contents: list[dict[str, Any]] | None = None,
    **request: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "userAgent": "antigravity",
        "requestType": "agent",
        "requestId": "agent/antigravity/sid-1a2b/1",
        "request": {"contents": [user("hello")] if contents is None else contents, **request},
    }
    if project is not None:
        body["project"] = project
    return body


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Strict SSE framing: only `data: <json>` lines, each followed by one blank line."""
    assert text.endswith("\n\n") or text == ""
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, repr(block)
        events.append(json.loads(block[len("data: ") :]))
    return events


def google_error(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["status"] and error["message"]
    return dict(error)


@pytest.fixture
def fake(fake_google: FakeGoogle) -> FakeGoogle:
    return fake_google


@pytest.fixture
def acct(fake: FakeGoogle) -> Any:
    return fake.add_account(email=email(), project="proj-a")


@pytest.fixture
def at(fake: FakeGoogle, acct: Any) -> str:
    return token(fake, acct)


# -- token endpoint --------------------------------------------------------------------------
def test_refresh_grant_answers_like_google(fake: FakeGoogle, acct: Any) -> None:
    before = fake.token_refresh_count(acct.refresh_token)
    response = refresh(fake, acct.refresh_token)
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "expires_in", "token_type", "scope", "id_token"}
    assert body["access_token"].startswith("ya29.fake-") and body["expires_in"] == 3599
    assert body["token_type"] == "Bearer" and body["scope"].startswith("openid ")
    claims = body["id_token"].split(".")[1]
    assert body["id_token"].startswith("eyJ")
    assert json.loads(base64.urlsafe_b64decode(claims + "==="))["email"] == acct.email
    assert acct.access_tokens == [body["access_token"]]
    assert fake.token_refresh_count(acct.refresh_token) == before + 1
    [recorded] = fake.calls("token")
    assert recorded.method == "POST" and recorded.path == "/token"
    assert recorded.body["grant_type"] == "refresh_token" and recorded.account_email == acct.email
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": CLIENT_SECRET, "grant_type": "refresh_token"}, 400, "invalid_request"),
        ({"client_id": CLIENT_ID, "grant_type": "refresh_token"}, 400, "invalid_request"),
        ({**CLIENT}, 400, "invalid_request"),
        ({**CLIENT, "grant_type": "password"}, 400, "unsupported_grant_type"),
        ({**CLIENT, "grant_type": "refresh_token"}, 400, "invalid_request"),
        (
            {**CLIENT, "grant_type": "refresh_token", "refresh_token": "1//nope"},
            400,
            "invalid_grant",
        ),
        (
            {
                "client_id": "other.apps.googleusercontent.com",
                "client_secret": "x",
                "grant_type": "refresh_token",
            },
            401,
            "invalid_client",
        ),
        (
            {"client_id": CLIENT_ID, "client_secret": "wrong", "grant_type": "refresh_token"},
            401,
            "invalid_client",
        ),
    ],
)
def test_token_endpoint_refuses_bad_forms(
    fake: FakeGoogle, form: dict[str, str], status: int, error: str
) -> None:
    response = http.post(fake.token_url, data=form)
    assert response.status_code == status and response.json()["error"] == error
    assert response.json()["error_description"]


def test_token_endpoint_refuses_json(fake: FakeGoogle, acct: Any) -> None:
    response = http.post(
        fake.token_url,
        json={**CLIENT, "grant_type": "refresh_token", "refresh_token": acct.refresh_token},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert fake.calls("token")[0].body["refresh_token"] == acct.refresh_token  # JSON recorded


def test_any_client_is_accepted_when_clients_are_not_checked(fake: FakeGoogle, acct: Any) -> None:
    fake.oauth_clients = None
    response = refresh(fake, acct.refresh_token, client_id="mine", client_secret="s")
    assert response.status_code == 200


def test_revoke_kills_refresh_and_access_tokens(fake: FakeGoogle, acct: Any, at: str) -> None:
    revoked = acct.refresh_token
    fake.revoke(revoked)
    response = refresh(fake, acct.refresh_token)
    assert response.status_code == 400 and response.json() == INVALID_GRANT
    error = google_error(rpc(fake, at, "loadCodeAssist"), 401)
    assert error["status"] == "UNAUTHENTICATED"
    # Signing in again mints a new refresh token that works.
    code = fake.issue_code(acct.email)
    exchanged = http.post(
        fake.token_url,
        data={
            **CLIENT,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://x/cb",
        },
    )
    assert exchanged.status_code == 200
    assert exchanged.json()["refresh_token"] == acct.refresh_token != revoked
    assert refresh(fake, acct.refresh_token).status_code == 200


def test_access_tokens_expire_after_their_ttl(fake: FakeGoogle) -> None:
    short = fake.add_account(email=email(), access_token_ttl=1)
    grant = refresh(fake, short.refresh_token).json()
    assert grant["expires_in"] == 1
    assert rpc(fake, grant["access_token"], "loadCodeAssist").status_code == 200
    time.sleep(1.05)
    error = google_error(rpc(fake, grant["access_token"], "loadCodeAssist"), 401)
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    assert (
        http.get(
            fake.userinfo_url, headers={"Authorization": f"Bearer {grant['access_token']}"}
        ).status_code
        == 401
    )


def test_expire_access_tokens_helper(fake: FakeGoogle, acct: Any, at: str) -> None:
    fake.expire_access_tokens(acct.email)
    assert rpc(fake, at, "loadCodeAssist").status_code == 401
    assert rpc(fake, token(fake, acct), "loadCodeAssist").status_code == 200


def test_token_faults_are_oauth_shaped_and_counted(fake: FakeGoogle, acct: Any) -> None:
    fake.inject(Fault.rate_limited())  # method=None: v1internal only, never the token endpoint
    fake.inject(Fault.server_error(503), method="token", times=2)
    before = fake.token_refresh_count(acct.refresh_token)
    first, second = refresh(fake, acct.refresh_token), refresh(fake, acct.refresh_token)
    assert first.status_code == second.status_code == 503
    assert first.json() == {
        "error": "internal_failure",
        "error_description": "No capacity available",
    }
    assert refresh(fake, acct.refresh_token).status_code == 200
    assert fake.token_refresh_count(acct.refresh_token) == before + 3
    assert fake.faults_left() == 1


def test_slow_token_fault_delays_then_answers(fake: FakeGoogle, acct: Any) -> None:
    fake.inject(Fault.slow(0.3), method="token", email=acct.email)
    started = time.monotonic()
    assert refresh(fake, acct.refresh_token).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert refresh(fake, acct.refresh_token).status_code == 200
    assert time.monotonic() - started < 0.3


# -- consent page and code exchange -----------------------------------------------------------------
def authorize(fake: FakeGoogle, **params: str) -> httpx.Response:
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": "http://127.0.0.1:5555/oauth-callback",
        "response_type": "code",
        "scope": "openid email",
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": "st-1",
        **params,
    }
    return http.get(fake.authorize_url, params={k: v for k, v in query.items() if v is not None})


def exchange(
    fake: FakeGoogle,
    code: str,
    redirect_uri: str = "http://127.0.0.1:5555/oauth-callback",
    **extra: str,
) -> httpx.Response:
    return http.post(
        fake.token_url,
        data={
            **CLIENT,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            **extra,
        },
    )


def test_authorize_redirects_with_code_and_state_and_pkce_is_enforced(
    fake: FakeGoogle, acct: Any
) -> None:
    fake.consent_email = acct.email
    verifier = "v" * 64
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    response = authorize(fake, code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.netloc == "127.0.0.1:5555" and location.path == "/oauth-callback"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["state"] == "st-1" and query["code"].startswith("4/0A")
    code = query["code"]
    assert fake.oauth_codes[code] == acct.email

    wrong_uri = exchange(fake, code, "http://localhost:5555/oauth-callback", code_verifier=verifier)
    assert wrong_uri.json() == {"error": "invalid_grant", "error_description": "Bad Request"}
    assert exchange(fake, code).json()["error_description"] == "Missing code verifier."
    assert (
        exchange(fake, code, code_verifier="w" * 64).json()["error_description"]
        == "Invalid code verifier."
    )
    good = exchange(fake, code, code_verifier=verifier)
    assert good.status_code == 200 and good.json()["refresh_token"] == acct.refresh_token
    assert good.json()["access_token"] in acct.access_tokens
    reused = exchange(fake, code, code_verifier=verifier)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_refresh_token_only_with_offline_access_and_consent_prompt(
    fake: FakeGoogle, acct: Any
) -> None:
    fake.consent_email = acct.email
    location = authorize(fake, prompt=None).headers["location"]  # type: ignore[arg-type]
    code = parse_qs(urlsplit(location).query)["code"][0]
    body = exchange(fake, code).json()
    assert "access_token" in body and "refresh_token" not in body


def test_consent_defaults_to_the_newest_account_and_can_be_denied(fake: FakeGoogle) -> None:
    newest = fake.add_account(email=email())
    code = parse_qs(urlsplit(authorize(fake).headers["location"]).query)["code"][0]
    assert fake.oauth_codes[code] == newest.email
    fake.consent_error = "access_denied"
    query = parse_qs(urlsplit(authorize(fake).headers["location"]).query)
    assert query == {"error": ["access_denied"], "state": ["st-1"]}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"client_id": None}, 400),
        ({"redirect_uri": None}, 400),
        ({"scope": None}, 400),
        ({"response_type": "token"}, 400),
        ({"client_id": "unknown-client"}, 401),
    ],
)
def test_authorize_refuses_bad_requests(
    fake: FakeGoogle, acct: Any, params: dict[str, Any], status: int
) -> None:
    response = authorize(fake, **params)
    assert response.status_code == status and "Error" in response.text


def test_authorize_faults_show_an_error_page(fake: FakeGoogle, acct: Any) -> None:
    fake.inject(Fault.server_error(503), method="authorize")
    response = authorize(fake)
    assert response.status_code == 503 and "internal_failure" in response.text
    assert authorize(fake).status_code == 302


def test_codes_written_by_the_test_and_unknown_codes(fake: FakeGoogle, acct: Any) -> None:
    fake.oauth_codes["4/0Amine"] = acct.email
    assert (
        exchange(fake, "4/0Amine", "http://anything/cb").json()["refresh_token"]
        == acct.refresh_token
    )
    assert exchange(fake, "4/0Anever").json() == {
        "error": "invalid_grant",
        "error_description": "Malformed auth code.",
    }
    missing = http.post(
        fake.token_url,
        data={**CLIENT, "grant_type": "authorization_code", "code": fake.issue_code(acct.email)},
    )
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


# -- userinfo -----------------------------------------------------------------------------------
def test_userinfo(fake: FakeGoogle, acct: Any, at: str) -> None:
    info = http.get(fake.userinfo_url, headers={"Authorization": f"Bearer {at}"}).json()
    assert set(info) == {
        "id",
        "email",
        "verified_email",
        "name",
        "given_name",
        "family_name",
        "picture",
    }
    assert info["email"] == acct.email and info["verified_email"] is True
    assert info["name"] == f"{info['given_name']} {info['family_name']}"
    bad = http.get(fake.userinfo_url, headers={"Authorization": "Bearer ya29.forged"})
    assert google_error(bad, 401)["status"] == "UNAUTHENTICATED"
    assert "invalid_token" in bad.headers["www-authenticate"]
    missing = http.get(fake.userinfo_url)
    assert google_error(missing, 401)["details"][0]["reason"] == "CREDENTIALS_MISSING"


# -- project discovery ----------------------------------------------------------------------------
def test_load_code_assist_with_project_and_paid_tier(fake: FakeGoogle) -> None:
    acct = fake.add_account(
        email=email(), project="proj-x", paid_tier=("g1-pro-tier", "Google AI Pro")
    )
    body = rpc(
        fake,
        token(fake, acct),
        "loadCodeAssist",
        {
            "metadata": {
                "ideType": "ANTIGRAVITY",
                "platform": "PLATFORM_UNSPECIFIED",
                "pluginType": "GEMINI",
            }
        },
    ).json()
    assert body["cloudaicompanionProject"] == "proj-x"
    assert body["currentTier"]["id"] == "free-tier"
    assert body["paidTier"] == {"id": "g1-pro-tier", "name": "Google AI Pro"}
    assert [t["id"] for t in body["allowedTiers"] if t["isDefault"]] == ["free-tier"]
    assert "ineligibleTiers" not in body


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"metadata": {"ideType": "EMACS"}}, "metadata.ide_type"),
        ({"metadata": {"ideType": "ANTIGRAVITY", "colour": "red"}}, 'Unknown name "colour"'),
        ({"project": "p"}, 'Unknown name "project"'),
    ],
)
def test_load_code_assist_refuses_unknown_fields_and_enum_values(
    fake: FakeGoogle, at: str, body: Any, needle: str
) -> None:
    assert needle in google_error(rpc(fake, at, "loadCodeAssist", body), 400)["message"]


def test_onboarding_an_account_without_project(fake: FakeGoogle) -> None:
    acct = fake.add_account(
        email=email(), project=None, ineligible_tiers=[{"reasonCode": "X", "reasonMessage": "no"}]
    )
    at = token(fake, acct)
    load = rpc(fake, at, "loadCodeAssist", {"metadata": {"ideType": "ANTIGRAVITY"}}).json()
    assert "cloudaicompanionProject" not in load and "currentTier" not in load
    assert load["ineligibleTiers"] == [{"reasonCode": "X", "reasonMessage": "no"}]
    default = next(t["id"] for t in load["allowedTiers"] if t["isDefault"])
    assert (
        "tierId" in google_error(rpc(fake, at, "onboardUser", {"tierId": "gold"}), 400)["message"]
    )

    op = rpc(
        fake, at, "onboardUser", {"tierId": default, "metadata": {"ideType": "ANTIGRAVITY"}}
    ).json()
    assert op["done"] is False and op["name"].startswith("operations/op-")
    assert "cloudaicompanionProject" not in rpc(fake, at, "loadCodeAssist").json()
    other = token(fake, fake.add_account(email=email()))
    assert (
        http.get(
            f"{fake.v1internal}/{op['name']}", headers={"Authorization": f"Bearer {other}"}
        ).status_code
        == 404
    )
    polled = http.get(
        f"{fake.v1internal}/{op['name']}", headers={"Authorization": f"Bearer {at}"}
    ).json()
    number = op["name"].removeprefix("operations/op-")
    assert polled["done"] is True and polled["name"] == op["name"]
    assert polled["response"]["cloudaicompanionProject"]["id"] == f"onboarded-{number}"
    assert acct.project == f"onboarded-{number}"
    load = rpc(fake, at, "loadCodeAssist").json()
    assert load["cloudaicompanionProject"] == acct.project and load["currentTier"]["id"] == default
    assert [r.rpc for r in fake.calls(email=acct.email)][-3:] == [
        "loadCodeAssist",
        "operations",
        "loadCodeAssist",
    ]


def test_onboarding_can_fail(fake: FakeGoogle) -> None:
    acct = fake.add_account(email=email(), project=None)
    at = token(fake, acct)
    fake.onboard_fails = True
    op = rpc(fake, at, "onboardUser", {"tierId": "free-tier"}).json()
    polled = http.get(
        f"{fake.v1internal}/{op['name']}", headers={"Authorization": f"Bearer {at}"}
    ).json()
    assert polled["done"] is True and "error" in polled and "response" not in polled
    assert acct.project is None


# -- quota -------------------------------------------------------------------------------
def test_fetch_available_models(fake: FakeGoogle) -> None:
    acct = fake.add_account(
        email=email(),
        models={
            "gemini-3-flash": {"remainingFraction": 0.25, "resetTime": "2099-01-01T00:00:00Z"},
            "claude-sonnet-4-6": {"remainingFraction": None, "resetTime": "2099-01-02T00:00:00Z"},
        },
    )
    fake.deprecated_model_ids = {"gemini-3-pro-high": {"newModelId": "gemini-pro-agent"}}
    at = token(fake, acct)
    body = rpc(fake, at, "fetchAvailableModels", {"project": "proj-a"}).json()
    models = body["models"]
    assert set(models) == {"gemini-3-flash", "claude-sonnet-4-6", "chat_20706"}
    assert models["gemini-3-flash"]["quotaInfo"] == {
        "remainingFraction": 0.25,
        "resetTime": "2099-01-01T00:00:00Z",
    }
    assert models["claude-sonnet-4-6"]["quotaInfo"] == {"resetTime": "2099-01-02T00:00:00Z"}
    assert models["gemini-3-flash"]["maxOutputTokens"] == 65536
    assert models["gemini-3-flash"]["supportsThinking"] is True
    assert models["gemini-3-flash"]["displayName"] == "Gemini 3 Flash"
    assert "quotaInfo" not in models["chat_20706"]
    assert body["deprecatedModelIds"] == {"gemini-3-pro-high": {"newModelId": "gemini-pro-agent"}}
    assert rpc(fake, at, "fetchAvailableModels", {}).status_code == 200
    assert google_error(rpc(fake, at, "fetchAvailableModels", {"project": "proj-zzz"}), 403)
    assert (
        'Unknown name "model"'
        in google_error(rpc(fake, at, "fetchAvailableModels", {"model": "x"}), 400)["message"]
    )


def test_default_models_are_fresh(fake: FakeGoogle, acct: Any, at: str) -> None:
    models = rpc(fake, at, "fetchAvailableModels", {"project": "proj-a"}).json()["models"]
    assert {
        "gemini-3-flash",
        "gemini-3-pro-high",
        "claude-sonnet-4-6",
        "gemini-3.1-flash-image",
    } <= set(models)
    assert all(models[m]["quotaInfo"]["remainingFraction"] == 1.0 for m in acct.models)


def test_retrieve_user_quota_summary(fake: FakeGoogle, at: str) -> None:
    groups = rpc(fake, at, "retrieveUserQuotaSummary", {"project": "proj-a"}).json()["groups"]
    assert {b["bucketId"] for g in groups for b in g["buckets"]} == {
        "gemini-5h",
        "gemini-weekly",
        "3p-5h",
        "3p-weekly",
    }
    names = {g["displayName"]: [b["window"] for b in g["buckets"]] for g in groups}
    assert names == {"Gemini Models": ["5h", "weekly"], "Claude and GPT models": ["5h", "weekly"]}
    fresh = {b["bucketId"]: b for g in groups for b in g["buckets"]}
    assert all(b["remainingFraction"] == 1.0 for b in fresh.values())
    for bucket_id, seconds in {"gemini-5h": 5 * 3600, "3p-weekly": 7 * 86400}.items():
        reset = calendar.timegm(time.strptime(fresh[bucket_id]["resetTime"], "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(reset - time.time() - seconds) < 60


def test_quota_windows_are_scripted_per_account(fake: FakeGoogle, acct: Any, at: str) -> None:
    """set_window changes one bucket of one account; an empty bucket (0 or no fraction)
    answers 429 for its group's models until its reset time, the other group unaffected."""
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    fake.set_window(acct.email, "3p-weekly", None, reset)
    other = fake.add_account(email=email(), windows={"gemini-5h": {"remainingFraction": 0.25}})
    buckets = {
        b["bucketId"]: b
        for g in rpc(fake, at, "retrieveUserQuotaSummary", {}).json()["groups"]
        for b in g["buckets"]
    }
    assert "remainingFraction" not in buckets["3p-weekly"]
    assert buckets["3p-weekly"]["resetTime"] == reset
    assert buckets["gemini-5h"]["remainingFraction"] == 1.0
    theirs = rpc(fake, token(fake, other), "retrieveUserQuotaSummary", {}).json()["groups"]
    assert {b["bucketId"]: b["remainingFraction"] for g in theirs for b in g["buckets"]} == {
        "gemini-5h": 0.25,
        "gemini-weekly": 1.0,
        "3p-5h": 1.0,
        "3p-weekly": 1.0,
    }

    claude = envelope(model="claude-sonnet-4-6")
    error = google_error(rpc(fake, at, "generateContent", claude), 429)
    assert 7190 < parse_duration(error["details"][0]["metadata"]["quotaResetDelay"]) <= 7200
    assert rpc(fake, at, "generateContent", envelope()).status_code == 200  # Gemini serves
    passed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    fake.set_window(acct.email, "3p-weekly", 0.0, passed)
    assert rpc(fake, at, "generateContent", claude).status_code == 200  # reset passed


# -- generation ------------------------------------------------------------------------------
def test_generate_content_non_streamed(fake: FakeGoogle, at: str) -> None:
    response = rpc(fake, at, "generateContent", envelope(contents=[user("hello there")]))
    body = response.json()
    assert (
        response.status_code == 200
        and body["traceId"] == response.headers["x-cloudaicompanion-trace-id"]
    )
    inner = body["response"]
    assert inner["candidates"] == [
        {
            "content": {"role": "model", "parts": [{"text": "echo: hello there"}]},
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert inner["modelVersion"] == "gemini-3-flash" and inner["responseId"]
    assert inner["usageMetadata"] == {
        "promptTokenCount": len("hello there") // 4 + 1,
        "candidatesTokenCount": len("echo: hello there") // 4 + 1,
        "totalTokenCount": 3 + 5,
    }


def test_stream_is_sse_framed_with_usage_and_finish_on_the_last_event(
    fake: FakeGoogle, at: str
) -> None:
    contents = [user("first"), model_turn({"text": "ok"}), user("hello world")]
    response = rpc(fake, at, "streamGenerateContent", envelope(contents=contents), query="alt=sse")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert 2 <= len(events) <= 3
    trace = response.headers["x-cloudaicompanion-trace-id"]
    assert {e["traceId"] for e in events} == {trace}
    inner = [e["response"] for e in events]
    text = "".join(p["text"] for r in inner for p in r["candidates"][0]["content"]["parts"])
    assert text == "echo: hello world"
    assert ["finishReason" in r["candidates"][0] for r in inner] == [False] * (len(inner) - 1) + [
        True
    ]
    assert inner[-1]["usageMetadata"]["promptTokenCount"] == count_tokens(contents)
    assert inner[-1]["usageMetadata"]["totalTokenCount"] == (
        count_tokens(contents) + len(text) // 4 + 1
    )
    assert len({r["responseId"] for r in inner}) == 1


def test_stream_without_alt_sse_is_a_json_array(fake: FakeGoogle, at: str) -> None:
    response = rpc(fake, at, "streamGenerateContent", envelope())
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) >= 2
    assert chunks[-1]["response"]["candidates"][0]["finishReason"] == "STOP"


def test_thoughts_and_images_in_unscripted_replies(fake: FakeGoogle, at: str) -> None:
    thinking = {"includeThoughts": True, "thinkingBudget": 1024}
    parts = rpc(
        fake,
        at,
        "generateContent",
        envelope(generationConfig={"maxOutputTokens": 4096, "thinkingConfig": thinking}),
    ).json()["response"]
    assert [bool(p.get("thought")) for p in parts["candidates"][0]["content"]["parts"]] == [
        True,
        True,
        False,
    ]
    assert parts["candidates"][0]["content"]["parts"][1]["thoughtSignature"]
    assert parts["usageMetadata"]["thoughtsTokenCount"] > 0
    image = rpc(fake, at, "generateContent", envelope(model="gemini-3.1-flash-image")).json()
    assert (
        image["response"]["candidates"][0]["content"]["parts"][-1]["inlineData"]["mimeType"]
        == "image/png"
    )


def test_scripted_replies_match_by_model_and_account_in_order(
    fake: FakeGoogle, acct: Any, at: str
) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "toolu_1"}}
    fake.script(
        model="claude-sonnet-4-6",
        parts=[{"text": "calling"}, call],
        usage={"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
    )
    fake.script(email="someone-else@example.com", parts=[{"text": "not for us"}])
    fake.script(parts=[{"text": "A"}], times=2)

    events = parse_sse(
        rpc(
            fake, at, "streamGenerateContent", envelope(model="claude-sonnet-4-6"), query="alt=sse"
        ).text
    )
    assert [e["response"]["candidates"][0]["content"]["parts"] for e in events] == [
        [{"text": "calling"}],
        [call],
    ]
    assert events[-1]["response"]["usageMetadata"]["totalTokenCount"] == 10
    for _ in range(2):
        assert rpc(fake, at, "generateContent", envelope()).json()["response"]["candidates"][0][
            "content"
        ]["parts"] == [{"text": "A"}]
    assert "echo" in rpc(fake, at, "generateContent", envelope()).text


def test_scripted_chunks_and_raw_events(fake: FakeGoogle, at: str) -> None:
    fake.script(
        chunks=[[{"text": "a"}, {"text": "b"}], [{"text": "c"}]], finish_reason="MAX_TOKENS"
    )
    events = parse_sse(rpc(fake, at, "streamGenerateContent", envelope(), query="alt=sse").text)
    assert len(events) == 2
    assert events[-1]["response"]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    fake.script(raw=[{"promptFeedback": {"blockReason": "SAFETY"}}])
    blocked = rpc(fake, at, "generateContent", envelope()).json()["response"]
    assert blocked == {"promptFeedback": {"blockReason": "SAFETY"}}


# -- validation ----------------------------------------------------------------------------------
SIG = "skip_thought_signature_validator"
CALL = {"functionCall": {"name": "f", "args": {}, "id": "c1"}}
RESULT = {"functionResponse": {"name": "f", "response": {"result": 1}, "id": "c1"}}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (envelope(project=None), 400, "project"),
        (envelope(project=""), 400, "project"),
        ({**envelope(), "model": ""}, 400, "model"),
        (envelope(model="gemini-9-ultra"), 404, "Requested entity was not found."),
        ({**envelope(), "request": None}, 400, "request"),
        (envelope(contents=[]), 400, "contents is not specified"),
        ({**envelope(), "extra": 1}, 400, 'Unknown name "extra"'),
        (envelope(contents=[{"role": "system", "parts": [{"text": "x"}]}]), 400, "valid role"),
        (envelope(contents=[model_turn({"text": "x"}), user("y")]), 400, "first content"),
        (envelope(contents=[user("a"), user("b")]), 400, 'contents[1] repeats role "user"'),
        (envelope(contents=[{"role": "user", "parts": []}]), 400, "parts must not be empty"),
        (envelope(contents=[{"role": "user", "parts": [{"thought": True}]}]), 400, "oneof field"),
        (
            envelope(contents=[{"role": "user", "parts": [{"text": "a", **RESULT}]}]),
            400,
            "Cannot set 'functionResponse'",
        ),
        (
            envelope(contents=[{"role": "user", "parts": [{"text": "a", "cache_control": {}}]}]),
            400,
            'Unknown name "cache_control"',
        ),
        (
            envelope(
                generationConfig={
                    "maxOutputTokens": 1000,
                    "thinkingConfig": {"thinkingBudget": 1000},
                }
            ),
            400,
            "maxOutputTokens (1000) must be greater than",
        ),
        (
            envelope(
                generation_config={
                    "max_output_tokens": 10,
                    "thinking_config": {"thinking_budget": 99},
                }
            ),
            400,
            "must be greater than",
        ),
        (
            envelope(generationConfig={"thinkingConfig": {"thinkingLevel": "high"}}),
            400,
            "thinkingLevel",
        ),
        (
            envelope(
                model="claude-sonnet-4-6",
                generationConfig={"thinkingConfig": {"thinkingLevel": "high", "thinkingBudget": 5}},
            ),
            400,
            "only one of",
        ),
        (
            envelope(tools=[{"googleSearch": {}}, {"functionDeclarations": [{"name": "f"}]}]),
            400,
            "all search tools",
        ),
        (
            envelope(contents=[user("a"), model_turn(CALL), {"role": "user", "parts": [RESULT]}]),
            400,
            "missing a thought_signature",
        ),
        (
            envelope(model="claude-sonnet-4-6", contents=[user("a"), model_turn(CALL), user("b")]),
            400,
            "`tool_use` ids were found without `tool_result`",
        ),
        (
            envelope(
                model="claude-sonnet-4-6",
                contents=[
                    user("a"),
                    model_turn({"text": "x"}),
                    {"role": "user", "parts": [RESULT]},
                ],
            ),
            400,
            "unexpected `tool_use_id`",
        ),
        (
            envelope(project="someone-elses-project"),
            403,
            "cloudaicompanion.companions.generateChat",
        ),
    ],
)
def test_generate_refuses_what_google_refuses(
    fake: FakeGoogle, at: str, body: dict[str, Any], status: int, needle: str
) -> None:
    for method, query in (("generateContent", ""), ("streamGenerateContent", "alt=sse")):
        error = google_error(rpc(fake, at, method, body, query=query), status)
        assert needle in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        envelope(
            contents=[
                user("a"),
                model_turn({**CALL, "thoughtSignature": SIG}),
                {"role": "user", "parts": [RESULT]},
            ]
        ),
        envelope(
            contents=[
                user("a"),
                model_turn({**CALL, "thought_signature": "abc"}),
                {"role": "user", "parts": [RESULT]},
                model_turn({"text": "done"}),
                user("next"),
            ]
        ),
        envelope(
            contents=[
                user("a"),
                model_turn(CALL),
                {"role": "user", "parts": [RESULT]},
                model_turn({"text": "ok"}),
                user("new question"),
            ]
        ),  # earlier turn
        envelope(
            model="claude-sonnet-4-6",
            contents=[user("a"), model_turn(CALL), {"role": "user", "parts": [RESULT]}],
        ),
        envelope(
            project=FALLBACK_PROJECT,
            generationConfig={"maxOutputTokens": 1001, "thinkingConfig": {"thinkingBudget": 1000}},
        ),
        envelope(
            systemInstruction={"role": "user", "parts": [{"text": "be nice"}]},
            toolConfig={"functionCallingConfig": {"mode": "VALIDATED"}},
            tool_config={"function_calling_config": {"mode": "VALIDATED"}},
            sessionId="-1",
        ),
    ],
)
def test_generate_accepts_valid_envelopes(fake: FakeGoogle, at: str, body: dict[str, Any]) -> None:
    assert rpc(fake, at, "generateContent", body).status_code == 200


def test_user_project_header_must_be_the_accounts(fake: FakeGoogle, at: str) -> None:
    ok = rpc(fake, at, "generateContent", envelope(), headers={"x-goog-user-project": "proj-a"})
    assert ok.status_code == 200
    denied = rpc(fake, at, "generateContent", envelope(), headers={"x-goog-user-project": "proj-b"})
    assert google_error(denied, 403)["details"][0]["reason"] == "USER_PROJECT_DENIED"
    fake.check_project = False
    assert (
        rpc(
            fake,
            at,
            "generateContent",
            envelope(project="proj-b"),
            headers={"x-goog-user-project": "proj-b"},
        ).status_code
        == 200
    )


def test_count_tokens(fake: FakeGoogle, at: str) -> None:
    contents = [user("hello"), model_turn(CALL), {"role": "user", "parts": [RESULT]}]
    body = rpc(
        fake,
        at,
        "countTokens",
        {"request": {"contents": contents, "model": "models/gemini-3-flash"}},
    ).json()
    assert body == {"totalTokens": count_tokens(contents)}
    assert count_tokens([user("hello")]) == 2
    for name in ("model", "project"):
        error = google_error(
            rpc(fake, at, "countTokens", {name: "x", "request": {"contents": contents}}), 400
        )
        assert f'Unknown name "{name}"' in error["message"]
    assert google_error(rpc(fake, at, "countTokens", {"request": {}}), 400)


def test_unknown_methods_paths_bad_json_and_missing_auth(fake: FakeGoogle, at: str) -> None:
    assert google_error(rpc(fake, at, "fooBar"), 404)["status"] == "NOT_FOUND"
    assert google_error(http.get(fake.base_url + "/v2/whatever"), 404)
    bad_json = http.post(
        f"{fake.v1internal}:generateContent",
        content=b"{nope",
        headers={"Authorization": f"Bearer {at}"},
    )
    assert "Invalid JSON payload" in google_error(bad_json, 400)["message"]
    missing = google_error(rpc(fake, None, "generateContent", envelope()), 401)
    assert missing["details"][0]["reason"] == "CREDENTIALS_MISSING"
    forged = rpc(fake, "ya29.forged", "loadCodeAssist")
    assert google_error(forged, 401) and "www-authenticate" in forged.headers
    assert [r.account_email for r in fake.calls("loadCodeAssist")] == [None]


# -- faults --------------------------------------------------------------------------------------
def test_rate_limited_with_every_detail(fake: FakeGoogle, at: str) -> None:
    fake.inject(Fault.rate_limited(retry_delay="3.5s", quota_reset_delay="1h2m3.5s"))
    error = google_error(rpc(fake, at, "generateContent", envelope(model="claude-sonnet-4-6")), 429)
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"] == (
        "You have exhausted your capacity on this model. Your quota will reset after 1h2m3s."
    )
    info, retry = error["details"]
    assert info["@type"] == ERROR_INFO and info["reason"] == "QUOTA_EXHAUSTED"
    assert info["domain"] == "cloudcode-pa.googleapis.com"
    assert info["metadata"]["model"] == "claude-sonnet-4-6"
    assert info["metadata"]["quotaResetDelay"] == "1h2m3.5s"
    assert info["metadata"]["quotaResetTimeStamp"].endswith("Z")
    assert retry == {"@type": RETRY_INFO, "retryDelay": "3.5s"}


@pytest.mark.parametrize(
    ("fault", "reason", "metadata", "retry"),
    [
        (Fault.rate_limited(), "QUOTA_EXHAUSTED", {"model": "gemini-3-flash"}, False),
        (
            Fault.rate_limited(quota_reset_delay="850ms", reason="RATE_LIMIT_EXCEEDED"),
            "RATE_LIMIT_EXCEEDED",
            {"model": "gemini-3-flash", "quotaResetDelay": "850ms"},
            False,
        ),
        (
            Fault.rate_limited(retry_delay="2s", reason="MODEL_CAPACITY_EXHAUSTED"),
            "MODEL_CAPACITY_EXHAUSTED",
            {"model": "gemini-3-flash"},
            True,
        ),
    ],
)
def test_rate_limited_variants(
    fake: FakeGoogle, at: str, fault: Fault, reason: str, metadata: dict[str, str], retry: bool
) -> None:
    fake.inject(fault)
    error = google_error(rpc(fake, at, "streamGenerateContent", envelope(), query="alt=sse"), 429)
    info = error["details"][0]
    assert info["reason"] == reason
    assert {k: v for k, v in info["metadata"].items() if k != "quotaResetTimeStamp"} == metadata
    assert any(d["@type"] == RETRY_INFO for d in error["details"]) is retry


@pytest.mark.parametrize(
    ("fault", "status", "status_name", "check"),
    [
        (Fault.unauthenticated(), 401, "UNAUTHENTICATED", lambda e: "credentials" in e["message"]),
        (Fault.forbidden(), 403, "PERMISSION_DENIED", lambda e: "details" not in e),
        (
            Fault.forbidden(validation=True),
            403,
            "PERMISSION_DENIED",
            lambda e: (
                e["details"][0]["reason"] == "VALIDATION_REQUIRED"
                and e["details"][0]["metadata"]["validation_url"].startswith("https://")
            ),
        ),
        (
            Fault.not_found(),
            404,
            "NOT_FOUND",
            lambda e: e["message"] == "Requested entity was not found.",
        ),
        (
            Fault.invalid_argument("Corrupted thought signature."),
            400,
            "INVALID_ARGUMENT",
            lambda e: e["message"] == "Corrupted thought signature.",
        ),
        (Fault.server_error(), 500, "INTERNAL", lambda e: True),
        (
            Fault.server_error(503),
            503,
            "UNAVAILABLE",
            lambda e: e["message"] == "No capacity available",
        ),
        (
            Fault.error(529, "Overloaded", headers={"Retry-After": "7"}),
            529,
            "UNAVAILABLE",
            lambda e: True,
        ),
    ],
)
def test_error_faults(
    fake: FakeGoogle, at: str, fault: Fault, status: int, status_name: str, check: Any
) -> None:
    fake.inject(fault, method="fetchAvailableModels")
    assert rpc(fake, at, "generateContent", envelope()).status_code == 200  # other method
    response = rpc(fake, at, "fetchAvailableModels")
    error = google_error(response, status)
    assert error["status"] == status_name and check(error)
    if status == 529:
        assert response.headers["retry-after"] == "7"
    assert rpc(fake, at, "fetchAvailableModels").status_code == 200  # consumed


def test_faults_are_fifo_and_filtered_by_account_model_and_method(
    fake: FakeGoogle, acct: Any, at: str
) -> None:
    other = fake.add_account(email=email())
    other_at = token(fake, other)
    fake.inject(Fault.not_found(), email=other.email)
    fake.inject(Fault.server_error(503), model="claude-sonnet-4-6", times=2)
    fake.inject(Fault.server_error(500))
    assert rpc(fake, at, "generateContent", envelope(model="claude-sonnet-4-6")).status_code == 503
    assert rpc(fake, at, "generateContent", envelope()).status_code == 500
    assert rpc(fake, at, "generateContent", envelope()).status_code == 200
    assert rpc(fake, other_at, "loadCodeAssist").status_code == 404
    assert (
        rpc(
            fake,
            at,
            "countTokens",
            {
                "request": {"contents": [user("x")]},
            },
        ).status_code
        == 200
    )
    assert fake.faults_left() == 1
    assert rpc(fake, at, "generateContent", envelope(model="claude-sonnet-4-6")).status_code == 503


def test_slow_fault_delays_a_v1internal_call(fake: FakeGoogle, at: str) -> None:
    fake.inject(Fault.slow(0.3), method="streamGenerateContent")
    started = time.monotonic()
    response = rpc(fake, at, "streamGenerateContent", envelope(), query="alt=sse")
    assert time.monotonic() - started >= 0.3 and len(parse_sse(response.text)) >= 2


def stream_raw(fake: FakeGoogle, at: str) -> tuple[bytes, BaseException | None, list[float]]:
    """Read a stream chunk by chunk: (bytes, the error that ended it, arrival times)."""
    received, times, error = b"", [], None
    with http.stream(
        "POST",
        f"{fake.v1internal}:streamGenerateContent?alt=sse",
        json=envelope(contents=[user("hello world")]),
        timeout=10,
        headers={"Authorization": f"Bearer {at}"},
    ) as response:
        assert response.status_code == 200
        try:
            for chunk in response.iter_raw():
                received += chunk
                times.append(time.monotonic())
        except httpx.HTTPError as exc:
            error = exc
    return received, error, times


@pytest.mark.parametrize("after", [0, 1, 2, 10])
def test_cut_stream_drops_the_connection_without_finish_reason(
    fake: FakeGoogle, at: str, after: int
) -> None:
    fake.inject(Fault.cut_stream(after_events=after))
    raw, error, _ = stream_raw(fake, at)
    assert isinstance(error, httpx.RemoteProtocolError)
    events = parse_sse(raw.decode())
    assert len(events) == min(after, 3)
    assert all("finishReason" not in e["response"]["candidates"][0] for e in events)


def test_stall_goes_silent_after_the_first_event(fake: FakeGoogle, at: str) -> None:
    fake.inject(Fault.stall(0.5))
    raw, error, times = stream_raw(fake, at)
    assert error is None and len(parse_sse(raw.decode())) == 3
    assert times[-1] - times[0] >= 0.45


def test_empty_stream(fake: FakeGoogle, at: str) -> None:
    fake.inject(Fault.empty_stream())
    fake.inject(Fault.empty_stream())
    response = rpc(fake, at, "streamGenerateContent", envelope(), query="alt=sse")
    assert response.status_code == 200 and response.text == ""
    assert response.headers["content-type"].startswith("text/event-stream")
    assert rpc(fake, at, "generateContent", envelope()).status_code == 200  # not a stream
    assert rpc(fake, at, "streamGenerateContent", envelope()).json() == []


def test_exhausted_models_answer_429_until_reset(fake: FakeGoogle, acct: Any, at: str) -> None:
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3700))
    fake.set_quota(acct.email, "gemini-3-flash", 0.0, reset)
    fake.set_quota(acct.email, "claude-sonnet-4-6", None)
    error = google_error(rpc(fake, at, "generateContent", envelope()), 429)
    delay = parse_duration(error["details"][0]["metadata"]["quotaResetDelay"])
    assert 3690 < delay <= 3700
    assert rpc(fake, at, "generateContent", envelope(model="claude-sonnet-4-6")).status_code == 429
    fake.enforce_quota = False
    assert rpc(fake, at, "generateContent", envelope()).status_code == 200


# -- state, log, lifecycle -----------------------------------------------------------------------
def test_requests_are_recorded(fake: FakeGoogle, acct: Any, at: str) -> None:
    rpc(
        fake,
        at,
        "streamGenerateContent",
        envelope(),
        query="alt=sse",
        headers={"X-Client-Name": "antigravity"},
    )
    entry = fake.requests[-1]
    assert entry.method == "POST" and entry.path == "/v1internal:streamGenerateContent"
    assert entry.query == {"alt": "sse"} and entry.headers["x-client-name"] == "antigravity"
    assert entry.body["model"] == "gemini-3-flash" and entry.account_email == acct.email
    assert entry.rpc == "streamGenerateContent"
    assert [r.at for r in fake.requests] == sorted(r.at for r in fake.requests)


def test_reset_forgets_faults_scripts_requests_and_switches(
    fake: FakeGoogle, acct: Any, at: str
) -> None:
    fake.inject(Fault.server_error())
    fake.script(parts=[{"text": "scripted"}])
    fake.onboard_fails, fake.consent_email = True, "x@example.com"
    fake.reset()
    assert fake.requests == [] and fake.faults_left() == 0
    assert not fake.onboard_fails and fake.consent_email is None
    assert "echo" in rpc(fake, at, "generateContent", envelope()).text  # token still valid
    assert fake.account(acct.email) is acct


def test_add_account_defaults_and_duplicates(fake: FakeGoogle) -> None:
    acct = fake.add_account(email=email())
    assert acct.refresh_token.startswith("1//fake-") and acct.project == "proj-a"
    assert acct.tier == "free-tier" and acct.access_tokens == []
    with pytest.raises(ValueError):
        fake.add_account(email=acct.email)


def test_concurrent_calls_and_mutations_stay_consistent(fake: FakeGoogle) -> None:
    accounts = [fake.add_account(email=email()) for _ in range(4)]
    errors: list[BaseException] = []

    def worker(account: Any) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                for _ in range(5):
                    grant = client.post(
                        fake.token_url,
                        data={
                            **CLIENT,
                            "grant_type": "refresh_token",
                            "refresh_token": account.refresh_token,
                        },
                    ).json()
                    reply = client.post(
                        f"{fake.v1internal}:generateContent",
                        json=envelope(contents=[user(account.email)]),
                        headers={"Authorization": f"Bearer {grant['access_token']}"},
                    )
                    assert (
                        reply.json()["response"]["candidates"][0]["content"]["parts"][0]["text"]
                        == f"echo: {account.email}"
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(a,)) for a in accounts for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(20):  # the test thread mutates state meanwhile
        fake.add_account(email=email())
        fake.inject(Fault.slow(0.001), method="loadCodeAssist")
        _ = fake.requests
    for thread in threads:
        thread.join()
    assert errors == []
    for account in accounts:
        assert fake.token_refresh_count(account.refresh_token) == 10
        assert len(account.access_tokens) == 10
        assert len(fake.calls("generateContent", email=account.email)) == 10


def test_extra_bases_answer_like_the_first(fake: FakeGoogle, at: str) -> None:
    fake.inject(Fault.server_error(503))
    sandbox, daily = fake.v1internal_at("sandbox"), fake.v1internal_at("daily")
    headers = {"Authorization": f"Bearer {at}"}
    assert (
        http.post(f"{sandbox}:generateContent", json=envelope(), headers=headers).status_code == 503
    )
    assert (
        http.post(f"{daily}:generateContent", json=envelope(), headers=headers).status_code == 200
    )
    assert [r.path for r in fake.calls("generateContent")] == [
        "/sandbox/v1internal:generateContent",
        "/daily/v1internal:generateContent",
    ]


def test_stop_does_not_wait_for_a_stalled_stream() -> None:
    other = FakeGoogle().start()
    acct = other.add_account(email=email())
    at = token(other, acct)
    other.inject(Fault.stall(60))
    first_event = threading.Event()

    def read() -> None:
        try:
            with httpx.stream(
                "POST",
                f"{other.v1internal}:streamGenerateContent?alt=sse",
                json=envelope(),
                headers={"Authorization": f"Bearer {at}"},
                timeout=70,
            ) as response:
                for _ in response.iter_raw():
                    first_event.set()
        except httpx.HTTPError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first_event.wait(5)
    started = time.monotonic()
    other.stop()
    assert time.monotonic() - started < 5
    reader.join(5)
    assert not reader.is_alive()


def test_start_and_stop_a_separate_instance() -> None:
    with FakeGoogle() as other:
        assert http.get(other.base_url + "/__fake__/health").text == "ok"
        assert other.v1internal == other.base_url + "/v1internal"
        assert other.token_url.endswith("/token")
        assert other.userinfo_url.endswith("/oauth2/v2/userinfo")
        assert other.authorize_url.endswith("/o/oauth2/v2/auth")
        url = other.base_url
    with pytest.raises(httpx.ConnectError):
        http.get(url + "/__fake__/health", timeout=1)


@pytest.mark.parametrize(
    ("text", "seconds", "formatted"),
    [
        ("1h2m3.5s", 3723.5, "1h2m3.5s"),
        ("850ms", 0.85, "0.85s"),
        ("3723.5s", 3723.5, "1h2m3.5s"),
        ("2m", 120, "2m0s"),
    ],
)
def test_durations(text: str, seconds: float, formatted: str) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert format_duration(seconds) == formatted
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_schema_keywords_gemini_rejects_are_refused(fake: Any) -> None:
    import httpx as _httpx

    acct = fake.add_account(email="schema-check@example.com")
    token = _httpx.post(
        fake.token_url,
        data={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "refresh_token",
            "refresh_token": acct.refresh_token,
        },
    ).json()["access_token"]

    def call(parameters: dict) -> _httpx.Response:
        return _httpx.post(
            fake.v1internal + ":generateContent",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "project": acct.project,
                "model": "gemini-3-flash",
                "request": {
                    "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                    "tools": [{"functionDeclarations": [{"name": "f", "parameters": parameters}]}],
                },
            },
        )

    assert call({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}).status_code == 200
    refused = call(
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    )
    assert refused.status_code == 400
    assert 'Unknown name "additionalProperties"' in refused.json()["error"]["message"]
    nested = call({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}})
    assert nested.status_code == 400 and "anyOf" in nested.json()["error"]["message"]
    assert call({"type": "object", "properties": {"a": {"type": "whatever"}}}).status_code == 400


def test_google_search_answers_carry_grounding_on_the_final_chunk(
    fake: FakeGoogle, at: str
) -> None:
    body = envelope(contents=[user("who won?")], tools=[{"googleSearch": {}}])
    whole = rpc(fake, at, "generateContent", body).json()["response"]["candidates"][0]
    answer = whole["content"]["parts"][0]["text"]
    grounding = whole["groundingMetadata"]
    assert grounding["webSearchQueries"] == search_queries("who won?")
    assert [c["web"] for c in grounding["groundingChunks"]] == [
        {"uri": search_uri(i), "title": title} for i, title in enumerate(SEARCH_SOURCES)
    ]
    assert grounding["searchEntryPoint"]["renderedContent"]
    for support, (sentence, indices) in zip(
        grounding["groundingSupports"], GROUNDED_SENTENCES, strict=True
    ):
        segment = support["segment"]
        assert answer.encode()[segment["startIndex"] : segment["endIndex"]].decode() == sentence
        assert segment["text"] == sentence and support["groundingChunkIndices"] == indices
    events = parse_sse(rpc(fake, at, "streamGenerateContent", body, query="alt=sse").text)
    candidates = [e["response"]["candidates"][0] for e in events]
    assert [("groundingMetadata" in c) for c in candidates] == [False] * (len(events) - 1) + [True]
    assert candidates[-1]["finishReason"] == "STOP"
    streamed = "".join(p["text"] for c in candidates for p in c["content"]["parts"])
    assert streamed == answer
    plain = rpc(fake, at, "generateContent", envelope()).json()["response"]["candidates"][0]
    assert "groundingMetadata" not in plain
