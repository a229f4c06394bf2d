"""Wrong JSON types on every AI route (issue 11, defect 6): each field of a rich, valid
body is replaced in turn by each of 17 wrong values, sent to one real gateway on the
fake Google upstream, streamed and not. No answer may be a 5xx the gateway caused,
every 4xx is in the route's protocol shape, a 400 the gateway wrote names the field,
and the gateway log gets no traceback.

Duplicates are skipped: a mutated body identical to one already sent, and the streamed
twin of a request the gateway refused (validation runs before the stream flag is read),
and the Gemini forms under /v1beta and /v1 (one handler) share the mutations between them.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from conftest import Gateway, add_accounts, google_env, spawn

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAA"
    "ABJRU5ErkJggg=="
)
DATA_URL = f"data:image/png;base64,{PNG}"
SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1lYXJsaWVyLXRoaW5raW5n"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 1}},
    "required": ["city"],
}
GEMINI_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

# Values orjson cannot write from Python are spliced in as raw JSON text.
_RAW = {
    "\x00huge-int": b"1000000000000000000000000000000",
    "\x00nul-surrogate": b'"\\u0000\\ud800"',
    "\x00deep": b"[" * 300 + b"]" * 300,
}
WRONG: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1e308,
    "\x00huge-int",
    "",
    "x",
    "x" * 100_000,
    [],
    [1],
    [[]],
    {},
    {"x": 1},
    "\x00nul-surrogate",
    "\x00deep",
]

CHAT = {
    "model": "gemini-3-flash",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": SCHEMA,
            },
        }
    ],
    "tool_choice": "auto",
    "temperature": 0.5,
    "top_p": 0.9,
    "max_tokens": 256,
    "stop": ["END"],
    "seed": 7,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.1,
    "n": 1,
    "reasoning_effort": "low",
    "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA}},
    "stream_options": {"include_usage": True},
    "metadata": {"purpose": "test"},
    "user": "user-1",
    "stream": False,
}
COMPLETION = {
    "model": "gemini-3-flash",
    "prompt": ["Say", "hello"],
    "max_tokens": 16,
    "temperature": 0,
    "stop": "\n",
    "suffix": "",
    "echo": False,
    "stream": False,
}
RESPONSES = {
    "model": "gemini-3-flash",
    "instructions": "Be brief.",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in this picture, and the weather?"},
                {"type": "input_image", "image_url": DATA_URL},
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Use the tool."}],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny."}],
        },
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": SCHEMA,
        },
        {"type": "web_search"},
    ],
    "tool_choice": "auto",
    "reasoning": {"effort": "low", "summary": "auto"},
    "text": {"format": {"type": "json_schema", "name": "out", "schema": SCHEMA}},
    "max_output_tokens": 256,
    "temperature": 0.5,
    "top_p": 0.9,
    "metadata": {"purpose": "test"},
    "store": False,
    "stream": False,
}
IMAGES = {
    "model": "gemini-3.1-flash-image",
    "prompt": "A red fox in the snow",
    "n": 1,
    "size": "1024x1024",
    "quality": "standard",
    "style": "natural",
    "response_format": "b64_json",
}
IMAGE_BLOCK = {
    "type": "image",
    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
}
MESSAGES = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 2048,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "The weather in Paris? And what is in this picture?"},
                IMAGE_BLOCK,
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": SIGNATURE},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": False,
                    "content": [{"type": "text", "text": "sunny"}, IMAGE_BLOCK],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ],
    "tools": [{"name": "get_weather", "description": "Weather for a city", "input_schema": SCHEMA}],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "user-1"},
    "temperature": 1,
    "top_p": 0.9,
    "top_k": 40,
    "stop_sequences": ["END"],
    "stream": False,
}
COUNT_MESSAGES = {
    "model": "claude-sonnet-4-6",
    "system": "Be brief.",
    "messages": [
        {"role": "user", "content": "The weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
        },
    ],
    "tools": [{"name": "get_weather", "description": "Weather for a city", "input_schema": SCHEMA}],
}
CONTENTS = [
    {
        "role": "user",
        "parts": [
            {"text": "The weather in Paris? And what is in this picture?"},
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
        ],
    },
    {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": SIGNATURE,
            }
        ],
    },
    {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}],
    },
]
GENERATE = {
    "contents": CONTENTS,
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": GEMINI_SCHEMA,
                }
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "generationConfig": {
        "temperature": 0.5,
        "maxOutputTokens": 4096,
        "stopSequences": ["END"],
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}
COUNT_GEMINI = {
    "contents": CONTENTS[:1],
    "generateContentRequest": {"model": "models/gemini-3-flash", "contents": CONTENTS[:1]},
}


def _gemini(model: str, method: str) -> list[str]:
    return [f"/v1beta/models/{model}:{method}", f"/v1/models/{model}:{method}"]


@dataclass(frozen=True)
class Route:
    name: str
    protocol: str  # openai, anthropic, gemini
    body: dict[str, Any]
    urls: list[str]
    stream_urls: list[str] | None = None  # streamed twins (Gemini: other methods)
    stream_flag: bool = False  # streamed by `"stream": true` in the body


ROUTES = [
    Route("chat", "openai", CHAT, ["/v1/chat/completions"], stream_flag=True),
    Route("completions", "openai", COMPLETION, ["/v1/completions"], stream_flag=True),
    Route("responses", "openai", RESPONSES, ["/v1/responses"], stream_flag=True),
    Route("images", "openai", IMAGES, ["/v1/images/generations"]),
    Route("messages", "anthropic", MESSAGES, ["/v1/messages"], stream_flag=True),
    Route("count_tokens", "anthropic", COUNT_MESSAGES, ["/v1/messages/count_tokens"]),
    Route(
        "generateContent",
        "gemini",
        GENERATE,
        _gemini("gemini-3-flash", "generateContent"),
        stream_urls=[
            u.replace("generateContent", "streamGenerateContent") + suffix
            for u in _gemini("gemini-3-flash", "generateContent")
            for suffix in ("?alt=sse", "")
        ],
    ),
    Route("countTokens", "gemini", COUNT_GEMINI, _gemini("gemini-3-flash", "countTokens")),
]


# -- the generator --------------------------------------------------------------------
Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every field path in `value`, parents before children (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def replaced(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(value[head], rest, new)  # type: ignore[index]
    return copy


def encode(body: Any) -> bytes:
    raw = orjson.dumps(body)
    for marker, text in _RAW.items():
        raw = raw.replace(orjson.dumps(marker), text)
    return raw


def mutations(body: dict[str, Any]) -> Iterator[tuple[Path, str, Any]]:
    """(path, label of the wrong value, mutated body), each distinct body once."""
    seen = {encode(body)}
    for path in paths(body):
        for wrong in WRONG:
            mutated = replaced(body, path, wrong)
            raw = encode(mutated)
            if raw in seen:
                continue
            seen.add(raw)
            label = wrong if isinstance(wrong, str) and wrong in _RAW else repr(wrong)[:12]
            yield path, str(label).strip("\x00"), mutated


def where(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(body)"


# -- the gateway ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """One gateway; its output is read as it comes (conftest), so the pipe never fills up."""
    fake_google_server.reset()
    gw = spawn(tmp_path_factory.mktemp("mutation"), **google_env(fake_google_server))
    try:
        add_accounts(gw, fake_google_server, prefix="mut")
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def fake(fake_google_server: Any) -> Any:
    fake_google_server.reset()
    # The history carries a thinking signature of an earlier (imagined) turn.
    fake_google_server.check_claude_signatures = False
    return fake_google_server


def credential(protocol: str, key: str) -> dict[str, str]:
    if protocol == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    if protocol == "gemini":
        return {"x-goog-api-key": key}
    return {"Authorization": f"Bearer {key}"}


# -- what an answer must look like ----------------------------------------------------
def message_of(protocol: str, status: int, body: Any) -> tuple[str | None, str]:
    """(problem with the error shape or None, the message and param as one text)."""
    if not isinstance(body, dict):
        return "not a JSON object", ""
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return "no error.message", ""
    if protocol == "anthropic":
        if body.get("type") != "error" or not isinstance(error.get("type"), str):
            return "not Anthropic's shape", ""
    elif protocol == "gemini":
        if error.get("code") != status or not isinstance(error.get("status"), str):
            return "not Google's shape", ""
    elif not isinstance(error.get("type"), str) or set(error) - {
        "message",
        "type",
        "param",
        "code",
    }:
        return "not OpenAI's shape", ""
    return None, f"{error['message']} {error.get('param') or ''}"


def names_field(path: Path, label: str, text: str) -> bool:
    """Whether a 400 says what is wrong: a key on the mutated path, or, for a body that
    is no longer JSON (the lone surrogate) or no longer an object, the body."""
    if label == "nul-surrogate":
        return "JSON" in text or "body" in text
    if not path:
        return True  # the body itself: whatever is missing first
    return any(key in text for key in path if isinstance(key, str))


def stream_problem(route: Route, text: str) -> str | None:
    """A streamed answer must run to its end without an error event."""
    if any(mark in text for mark in ("stream failed", "event: error", "response.failed")):
        return "error event in the stream"
    ends = {
        "openai": "[DONE]" if route.name != "responses" else "response.",
        "anthropic": "message_stop",
        "gemini": "candidates",
    }[route.protocol]
    return None if ends in text else f"stream without {ends!r}"


def check(
    client: httpx.Client,
    route: Route,
    url: str,
    raw: bytes,
    path: Path,
    label: str,
    headers: dict[str, str],
    streamed: bool,
) -> tuple[int, str | None]:
    """(status, problem or None) for one request."""
    try:
        response = client.post(url, content=raw, headers=headers)
    except httpx.TransportError as exc:
        return 0, f"transport error {type(exc).__name__}"
    status = response.status_code
    if status < 400:
        return status, stream_problem(route, response.text) if streamed else None
    try:
        body = response.json()
    except ValueError:
        return status, f"{status} not JSON: {response.text[:120]!r}"
    shape, text = message_of(route.protocol, status, body)
    if status >= 500:
        if status == 500 or shape:
            return status, f"{status} {shape or ''} {text[:160]!r}"
        return status, None  # a protocol-shaped 502/503 from the upstream path
    if shape:
        return status, f"{status} {shape}: {response.text[:160]!r}"
    if status == 400 and not text.startswith("upstream:") and not names_field(path, label, text):
        return status, f"400 does not name the field: {text[:160]!r}"
    return status, None


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_wrong_types_never_give_500(route: Route, gateway: Gateway, fake: Any) -> None:
    gw = gateway
    headers = {"Content-Type": "application/json", **credential(route.protocol, gw.api_key)}
    log_start = len(gw.output)
    problems: list[str] = []
    sent = refused = 0
    started = time.monotonic()
    with httpx.Client(base_url=gw.base_url, timeout=60) as client:
        status, problem = check(
            client, route, route.urls[0], encode(route.body), (), "", headers, False
        )
        assert status == 200 and problem is None, f"the valid body fails: {status} {problem}"
        for n, (path, label, mutated) in enumerate(mutations(route.body)):
            raw = encode(mutated)
            url = route.urls[n % len(route.urls)]
            status, problem = check(client, route, url, raw, path, label, headers, False)
            sent += 1
            refused += status >= 400
            if problem:
                problems.append(f"{url} {where(path)} = {label}: {problem}")
                continue
            if status >= 400 or path[:1] == ("stream",):
                continue  # refused before the stream flag matters
            if route.stream_flag and isinstance(mutated, dict):
                twin, twin_url = encode({**mutated, "stream": True}), url
            elif route.stream_urls:
                twin, twin_url = raw, route.stream_urls[n % len(route.stream_urls)]
            else:
                continue
            status, problem = check(client, route, twin_url, twin, path, label, headers, True)
            sent += 1
            if problem:
                problems.append(f"{twin_url} (streamed) {where(path)} = {label}: {problem}")
    time.sleep(0.2)
    tracebacks = [
        line for line in gw.output[log_start:] if "Traceback" in line or "unhandled" in line
    ]
    print(f"{route.name}: {sent} requests, {refused} refused, {time.monotonic() - started:.1f}s")
    report = "\n".join(problems[:60])
    assert not problems, f"{len(problems)} of {sent} requests failed:\n{report}"
    assert not tracebacks, "".join(tracebacks[:20])


# -- what follows an unhandled error (defect 7) ------------------------------------------
# No input found above still reaches a bug, so the error handler is tested on the real
# app and listener with a route added here that raises.
class InProcess:
    """The gateway's app (build_app) on its real listener, in this process, so a test can
    add a route and read the log records."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        from agproxy.config import ConfigStore
        from agproxy.server.app import build_app
        from agproxy.server.runner import assemble

        data_dir.mkdir(parents=True, exist_ok=True)
        store = ConfigStore(data_dir, environ={})
        store.load()
        self.service = assemble(store)
        self.service.monitor = None  # nothing here reads the monitor
        self.service.running = True  # the AI routes answer without `agproxy start`
        self.app = build_app(self.service)
        self.loop = asyncio.new_event_loop()
        self.port = 0

    def serve(self) -> str:
        from agproxy.net.listener import bind_socket, serve_socket

        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        async def main() -> None:
            self.listener = serve_socket(self.app, sock, lambda: self.service.settings)
            ready.set()
            await self.listener.task

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(main())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        from agproxy.net.listener import close_listener

        asyncio.run_coroutine_threadsafe(
            close_listener(self.listener, force=True), self.loop
        ).result(10)
        self.thread.join(10)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def raising_app(tmp_path: pathlib.Path) -> Iterator[tuple[InProcess, str, Records]]:
    served = InProcess(tmp_path / "inprocess")
    leaked = "sk-leaked-in-an-error-0123456789"

    async def bug(request: Request) -> Response:
        await request.body()  # as the real handlers do before they fail
        raise RuntimeError(
            f"a bug somewhere deep, holding {served.service.settings.api_key} and {leaked}"
        )

    for path in ("/v1/chat/completions", "/v1/messages", "/v1beta/models/{target}"):
        served.app.router.routes.insert(0, StarletteRoute(path, bug, methods=["POST"]))
    records = Records()
    loggers = [logging.getLogger(name) for name in ("agproxy.server", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(records)
    url = served.serve()
    yield served, url, records
    served.stop()
    for logger in loggers:
        logger.removeHandler(records)


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/v1/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1beta/models/gemini-3-flash:generateContent", "gemini"),
    ],
)
def test_a_500_closes_the_connection_and_the_next_request_works(
    raising_app: tuple[InProcess, str, Records], path: str, protocol: str
) -> None:
    served, url, _ = raising_app
    headers = {
        "Content-Type": "application/json",
        **credential(protocol, served.service.settings.api_key),
    }
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(5):
            failed = client.post(path, content=b"{}", headers=headers)
            assert failed.status_code == 500
            assert failed.headers["connection"] == "close"
            shape, text = message_of(protocol, 500, failed.json())
            assert shape is None and "RuntimeError" in text
            # The next request on the same client: a new connection, answered.
            assert client.get("/healthz").status_code == 200


def test_an_unhandled_error_logs_one_short_line_rate_limited(
    raising_app: tuple[InProcess, str, Records], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agproxy.server import error_handlers as app_module

    served, url, records = raising_app
    monkeypatch.setattr(app_module, "_unhandled", {})
    headers = {
        "Content-Type": "application/json",
        **credential("openai", served.service.settings.api_key),
    }
    for _ in range(4):
        assert (
            httpx.post(
                url + "/v1/chat/completions", content=b"{}", headers=headers, timeout=10
            ).status_code
            == 500
        )
    time.sleep(0.2)
    lines = [r for r in records.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1, [r.getMessage()[:200] for r in lines]  # uvicorn's is dropped
    line = lines[0].getMessage()
    assert lines[0].exc_info is None and "\n" not in line and len(line) < 600
    assert "unhandled RuntimeError on POST /v1/chat/completions" in line
    assert "test_mutation.py:" in line and " bug" in line  # where it was raised
    assert served.service.settings.api_key not in line and "sk-leaked" not in line

    # After the quiet period, the next one is logged with the count of those left out.
    monkeypatch.setattr(app_module, "UNHANDLED_LOG_EVERY", 0.0)
    assert (
        httpx.post(
            url + "/v1/chat/completions", content=b"{}", headers=headers, timeout=10
        ).status_code
        == 500
    )
    time.sleep(0.2)
    lines = [r.getMessage() for r in records.records if r.levelno >= logging.ERROR]
    assert len(lines) == 2 and "(and 3 more since the last line)" in lines[1]
