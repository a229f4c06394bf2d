"""The Responses API over a WebSocket: the official `openai` SDK's `responses.connect()`,
and a raw `websockets` client sending what Codex CLI sends (its headers, a pre-warm with
`generate: false`, then incremental input on `previous_response_id` with `store: false`).
The handshake goes through the same guards as a request: key, Origin, service state."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fake_google import Fault
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from conftest import Gateway, serving_google

MODEL = "gemini-3-flash"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    with serving_google(
        tmp_path_factory, fake_google_server, "rws", AGPROXY_AUTH_MODE="strict"
    ) as gateway:
        yield gateway


def ws_url(gw: Gateway) -> str:
    return gw.base_url.replace("http://", "ws://") + "/v1/responses"


def codex(gw: Gateway, key: str | None = None, **headers: str) -> ClientConnection:
    """A socket opened the way Codex opens it."""
    sent = {
        "Authorization": f"Bearer {key or gw.api_key}",
        "OpenAI-Beta": "responses_websockets=2026-02-06",
        "session-id": "0199-thread",
        "originator": "codex_exec",
        **headers,
    }
    return connect(ws_url(gw), additional_headers=sent, open_timeout=5)


def until_done(sock: ClientConnection) -> list[dict[str, Any]]:
    events = []
    while True:
        event = json.loads(sock.recv(timeout=10))
        events.append(event)
        if event["type"] in (
            "response.completed",
            "response.failed",
            "response.incomplete",
            "error",
        ):
            return events


def sent_texts(fake_google: Any) -> list[tuple[str, str]]:
    contents = fake_google.calls("streamGenerateContent")[-1].body["request"]["contents"]
    return [(c["role"], p["text"]) for c in contents for p in c["parts"] if "text" in p]


def test_three_turns_through_the_sdk_websocket(gw: Gateway, fake_google: Any) -> None:
    client = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    finals = []
    with client.responses.connect() as connection:
        previous = None
        for words in ("First question.", "Second question.", "Third question."):
            connection.response.create(
                model=MODEL, input=words, store=False, previous_response_id=previous
            )
            types = []
            for event in connection:
                types.append(event.type)
                if event.type == "response.completed":
                    finals.append(event.response)
                    previous = event.response.id
                    break
            assert types[:2] == ["response.created", "response.in_progress"]
            assert "response.output_text.delta" in types
    assert [f.output_text for f in finals] == [
        "echo: First question.",
        "echo: Second question.",
        "echo: Third question.",
    ]
    # The third turn carried the whole conversation, though nothing was stored.
    assert sent_texts(fake_google) == [
        ("user", "First question."),
        ("model", "echo: First question."),
        ("user", "Second question."),
        ("model", "echo: Second question."),
        ("user", "Third question."),
    ]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(finals[0].id)  # store: false kept it on the socket only


def test_codex_prewarm_then_incremental_input(gw: Gateway, fake_google: Any) -> None:
    base = {
        "type": "response.create",
        "model": MODEL,
        "instructions": "You are Codex.",
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": None,
        "store": False,
        "stream": True,
        "include": [],
        "prompt_cache_key": "0199-thread",
    }
    first_input = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "List files."}],
        }
    ]
    calls_before = len(fake_google.calls("streamGenerateContent"))
    with codex(gw) as sock:
        sock.send(json.dumps({**base, "input": first_input, "generate": False}))
        warm = until_done(sock)
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        assert warm[-1]["response"]["output"] == []
        assert len(fake_google.calls("streamGenerateContent")) == calls_before  # no model call
        # The turn itself: nothing new to add, on the pre-warmed response.
        sock.send(
            json.dumps({**base, "input": [], "previous_response_id": warm[-1]["response"]["id"]})
        )
        events = until_done(sock)
        assert events[-1]["type"] == "response.completed"
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        answer = events[-1]["response"]
        assert answer["output"][0]["content"][0]["text"] == "echo: List files."
        sock.send(json.dumps({"type": "response.processed", "response_id": answer["id"]}))
        follow = [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Now count them."}],
            }
        ]
        sock.send(json.dumps({**base, "input": follow, "previous_response_id": answer["id"]}))
        events = until_done(sock)
    assert events[-1]["type"] == "response.completed"
    assert sent_texts(fake_google) == [
        ("user", "List files."),
        ("model", "echo: List files."),
        ("user", "Now count them."),
    ]
    request = fake_google.calls("streamGenerateContent")[-1].body["request"]
    assert request["systemInstruction"]["parts"] == [{"text": "You are Codex."}]


def test_a_refused_request_is_an_error_event_and_the_socket_goes_on(gw: Gateway) -> None:
    with codex(gw) as sock:
        sock.send(json.dumps({"type": "response.create", "model": "no-such-model", "input": "hi"}))
        [error] = until_done(sock)
        assert error["type"] == "error" and error["status"] == 404
        assert "no-such-model" in error["error"]["message"]
        sock.send("not json")
        [error] = until_done(sock)
        assert error["status"] == 400 and "not JSON" in error["error"]["message"]
        sock.send(
            json.dumps(
                {
                    "type": "response.create",
                    "model": MODEL,
                    "input": "x",
                    "previous_response_id": "resp_gone",
                }
            )
        )
        [error] = until_done(sock)
        assert error["status"] == 400 and error["error"]["param"] == "previous_response_id"
        sock.send(json.dumps({"type": "response.teleport"}))
        [error] = until_done(sock)
        assert error["status"] == 400 and "response.teleport" in error["error"]["message"]
        sock.send(
            json.dumps(
                {
                    "type": "response.create",
                    "model": MODEL,
                    "input": "still here?",
                    "stream_id": "lane-2",
                }
            )
        )
        events = until_done(sock)
    assert events[-1]["type"] == "response.completed"
    assert {e["stream_id"] for e in events} == {"lane-2"}


def test_a_custom_tool_call_over_the_socket(gw: Gateway, fake_google: Any) -> None:
    fake_google.script(
        parts=[
            {
                "functionCall": {
                    "name": "apply_patch",
                    "args": {"input": "*** Begin Patch\n*** End Patch"},
                }
            }
        ]
    )
    tool = {"type": "custom", "name": "apply_patch", "description": "Patch files."}
    with codex(gw) as sock:
        sock.send(
            json.dumps(
                {
                    "type": "response.create",
                    "model": MODEL,
                    "input": "patch",
                    "tools": [tool],
                    "store": False,
                }
            )
        )
        events = until_done(sock)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert (
        done[0]["type"] == "custom_tool_call"
        and done[0]["input"] == "*** Begin Patch\n*** End Patch"
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": "Bearer sk-wrong"}, 401),
        ({"Origin": "https://evil.example"}, 403),
    ],
)
def test_the_handshake_is_guarded(gw: Gateway, headers: dict[str, str], status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        codex(gw, **headers).close()
    assert refused.value.response.status_code == status
    body = json.loads(refused.value.response.body or b"{}")
    assert body["error"]["message"]


def test_a_client_that_hangs_up_mid_answer_is_recorded(gw: Gateway, fake_google: Any) -> None:
    fake_google.inject(Fault.stall(2.0), times=1)
    with codex(gw) as sock:
        sock.send(json.dumps({"type": "response.create", "model": MODEL, "input": "leave early"}))
        json.loads(sock.recv(timeout=5))  # response.created, then the model stalls: leave
    deadline = time.time() + 5
    while time.time() < deadline:
        rows = gw.admin("GET", "/api/logs", params={"q": "WS"}).json()["logs"]
        if any(r["status"] == 499 for r in rows):
            break
        time.sleep(0.2)
    rows = gw.admin("GET", "/api/logs").json()["logs"]
    ws_rows = [r for r in rows if r["method"] == "WS"]
    assert any(r["status"] == 499 for r in ws_rows), ws_rows
    assert any(r["status"] == 200 and r["routed_model"] == MODEL for r in ws_rows)
    with codex(gw) as sock:  # the gateway is fine
        sock.send(json.dumps({"type": "response.create", "model": MODEL, "input": "after"}))
        assert until_done(sock)[-1]["type"] == "response.completed"


def test_client_keys_on_the_socket(gw: Gateway) -> None:
    made = gw.admin("POST", "/api/keys", json={"name": "ws-tool", "rpm": 2, "models": ["claude-*"]})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    time.sleep(1.3)  # the keys are re-read every second
    with codex(gw, key=secret) as sock:
        sock.send(json.dumps({"type": "response.create", "model": MODEL, "input": "hi"}))
        [error] = until_done(sock)
        assert error["status"] == 403  # not one of its models
        sock.send(json.dumps({"type": "response.create", "model": MODEL, "input": "hi"}))
        [error] = until_done(sock)
        assert error["status"] == 403
        # Each response.create counts as a request against the key's rpm.
        sock.send(json.dumps({"type": "response.create", "model": MODEL, "input": "hi"}))
        [error] = until_done(sock)
        assert error["status"] == 429 and "requests per minute" in error["error"]["message"]
    rows = gw.admin("GET", "/api/logs").json()["logs"]
    assert {r["key_name"] for r in rows if r["method"] == "WS" and r["status"] in (403, 429)} == {
        "ws-tool"
    }


def test_a_rebound_host_name_cannot_open_a_socket(gw: Gateway) -> None:
    """DNS rebinding: a page served from an attacker's name that now points here."""
    import socket

    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        raw.sendall(
            b"GET /v1/responses HTTP/1.1\r\nHost: rebind.evil.example\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Authorization: Bearer " + gw.api_key.encode() + b"\r\n\r\n"
        )
        head = raw.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 403"), head
    assert "DNS rebinding" in head or "host name" in head


def test_a_stopped_service_refuses_the_handshake(gw: Gateway) -> None:
    assert gw.admin("POST", "/api/proxy/stop").status_code == 200
    try:
        with pytest.raises(InvalidStatus) as refused:
            codex(gw).close()
        assert refused.value.response.status_code == 503
    finally:
        assert gw.admin("POST", "/api/proxy/start").status_code == 200
    with codex(gw) as sock:
        sock.send(json.dumps({"type": "response.create", "model": MODEL, "input": "back"}))
        assert until_done(sock)[-1]["type"] == "response.completed"
