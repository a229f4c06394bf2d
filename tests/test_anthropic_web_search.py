"""Anthropic's web search server tool through the gateway (Google Search grounding), with
the official `anthropic` SDK against the fake upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from fake_google import GROUNDED_SENTENCES, SEARCH_SOURCES, Fault, search_queries, search_uri

from conftest import Gateway, add_accounts, google_env, spawn

MODEL = "claude-sonnet-4-6"
WEB_SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    gateway = spawn(tmp_path_factory.mktemp("web-search"), **google_env(fake_google_server))
    add_accounts(gateway, fake_google_server, prefix="search")
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw: Gateway, fake_google: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)


def generate_calls(fake: Any) -> list[dict[str, Any]]:
    return [
        r.body["request"]
        for r in fake.requests
        if r.rpc in ("streamGenerateContent", "generateContent")
    ]


def never_mixed(fake: Any) -> None:
    """No call offered Google Search next to function declarations (the backend refuses)."""
    for request in generate_calls(fake):
        kinds = {key for tool in request.get("tools") or [] for key in tool}
        assert not {"googleSearch", "functionDeclarations"} <= kinds, kinds


def expected_results() -> list[dict[str, Any]]:
    return [{"url": search_uri(i), "title": t} for i, t in enumerate(SEARCH_SOURCES)]


def check_grounded(message: Any, question: str) -> None:
    """The answer to a search-only request: a server_tool_use and a web_search_tool_result
    per query, then the text, the sentences grounding supports carrying their citations."""
    kinds = [b.type for b in message.content]
    queries = search_queries(question)
    assert kinds[: 2 * len(queries)] == ["server_tool_use", "web_search_tool_result"] * len(queries)
    assert set(kinds[2 * len(queries) :]) == {"text"}
    uses, results = message.content[0 : 2 * len(queries) : 2], message.content[1::2]
    assert [u.input for u in uses] == [{"query": q} for q in queries]
    assert all(u.id.startswith("srvtoolu_") and u.name == "web_search" for u in uses)
    assert [r.tool_use_id for r in results[: len(uses)]] == [u.id for u in uses]
    first = results[0].content
    assert [{"url": r.url, "title": r.title} for r in first] == expected_results()
    assert all(r.type == "web_search_result" and r.encrypted_content for r in first)
    texts = [b for b in message.content if b.type == "text"]
    assert "".join(t.text for t in texts) == f"echo: {question}\n" + " ".join(
        s for s, _ in GROUNDED_SENTENCES
    )
    cited = [(t.text, t.citations) for t in texts if t.citations]
    assert [said for said, _ in cited] == [s for s, _ in GROUNDED_SENTENCES]
    for (said, citations), (_, indices) in zip(cited, GROUNDED_SENTENCES, strict=True):
        assert [c.url for c in citations] == [search_uri(i) for i in indices]
        assert [c.title for c in citations] == [SEARCH_SOURCES[i] for i in indices]
        assert all(c.type == "web_search_result_location" for c in citations)
        assert all(c.cited_text == said and c.encrypted_index for c in citations)
    assert message.usage.server_tool_use.web_search_requests == len(queries)
    assert message.stop_reason == "end_turn"


def test_search_alone_becomes_google_search_grounding(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[
            {
                **WEB_SEARCH,
                "blocked_domains": ["blocked.example"],
                "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
            }
        ],
        messages=[{"role": "user", "content": "Who won the match?"}],
    )
    check_grounded(message, "Who won the match?")
    (request,) = generate_calls(fake_google)
    assert request["tools"] == [{"googleSearch": {}}] and "toolConfig" not in request
    system = request["systemInstruction"]["parts"][-1]["text"]
    assert "blocked.example" in system and "Paris, FR" in system
    never_mixed(fake_google)


def test_allowed_domains_filter_results_and_citations(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[{**WEB_SEARCH, "allowed_domains": ["example.org"]}],
        messages=[{"role": "user", "content": "news"}],
    )
    results = [b for b in message.content if b.type == "web_search_tool_result"][0]
    assert [r.title for r in results.content] == ["example.org"]  # type: ignore[union-attr]
    citations = [c for b in message.content if b.type == "text" for c in b.citations or []]
    assert {c.title for c in citations} == {"example.org"}


def test_streamed_search_blocks_come_before_the_cited_text(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEB_SEARCH],
        messages=[{"role": "user", "content": "Latest release?"}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.content[0].type == "thinking"
    final.content = final.content[1:]
    check_grounded(final, "Latest release?")
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts[:5] == ["thinking"] + ["server_tool_use", "web_search_tool_result"] * 2
    deltas = [
        (e.index, e.delta.type)
        for e in events
        if e.type == "content_block_delta" and e.delta.type != "signature_delta"
    ]
    assert (1, "input_json_delta") in deltas and (3, "input_json_delta") in deltas
    cited = {i for i, kind in deltas if kind == "citations_delta"}
    assert cited and all((i, "text_delta") in deltas for i in cited)
    # Each block is started, then stopped, before the next starts.
    open_blocks: list[int] = []
    for event in events:
        if event.type == "content_block_start":
            assert not open_blocks
            open_blocks.append(event.index)
        elif event.type == "content_block_stop":
            assert open_blocks == [event.index]
            open_blocks.clear()
    delta = [e for e in events if e.type == "message_delta"][0]
    assert delta.usage.server_tool_use.web_search_requests == 2  # type: ignore[union-attr]


def test_claude_code_web_search_side_request(gw: Gateway, fake_google: Any) -> None:
    """Claude Code's WebSearch tool: a streamed side request whose only tool is
    web_search_20250305 (max_uses 8), with its own system prompt; it counts the
    web_search_tool_result blocks ("Did N searches") and reads their titles and urls."""
    query = "Perform a web search for the query: python 3.14 release date"
    body = {
        "model": MODEL,
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "You are an assistant for performing a web search tool use"},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": query}]}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
        "metadata": {"user_id": "user_abc_account__session_1"},
    }
    headers = {
        "x-api-key": gw.api_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    }
    with httpx.stream(
        "POST", gw.base_url + "/v1/messages?beta=true", headers=headers, json=body, timeout=30
    ) as response:
        assert response.status_code == 200
        data = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in data if e["type"] != "ping"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    blocks = [e["content_block"] for e in data if e["type"] == "content_block_start"]
    results = [b for b in blocks if b["type"] == "web_search_tool_result"]
    assert len(results) == 2  # "Did 2 searches"
    assert [{"url": r["url"], "title": r["title"]} for r in results[0]["content"]] == (
        expected_results()
    )
    assert data[-2]["usage"]["server_tool_use"]["web_search_requests"] == 2
    (request,) = generate_calls(fake_google)
    assert request["tools"] == [{"googleSearch": {}}]
    assert "web search tool use" in request["systemInstruction"]["parts"][0]["text"]


def test_with_a_client_tool_the_gateway_runs_the_search(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    fake_google.script(
        parts=[
            {"text": "Let me look that up."},
            {"functionCall": {"name": "web_search", "args": {"query": "paris weather news"}}},
        ]
    )
    message = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[WEATHER, WEB_SEARCH],
        messages=[{"role": "user", "content": "Any weather news from Paris?"}],
    )
    kinds = [b.type for b in message.content]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "text"]
    use, result = message.content[1], message.content[2]
    assert use.input == {"query": "paris weather news"} and use.id.startswith("srvtoolu_")  # type: ignore[union-attr]
    assert result.tool_use_id == use.id  # type: ignore[union-attr]
    assert [{"url": r.url, "title": r.title} for r in result.content] == expected_results()  # type: ignore[union-attr]
    assert message.content[3].text == "echo: [functionResponse web_search]"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.server_tool_use.web_search_requests == 1  # type: ignore[union-attr]
    first, search, second = generate_calls(fake_google)
    names = [d["name"] for d in first["tools"][0]["functionDeclarations"]]
    assert names == ["get_weather", "web_search"]
    assert search["tools"] == [{"googleSearch": {}}]
    assert search["contents"] == [{"role": "user", "parts": [{"text": "paris weather news"}]}]
    call, response = second["contents"][-2:]
    assert call["role"] == "model" and call["parts"][-1]["functionCall"]["id"] == use.id  # type: ignore[union-attr]
    answer = response["parts"][0]["functionResponse"]
    assert answer["name"] == "web_search" and answer["id"] == use.id  # type: ignore[union-attr]
    assert search_uri(0) in answer["response"]["result"]
    assert GROUNDED_SENTENCES[0][0] in answer["response"]["result"]
    assert message.usage.input_tokens > 0
    never_mixed(fake_google)


def test_with_a_client_tool_streamed(client: anthropic.Anthropic, fake_google: Any) -> None:
    fake_google.script(parts=[{"functionCall": {"name": "web_search", "args": {"query": "q1"}}}])
    with client.messages.stream(
        model=MODEL,
        max_tokens=1024,
        tools=[WEATHER, WEB_SEARCH],
        tool_choice={"type": "tool", "name": "web_search"},
        messages=[{"role": "user", "content": "search please"}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert final.content[0].input == {"query": "q1"}  # type: ignore[union-attr]
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["server_tool_use", "web_search_tool_result", "text"]
    assert final.usage.server_tool_use.web_search_requests == 1  # type: ignore[union-attr]
    first, _, second = generate_calls(fake_google)
    assert first["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY",
        "allowedFunctionNames": ["web_search"],
    }
    assert second["toolConfig"]["functionCallingConfig"] == {"mode": "AUTO"}  # forced once
    never_mixed(fake_google)


def test_a_client_tool_may_not_share_the_search_tool_name(gw: Gateway) -> None:
    response = httpx.post(
        gw.base_url + "/v1/messages",
        headers={"x-api-key": gw.api_key},
        json={
            "model": MODEL,
            "max_tokens": 64,
            "tools": [{**WEATHER, "name": "web_search"}, WEB_SEARCH],
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    )
    assert response.status_code == 400 and "unique" in response.json()["error"]["message"]


def test_with_a_client_tool_the_model_may_call_it(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    fake_google.script(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}])
    message = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[WEB_SEARCH, WEATHER],
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert [b.type for b in message.content] == ["tool_use"]
    assert message.content[0].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert message.usage.server_tool_use.web_search_requests == 0  # type: ignore[union-attr]
    (request,) = generate_calls(fake_google)
    names = [d["name"] for d in request["tools"][0]["functionDeclarations"]]
    assert names == ["get_weather", "web_search"]
    never_mixed(fake_google)


def test_searches_past_max_uses_are_refused(client: anthropic.Anthropic, fake_google: Any) -> None:
    call = {"functionCall": {"name": "web_search", "args": {"query": "again"}}}
    fake_google.script(parts=[call, dict(call)])  # two searches in one step, max_uses 1
    message = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[WEATHER, {**WEB_SEARCH, "max_uses": 1}],
        messages=[{"role": "user", "content": "search twice"}],
    )
    results = [b for b in message.content if b.type == "web_search_tool_result"]
    assert isinstance(results[0].content, list)
    assert results[1].content.error_code == "max_uses_exceeded"  # type: ignore[union-attr]
    assert message.usage.server_tool_use.web_search_requests == 2  # type: ignore[union-attr]
    assert len([r for r in generate_calls(fake_google) if "googleSearch" in str(r)]) == 1


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
        {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
        {"type": "computer_toolset_20260801"},
    ],
)
def test_other_server_tools_are_refused(gw: Gateway, tool: dict[str, Any]) -> None:
    response = httpx.post(
        gw.base_url + "/v1/messages",
        headers={"x-api-key": gw.api_key, "anthropic-version": "2023-06-01"},
        json={
            "model": MODEL,
            "max_tokens": 64,
            "tools": [WEATHER, tool],
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert tool["type"] in body["error"]["message"] and "tools[1]" in body["error"]["message"]


def test_anthropic_defined_client_tools_become_declarations(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        ],
        messages=[{"role": "user", "content": "hi"}],
    )
    (request,) = generate_calls(fake_google)
    declared = {d["name"]: d for d in request["tools"][0]["functionDeclarations"]}
    assert set(declared) == {"bash", "str_replace_based_edit_tool"}
    assert "command" in declared["bash"]["parameters"]["properties"]
    assert declared["str_replace_based_edit_tool"]["parameters"]["required"] == ["command", "path"]


def test_history_with_search_blocks_is_accepted(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    first = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[WEB_SEARCH],
        messages=[{"role": "user", "content": "What is new?"}],
    )
    history: Any = [
        {"role": "user", "content": "What is new?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "Tell me more."},
    ]
    second = client.messages.create(
        model=MODEL, max_tokens=1024, tools=[WEB_SEARCH, WEATHER], messages=history
    )
    assert second.content[-1].type == "text"
    model_turn = generate_calls(fake_google)[-1]["contents"][1]
    said = "\n".join(p["text"] for p in model_turn["parts"])
    assert f"[web_search: {search_queries('What is new?')[0]}]" in said
    assert search_uri(0) in said and GROUNDED_SENTENCES[0][0] in said
    # An error result and a citation-carrying text block from another client also pass.
    history[1]["content"] = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"},
        },
        {
            "type": "text",
            "text": "Cited.",
            "citations": [
                {
                    "type": "web_search_result_location",
                    "url": "https://a.example",
                    "title": "A",
                    "encrypted_index": "x",
                    "cited_text": "Cited.",
                }
            ],
        },
    ]
    third = client.messages.create(model=MODEL, max_tokens=64, messages=history)
    assert third.content[-1].type == "text"
    said = str(generate_calls(fake_google)[-1]["contents"][1])
    assert "Web search failed: unavailable" in said and "Cited." in said


def test_a_failed_search_is_an_error_result_and_the_model_goes_on(
    client: anthropic.Anthropic, fake_google: Any
) -> None:
    fake_google.script(parts=[{"functionCall": {"name": "web_search", "args": {"query": "q"}}}])
    fake_google.inject(Fault.invalid_argument("search broke"), contains="googleSearch")
    message = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=[WEATHER, WEB_SEARCH],
        messages=[{"role": "user", "content": "look it up"}],
    )
    assert [b.type for b in message.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert message.content[1].content.error_code == "unavailable"  # type: ignore[union-attr]
    answer = generate_calls(fake_google)[-1]["contents"][-1]["parts"][0]["functionResponse"]
    assert "failed" in answer["response"]["result"]
