"""Every client protocol against every provider kind, through the official SDKs: nine
pairs, each streamed and not, each calling a tool and then answering with its result.

The gateway has no Google account: three providers (fakes of an OpenAI-compatible
server, the Anthropic API and the Gemini API with a key) serve alone. Where the client's
protocol is the provider's, the request goes through as the client sent it (but for its
model); elsewhere it is translated, and the fakes refuse what their API would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from fake_providers import (
    ANTHROPIC_KEY,
    GEMINI_KEY,
    OPENAI_KEY,
    FakeAnthropic,
    FakeGeminiKey,
    FakeOpenAI,
)
from google import genai
from google.genai import types

from conftest import Gateway, spawn

# The alias each provider serves its model under (the Gemini SDK cannot put a `/` in a
# model's name; the prefix form is tested on its own below).
ALIASES = {"openai": "gpt-alias", "anthropic": "claude-alias", "gemini": "gem-alias"}
UPSTREAM_IDS = {"openai": "fake-gpt", "anthropic": "claude-fake-1", "gemini": "gemini-fake-pro"}
TOOL_RESULT = "sunny, 21 degrees"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    servers = {
        "openai": FakeOpenAI().start(),
        "anthropic": FakeAnthropic().start(),
        "gemini": FakeGeminiKey().start(),
    }
    yield servers
    for server in servers.values():
        server.stop()


def providers_setting(fakes: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = {
        "openai": "openai_compatible",
        "anthropic": "anthropic_api_key",
        "gemini": "gemini_api_key",
    }
    keys = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY, "gemini": GEMINI_KEY}
    return [
        {
            "name": name,
            "kind": kinds[name],
            "base_url": fakes[name].base_url,
            "keys": [{"key": keys[name], "name": f"{name}-main"}],
            "models": [{"id": UPSTREAM_IDS[name], "aliases": [ALIASES[name]]}],
        }
        for name in ("openai", "anthropic", "gemini")
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, Any]) -> Iterator[Gateway]:
    gw = spawn(
        tmp_path_factory.mktemp("matrix") / "gw",
        AGPROXY_PROVIDERS=json.dumps(providers_setting(fakes)),
    )
    yield gw
    gw.stop()


@pytest.fixture
def fresh(fakes: dict[str, Any]) -> dict[str, Any]:
    for server in fakes.values():
        server.reset()
    return fakes


# -- the three clients, each asking twice: the tool call, then the answer ------------------


def openai_client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.api_key, max_retries=0)


def ask_openai(gw: Gateway, model: str, stream: bool) -> tuple[dict[str, Any], str]:
    client = openai_client(gw)
    tools: Any = [{"type": "function", "function": WEATHER}]
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    call = _openai_turn(client, model, messages, tools, stream)["tool_calls"][0]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT},
    ]
    answer = _openai_turn(client, model, messages, tools, stream)
    return {"name": call["function"]["name"], "args": json.loads(call["function"]["arguments"])}, (
        answer["content"]
    )


def _openai_turn(
    client: openai.OpenAI, model: str, messages: Any, tools: Any, stream: bool
) -> dict[str, Any]:
    if not stream:
        message = client.chat.completions.create(model=model, messages=messages, tools=tools)
        return message.choices[0].message.model_dump()
    content, calls = "", {}
    for chunk in client.chat.completions.create(
        model=model, messages=messages, tools=tools, stream=True
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for piece in delta.tool_calls or []:
            call = calls.setdefault(
                piece.index,
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            call["id"] = piece.id or call["id"]
            if piece.function:
                call["function"]["name"] += piece.function.name or ""
                call["function"]["arguments"] += piece.function.arguments or ""
    return {"content": content, "tool_calls": [calls[i] for i in sorted(calls)]}


def ask_anthropic(gw: Gateway, model: str, stream: bool) -> tuple[dict[str, Any], str]:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.api_key, max_retries=0)
    tools: Any = [
        {
            "name": WEATHER["name"],
            "description": WEATHER["description"],
            "input_schema": WEATHER["parameters"],
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    def turn() -> Any:
        if not stream:
            return client.messages.create(
                model=model, max_tokens=256, messages=messages, tools=tools
            )
        with client.messages.stream(
            model=model, max_tokens=256, messages=messages, tools=tools
        ) as events:
            return events.get_final_message()

    first = turn()
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use"
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}],
        },
    ]
    second = turn()
    text = "".join(b.text for b in second.content if b.type == "text")
    return {"name": use.name, "args": use.input}, text


def ask_gemini(gw: Gateway, model: str, stream: bool) -> tuple[dict[str, Any], str]:
    client = genai.Client(
        api_key=gw.api_key,
        http_options=types.HttpOptions(base_url=gw.base_url, api_version="v1beta"),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(**WEATHER)])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    contents: list[Any] = [
        types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
    ]

    def turn() -> list[types.Part]:
        if not stream:
            answer = client.models.generate_content(model=model, contents=contents, config=config)
            return list(answer.candidates[0].content.parts)  # type: ignore[index, union-attr, arg-type]
        parts: list[types.Part] = []
        for chunk in client.models.generate_content_stream(
            model=model, contents=contents, config=config
        ):
            for candidate in chunk.candidates or []:
                parts.extend((candidate.content.parts if candidate.content else None) or [])
        return parts

    first = turn()
    call = next(p.function_call for p in first if p.function_call)
    assert call is not None
    contents += [
        types.Content(role="model", parts=[types.Part(function_call=call)]),
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(
                        name=call.name, response={"result": TOOL_RESULT}, id=call.id
                    )
                )
            ],
        ),
    ]
    text = "".join(p.text or "" for p in turn() if not p.thought)
    return {"name": call.name, "args": dict(call.args or {})}, text


ASK = {"openai": ask_openai, "anthropic": ask_anthropic, "gemini": ask_gemini}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("client", ["openai", "anthropic", "gemini"])
def test_each_protocol_reaches_each_provider_with_a_tool_call(
    gateway: Gateway, fresh: dict[str, Any], client: str, provider: str, stream: bool
) -> None:
    call, text = ASK[client](gateway, ALIASES[provider], stream)
    assert call == {"name": "get_weather", "args": {"city": "Paris"}}
    assert text == f"the tool said: {TOOL_RESULT}"
    upstream = fresh[provider]
    asked = [r for r in upstream.requests if r["body"] is not None]
    assert len(asked) == 2, [r["path"] for r in upstream.requests]
    for other in set(fresh) - {provider}:
        assert not fresh[other].requests  # nobody else was asked
    first = asked[0]
    if client == provider and provider != "gemini":
        assert first["body"]["model"] == UPSTREAM_IDS[provider]  # forwarded, model mapped
    if client == provider:  # passed through: the client's own fields reach the provider
        assert first["headers"].get("user-agent", "") != ""
    sent_model = first["body"].get("model") if provider != "gemini" else first["path"]
    assert UPSTREAM_IDS[provider] in str(sent_model)
    if client == provider == "anthropic":
        assert first["body"]["max_tokens"] == 256  # the client's value, untouched


def test_the_monitor_names_the_provider_and_the_key(
    gateway: Gateway, fresh: dict[str, Any]
) -> None:
    assert gateway.admin("POST", "/api/logs/clear").status_code == 200
    ask_openai(gateway, ALIASES["anthropic"], stream=False)
    logs = gateway.admin("GET", "/api/logs").json()["logs"]
    record = next(r for r in logs if r.get("protocol") == "openai")
    assert record["provider"] == "anthropic"
    assert record["account"] == "anthropic-main"
    assert record["attempts"][-1]["outcome"] == "ok"
    assert record["routed_model"] == ALIASES["anthropic"]  # the name the gateway routed


def test_a_provider_prefix_names_any_listed_model(gateway: Gateway, fresh: dict[str, Any]) -> None:
    call, text = ask_openai(gateway, "anthropic/claude-fake-1", stream=False)
    assert call["name"] == "get_weather" and text.startswith("the tool said:")
    assert fresh["anthropic"].requests


def test_provider_models_are_listed(gateway: Gateway) -> None:
    listed = {m.id for m in openai_client(gateway).models.list()}
    assert {"gpt-alias", "openai/fake-gpt", "anthropic/claude-fake-1", "gem-alias"} <= listed
    native = gateway.get("/v1beta/models").json()
    names = {m["name"] for m in native["models"]}
    assert "models/gem-alias" in names


def test_an_unknown_model_of_a_provider_is_a_404_in_the_clients_terms(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client(gateway).chat.completions.create(
            model="openai/not-listed", messages=[{"role": "user", "content": "hi"}]
        )


def test_no_secret_of_a_provider_reaches_the_config_view_or_the_log(
    gateway: Gateway, tmp_path: Path
) -> None:
    view = gateway.admin("GET", "/api/config").text
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY):
        assert secret not in view
        assert secret not in gateway.log()


def test_count_tokens_of_an_anthropic_provider_is_its_own_count(
    gateway: Gateway, fresh: dict[str, Any]
) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    counted = client.messages.count_tokens(
        model=ALIASES["anthropic"], messages=[{"role": "user", "content": "hello there"}]
    )
    asked = [r for r in fresh["anthropic"].requests if r["path"].endswith("/count_tokens")]
    assert len(asked) == 1 and asked[0]["body"]["model"] == UPSTREAM_IDS["anthropic"]
    assert counted.input_tokens == 8  # the fake's count (7 + one message), not an estimate


def test_a_mapping_rule_may_target_a_provider_model(
    gateway: Gateway, fresh: dict[str, Any]
) -> None:
    saved = gateway.admin(
        "PUT", "/api/config", json={"model_mapping": {"team-default": "gemini/gemini-fake-pro"}}
    )
    assert saved.status_code == 200, saved.text
    try:
        answer = openai_client(gateway).chat.completions.create(
            model="team-default", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content == "gemini answered gemini-fake-pro: hello"
        assert (
            fresh["gemini"].requests[-1]["path"].endswith("/gemini-fake-pro:streamGenerateContent")
        )
    finally:
        gateway.admin("PUT", "/api/config", json={"model_mapping": None})
