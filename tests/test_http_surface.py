"""Admin config API, 404 hints and error formats, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conftest import ZAI_ENV, Gateway, spawn

KEY_RULE = 'api_key must start with "sk-" and be at least 10 characters long'


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = spawn(
        tmp_path_factory.mktemp("surface"), config={"admin_password": "pw-1234567890"}, **ZAI_ENV
    )
    yield gateway
    gateway.stop()


@pytest.mark.parametrize(
    ("method", "path", "expected_in_message"),
    [
        ("POST", "/v1/v1/chat/completions", "the endpoint is /v1/chat/completions"),
        ("GET", "/v1/v1/models", "the endpoint is /v1/models"),
        (
            "POST",
            "/v1/chat/completions/responses",
            "'/v1/chat/completions' has '/responses' appended",
        ),
        (
            "POST",
            "/chat/completions",
            "the '/v1' prefix is missing; the endpoint is /v1/chat/completions",
        ),
        ("GET", "/models", "the endpoint is /v1/models"),
        ("POST", "/messages", "the endpoint is /v1/messages"),
        (
            "POST",
            "/v1/v1beta/models/gemini-3-flash:generateContent",
            "the endpoint is /v1beta/models/gemini-3-flash:generateContent",
        ),
    ],
)
def test_404_names_the_likely_mistake(
    gw: Gateway, method: str, path: str, expected_in_message: str
) -> None:
    response = httpx.request(method, gw.base_url + path, json={})
    assert response.status_code == 404
    assert expected_in_message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/nope", "openai"),
        ("/v1beta/nope", "google"),
        ("/v1/messages/nope", "anthropic"),
    ],
)
def test_404_body_is_in_the_paths_protocol(gw: Gateway, path: str, shape: str) -> None:
    body = httpx.post(gw.base_url + path, json={}).json()
    if shape == "openai":
        assert body["error"]["code"] == "not_found" and "no route" in body["error"]["message"]
    elif shape == "google":
        assert body["error"]["status"] == "NOT_FOUND" and body["error"]["code"] == 404
    else:
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


def test_wrong_method_is_405_with_a_message(gw: Gateway) -> None:
    response = httpx.post(gw.base_url + "/v1/models", json={})
    assert response.status_code == 405
    assert "POST is not allowed on /v1/models" in response.json()["error"]["message"]


def test_config_read_masks_secrets(gw: Gateway) -> None:
    response = gw.admin("GET", "/api/config")
    assert response.status_code == 200
    body = response.json()
    text = response.text
    assert (
        gw.api_key not in text
        and "pw-1234567890" not in text
        and ZAI_ENV["AGPROXY_ZAI_API_KEY"] not in text
    )
    assert body["config"]["api_key"].endswith(gw.api_key[-4:])
    assert body["config"]["port"] == gw.port
    assert sorted(body["env_overrides"]) == ["zai_api_key", "zai_dispatch_mode"]
    assert body["path"].endswith("config.json")


@pytest.mark.parametrize(
    ("changes", "param", "message"),
    [
        ({"api_key": "abc"}, "api_key", KEY_RULE),
        ({"api_key": "pk-0123456789"}, "api_key", KEY_RULE),
        ({"api_key": "sk-123"}, "api_key", KEY_RULE),
        ({"port": 0}, "port", "port must be between 1 and 65535"),
        ({"auth_mode": "sometimes"}, "auth_mode", "auth_mode"),
        ({"no_such_key": 1}, "no_such_key", "unknown config key 'no_such_key'"),
        ({"port": 9999, "api_key": "bad"}, "api_key", KEY_RULE),  # nothing half-applied
    ],
)
def test_refused_config_leaves_the_file_byte_identical(
    gw: Gateway, changes: dict, param: str, message: str
) -> None:
    before = (gw.data_dir / "config.json").read_bytes()
    response = gw.admin("PUT", "/api/config", json=changes)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert message in error["message"]
    assert (gw.data_dir / "config.json").read_bytes() == before


def test_env_overridden_key_cannot_be_saved(gw: Gateway) -> None:
    response = gw.admin("PUT", "/api/config", json={"zai_dispatch_mode": "pooled"})
    assert response.status_code == 409
    assert "AGPROXY_ZAI_DISPATCH_MODE" in response.json()["error"]["message"]


def test_bad_json_body_is_a_400(gw: Gateway) -> None:
    response = gw.admin(
        "PUT", "/api/config", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_new_api_key_takes_effect_at_once(gw: Gateway) -> None:
    old = gw.api_key
    gw.admin("PUT", "/api/config", json={"auth_mode": "strict"})
    try:
        new = gw.admin("POST", "/api/proxy/api-key/generate").json()["api_key"]
        assert new != old and new.startswith("sk-") and len(new) == 35
        assert gw.config_file()["api_key"] == new
        assert gw.admin("GET", "/api/proxy/api-key").json() == {"api_key": new}
        assert gw.get("/v1/models", headers={"x-api-key": old}).status_code == 401
        assert gw.get("/v1/models", headers={"x-api-key": new}).status_code == 200
        valid = "sk-valid-user-key-42"
        assert gw.admin("PUT", "/api/config", json={"api_key": valid}).status_code == 200
        assert gw.get("/healthz", headers={"Authorization": f"Bearer {valid}"}).status_code == 200
        assert gw.get("/healthz").status_code == 401
    finally:
        gw.admin("PUT", "/api/config", json={"auth_mode": None})


def test_masked_secret_sent_back_is_left_alone(gw: Gateway) -> None:
    view = gw.admin("GET", "/api/config").json()["config"]
    key_before = gw.api_key
    response = gw.admin("PUT", "/api/config", json={"api_key": view["api_key"], "port": gw.port})
    assert response.status_code == 200
    assert gw.api_key == key_before


def test_console_index_is_served_without_auth(gw: Gateway) -> None:
    response = gw.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/console/main.js" in response.text
    assert gw.get("/console/main.js").status_code == 200
    # The console page itself holds no secret.
    assert gw.api_key not in response.text
