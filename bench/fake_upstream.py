"""A lean fake of Google's endpoints for benchmarks: answers at once, costs little CPU.

Serves just what a benchmark run needs (token refresh, userinfo, loadCodeAssist,
fetchAvailableModels, generateContent, streamGenerateContent?alt=sse). Stream hold:
`?hold=<seconds>` in the *gateway's* request is not visible here, so the stream shape
is set at start: `--stream-events N --stream-hold S` (S seconds between the first and
second event, for the many-open-streams scenario).

Usage: python bench/fake_upstream.py PORT [--stream-hold S]
"""

from __future__ import annotations

import asyncio
import socket
import sys

import orjson
import uvicorn

HOLD = 0.0
REPLY = orjson.dumps(
    {
        "response": {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "Hello from the fake."}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": 5,
                "totalTokenCount": 10,
            },
            "modelVersion": "gemini-3-flash",
            "responseId": "r1",
        },
        "traceId": "t1",
    }
)
EVENTS = [
    b'data: {"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello "}]}}],'
    b'"usageMetadata":{"promptTokenCount":5},"modelVersion":"gemini-3-flash","responseId":"r1"},'
    b'"traceId":"t1"}\r\n\r\n',
    b'data: {"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"from the '
    b'fake."}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,'
    b'"candidatesTokenCount":5,"totalTokenCount":10},"modelVersion":"gemini-3-flash",'
    b'"responseId":"r1"},"traceId":"t1"}\r\n\r\n',
]
MODELS = orjson.dumps(
    {
        "models": {
            "gemini-3-flash": {
                "quotaInfo": {"remainingFraction": 1.0, "resetTime": "2099-01-01T00:00:00Z"}
            },
            "gemini-3-pro-high": {
                "quotaInfo": {"remainingFraction": 1.0, "resetTime": "2099-01-01T00:00:00Z"}
            },
        }
    }
)
LOAD = orjson.dumps(
    {"cloudaicompanionProject": "bench-project", "currentTier": {"id": "free-tier", "name": "Free"}}
)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path: str = scope["path"]
    if path.endswith(":streamGenerateContent"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": EVENTS[0], "more_body": True})
        if HOLD:
            await asyncio.sleep(HOLD)
        await send({"type": "http.response.body", "body": EVENTS[1], "more_body": False})
        return
    if path.endswith(":generateContent") or path.endswith(":countTokens"):
        payload = REPLY if "generate" in path else b'{"totalTokens": 5}'
    elif path == "/token":
        # One access token per refresh token, so each account has its own identity.
        form = dict(pair.split("=", 1) for pair in body.decode().split("&") if "=" in pair)
        payload = orjson.dumps(
            {
                "access_token": "ya29." + form.get("refresh_token", "x"),
                "expires_in": 3599,
                "token_type": "Bearer",
            }
        )
    elif path.endswith("/userinfo"):
        auth = dict(scope["headers"]).get(b"authorization", b"")
        payload = orjson.dumps({"email": auth.decode().rsplit(".", 1)[-1] + "@example.com"})
    elif path.endswith(":loadCodeAssist"):
        payload = LOAD
    elif path.endswith(":fetchAvailableModels"):
        payload = MODELS
    else:
        payload = b'{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}'
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    global HOLD
    port = int(sys.argv[1])
    if "--stream-hold" in sys.argv:
        HOLD = float(sys.argv[sys.argv.index("--stream-hold") + 1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        app,
        log_level="error",
        access_log=False,
        lifespan="off",
        loop="uvloop",
        http="httptools",
        backlog=4096,
        # Longer than the gateway keeps an idle upstream connection (90 s): closed by the
        # fake while the gateway reuses it, a request would fail with a reset.
        timeout_keep_alive=120,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
