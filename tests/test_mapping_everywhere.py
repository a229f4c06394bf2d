"""One mapping rule, every protocol: the user's alias routes the same way wherever a model
is named (generate, stream, countTokens, and GET of the model), through the official SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai

from conftest import Gateway, add_accounts, google_env, spawn

ALIAS, TARGET = "my-alias", "gemini-3-flash"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway with one account and the alias rule; the tests only send requests."""
    gw = spawn(tmp_path_factory.mktemp("mapping") / "gw", **google_env(fake_google_server))
    add_accounts(gw, fake_google_server, 1)
    rules = gw.admin("PUT", "/api/config", json={"model_mapping": {ALIAS: TARGET}})
    assert rules.status_code == 200
    yield gw
    gw.stop()


@pytest.fixture
def gw(gateway: Gateway, fake_google: Any) -> Gateway:
    """The module's gateway, with the fake's request log cleared."""
    return gateway


def models_sent(fake: Any) -> list[str]:
    # countTokens names the model inside its request ("models/<id>").
    return [
        str(c.body.get("model") or c.body.get("request", {}).get("model"))
        for c in fake.requests
        if c.rpc in ("generateContent", "streamGenerateContent", "countTokens")
        and isinstance(c.body, dict)
    ]


def test_the_alias_routes_on_the_gemini_native_routes(gw: Gateway, fake_google: Any) -> None:
    for version in ("v1beta", "v1"):
        client = genai.Client(
            api_key=gw.api_key, http_options={"base_url": gw.base_url, "api_version": version}
        )
        assert client.models.generate_content(model=ALIAS, contents="Hello").text
        assert "".join(
            c.text or ""
            for c in client.models.generate_content_stream(model=ALIAS, contents="Hello")
        )
        assert client.models.count_tokens(model=ALIAS, contents="Hello").total_tokens
        assert client.models.get(model=ALIAS).name == f"models/{ALIAS}"
    sent = models_sent(fake_google)
    assert sent and all(TARGET in model for model in sent), sent


def test_the_alias_routes_on_openai_and_anthropic(gw: Gateway, fake_google: Any) -> None:
    chat = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1")
    messages: Any = [{"role": "user", "content": "Hello"}]
    assert chat.chat.completions.create(model=ALIAS, messages=messages).choices[0].message.content
    assert "".join(
        c.choices[0].delta.content or ""
        for c in chat.chat.completions.create(model=ALIAS, messages=messages, stream=True)
        if c.choices
    )
    assert chat.models.retrieve(ALIAS).id == ALIAS
    claude = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url)
    assert claude.messages.create(model=ALIAS, max_tokens=50, messages=messages).content
    with claude.messages.stream(model=ALIAS, max_tokens=50, messages=messages) as stream:
        assert stream.get_final_text()
    assert claude.messages.count_tokens(model=ALIAS, messages=messages).input_tokens > 0
    sent = models_sent(fake_google)
    assert len(sent) >= 4 and all(TARGET in model for model in sent), sent


def test_an_unknown_alias_is_404_on_every_protocol(gw: Gateway) -> None:
    client = genai.Client(api_key=gw.api_key, http_options={"base_url": gw.base_url})
    with pytest.raises(genai.errors.ClientError) as caught:
        client.models.generate_content(model="not-mapped-anywhere", contents="Hello")
    assert caught.value.code == 404
    with pytest.raises(genai.errors.ClientError):
        client.models.get(model="not-mapped-anywhere")
    chat = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1")
    with pytest.raises(openai.NotFoundError):
        chat.chat.completions.create(
            model="not-mapped-anywhere", messages=[{"role": "user", "content": "Hello"}]
        )
