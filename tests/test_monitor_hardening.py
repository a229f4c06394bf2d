"""Issue 11, the monitor and client hang-ups: a byte-bounded record queue (8), safe CSV
cells (13), stream aborts recorded as 499 without errors (14), hang-ups before the first
byte cancel the upstream call (15), and redaction of every stored column (16)."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import orjson
import pytest
from fake_google import Fault

from conftest import Gateway, gateway_with

CHAT = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hello"}]}


def logs(gw: Gateway, **params: Any) -> list[dict[str, Any]]:
    return gw.admin("GET", "/api/logs", params=params).json()["logs"]


def wait_for_logs(gw: Gateway, n: int = 1, seconds: float = 5) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while len(records := logs(gw)) < n:
        assert time.monotonic() < deadline, f"{len(records)} records, expected {n}"
        time.sleep(0.1)
    return records


def metric(gw: Gateway, name: str) -> float:
    text = gw.admin("GET", "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def raw_request(gw: Gateway, path: str, body: dict[str, Any]) -> socket.socket:
    """A request sent whole on a plain socket, left open for the caller to close."""
    data = orjson.dumps(body)
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


# -- 15: a hang-up before the first byte --------------------------------------------------
def test_a_hang_up_before_the_answer_cancels_the_upstream_call(gateway_factory: Any,
                                                                fake_google: Any) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google)
    # The upstream sends one event, then stalls: the gateway is collecting a non-streamed
    # answer and has sent the client nothing.
    fake_google.inject(Fault.stall(20), email=acct.email)
    sock = raw_request(gw, "/v1/chat/completions", CHAT)
    deadline = time.monotonic() + 10
    while not fake_google.calls("streamGenerateContent"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    sock.close()
    closed = time.monotonic()
    [record] = wait_for_logs(gw)
    assert record["status"] == 499
    assert record["error"] == "client closed the connection before an answer"
    # The upstream saw its caller go within moments, not when its 20 s stall ended.
    while not fake_google.disconnects:
        assert time.monotonic() - closed < 3, "the upstream call ran on"
        time.sleep(0.05)
    assert record["duration_ms"] < 5000
    # The gateway serves on normally.
    assert httpx.post(gw.base_url + "/v1/chat/completions", json=CHAT,
                      timeout=30).status_code == 200


# -- 14: a stream aborted by its client ---------------------------------------------------
STREAMS = {
    "anthropic": ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 50,
                                   "stream": True,
                                   "messages": [{"role": "user", "content": "hang up"}]}),
    "openai": ("/v1/chat/completions", {**CHAT, "stream": True}),
    "responses": ("/v1/responses", {"model": "gemini-3-flash", "stream": True,
                                    "input": "hang up"}),
    "gemini": ("/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse",
               {"contents": [{"role": "user", "parts": [{"text": "hang up"}]}]}),
}


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_a_stream_aborted_mid_way_is_recorded_as_499_without_errors(
        gateway_factory: Any, fake_google: Any, protocol: str) -> None:
    gw, [acct] = gateway_with(gateway_factory, fake_google,
                              AGPROXY_STREAM_PING_SECONDS="0.2")
    fake_google.inject(Fault.stall(20), email=acct.email)
    path, body = STREAMS[protocol]
    with httpx.stream("POST", gw.base_url + path, json=body, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # the first event is here; hang up while the upstream stalls
    time.sleep(0.5)  # pings (anthropic) keep flowing to a closed socket meanwhile
    [record] = wait_for_logs(gw)
    assert record["status"] == 499, record
    assert record["error"] == "client closed the connection after a 200 began"
    deadline = time.monotonic() + 3
    while not fake_google.disconnects:  # the upstream call was closed too
        assert time.monotonic() < deadline, "the upstream call ran on"
        time.sleep(0.05)
    assert gw.stop() == 0
    output = "".join(gw.output)
    assert "RuntimeError" not in output and "Traceback" not in output, output
