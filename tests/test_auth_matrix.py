"""Every auth_mode × key form × kind of path, over real HTTP against `agproxy serve`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fake_zai import FakeZai

from conftest import ZAI_ENV, Gateway, spawn_all, stop_all

API_KEY = "sk-matrix-test-key-0123456789abcdef"
WRONG_KEY = "sk-matrix-test-key-0123456789abcdeX"
ADMIN_PASSWORD = "admin-pass-5f2c"

# (label, env) — `auto` is off on loopback and all_except_health with LAN access.
MODES: dict[str, dict[str, str]] = {
    "off": {"AGPROXY_AUTH_MODE": "off"},
    "strict": {"AGPROXY_AUTH_MODE": "strict", "AGPROXY_CORS_ORIGINS": "http://localhost:5173"},
    "all_except_health": {"AGPROXY_AUTH_MODE": "all_except_health"},
    "auto_local": {"AGPROXY_AUTH_MODE": "auto"},
    "auto_lan": {"AGPROXY_AUTH_MODE": "auto", "AGPROXY_ALLOW_LAN_ACCESS": "true"},
    "password": {"AGPROXY_AUTH_MODE": "strict", "AGPROXY_ADMIN_PASSWORD": ADMIN_PASSWORD},
}

# (method, path, zone, protocol of its error bodies)
PATHS = [
    ("GET", "/healthz", "health", "openai"),
    ("GET", "/v1/models", "ai", "openai"),
    ("GET", "/v1beta/models", "ai", "google"),
    ("POST", "/v1/messages", "ai", "anthropic"),
    ("GET", "/api/proxy/status", "admin", "openai"),
]

FORMS = ["none", "bearer", "bare", "x-api-key", "x-goog-api-key", "query", "wrong"]


def request_parts(form: str, secret: str) -> tuple[dict[str, str], dict[str, str]]:
    return {
        "none": ({}, {}),
        "bearer": ({"Authorization": f"Bearer {secret}"}, {}),
        "bare": ({"Authorization": secret}, {}),
        "x-api-key": ({"x-api-key": secret}, {}),
        "x-goog-api-key": ({"x-goog-api-key": secret}, {}),
        "query": ({}, {"key": secret}),
        "wrong": ({"Authorization": f"Bearer {WRONG_KEY}"}, {}),
    }[form]


def needs_key(mode: str, zone: str) -> bool:
    if zone == "admin":
        return True
    return {
        "off": False,
        "auto_local": False,
        "strict": True,
        "password": True,
        "all_except_health": zone != "health",
        "auto_lan": zone != "health",
    }[mode]


def accepted(form: str, path: str, zone: str) -> bool:
    if form in ("none", "wrong"):
        return False
    if form == "query":
        return zone != "admin" and path.startswith("/v1beta/")
    return True


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway]]:
    """One gateway per mode; /v1/messages goes to a fake z.ai, so an admitted request is
    answered at once (not after retries against an address that cannot be reached)."""
    zai = FakeZai().start()
    zai_env = {**ZAI_ENV, "AGPROXY_ZAI_BASE_URL": zai.base_url}
    started = spawn_all(
        {
            mode: (tmp_path_factory.mktemp(mode), {"AGPROXY_API_KEY": API_KEY, **zai_env, **env})
            for mode, env in MODES.items()
        }
    )
    yield started
    stop_all(list(started.values()))
    zai.stop()


def assert_error_shape(protocol: str, body: dict[str, Any], status: int) -> None:
    if protocol == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == {401: "authentication_error"}[status]
        assert body["error"]["message"]
    elif protocol == "google":
        assert body["error"]["code"] == status
        assert body["error"]["status"] == {401: "UNAUTHENTICATED"}[status]
        assert body["error"]["message"]
    else:
        assert set(body["error"]) >= {"message", "type", "code"}
        assert body["error"]["message"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("method", "path", "zone", "protocol"), PATHS)
@pytest.mark.parametrize("mode", list(MODES))
def test_auth_matrix(
    gateways: dict[str, Gateway],
    mode: str,
    method: str,
    path: str,
    zone: str,
    protocol: str,
    form: str,
) -> None:
    gw = gateways[mode]
    secret = ADMIN_PASSWORD if (mode == "password" and zone == "admin") else API_KEY
    headers, params = request_parts(form, secret)
    kwargs: dict[str, Any] = {"headers": headers, "params": params, "timeout": 10}
    if method == "POST":
        kwargs["json"] = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
    response = httpx.request(method, gw.base_url + path, **kwargs)

    if needs_key(mode, zone) and not accepted(form, path, zone):
        assert response.status_code == 401, response.text
        body = response.json()
        assert_error_shape(protocol, body, 401)
        # The key sent is never echoed back.
        assert API_KEY not in response.text and WRONG_KEY not in response.text
    else:
        assert response.status_code != 401, response.text
        assert response.status_code == 200, response.text


def test_api_key_is_not_the_admin_password_when_one_is_set(gateways: dict[str, Gateway]) -> None:
    gw = gateways["password"]
    refused = httpx.get(
        gw.base_url + "/api/proxy/status", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert refused.status_code == 401
    assert "admin password" in refused.json()["error"]["message"]
    # …while the api key still opens the AI routes.
    assert httpx.get(gw.base_url + "/v1/models", headers={"x-api-key": API_KEY}).status_code == 200


def test_auto_mode_reports_its_effective_mode_by_lan_access(gateways: dict[str, Gateway]) -> None:
    local = gateways["auto_local"].admin("GET", "/api/proxy/status").json()
    lan = gateways["auto_lan"].admin("GET", "/api/proxy/status").json()
    assert (local["host"], lan["host"]) == ("127.0.0.1", "0.0.0.0")


def test_cors_preflight_passes_without_a_key(gateways: dict[str, Gateway]) -> None:
    gw = gateways["strict"]  # cors_origins = http://localhost:5173
    response = httpx.options(
        gw.base_url + "/v1/chat/completions",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    # A real cross-origin request carries the CORS header on its answer too.
    answer = httpx.get(
        gw.base_url + "/v1/models",
        headers={"Origin": "http://localhost:5173", "x-api-key": API_KEY},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "http://localhost:5173"
    # Another page's origin is refused outright, preflight or not.
    other = httpx.get(
        gw.base_url + "/v1/models",
        headers={"Origin": "http://localhost:18990", "x-api-key": API_KEY},
    )
    assert other.status_code == 403
    assert "cors_origins" in other.json()["error"]["message"]
    assert "access-control-allow-origin" not in other.headers
