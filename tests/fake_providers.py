"""Fake OpenAI, Anthropic and Gemini (API key) servers for tests: real HTTP, shaped like the
public APIs (the official SDKs parse their answers), requests recorded, faults injectable.

Every fake answers deterministically: with tools declared and a plain user turn last, it
calls the first declared tool with {"city": "Paris"}; after a tool result it answers
`the tool said: <result>`; otherwise `<kind> answered <model>: <last user text>`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

OPENAI_KEY = "sk-fake-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-fake-anthropic-0123456789"
GEMINI_KEY = "AIzaSyFakeGeminiKey-0123456789"
TOOL_ARGS: dict[str, Any] = {"city": "Paris"}
TOOL_ARGS_JSON = orjson.dumps(TOOL_ARGS).decode()
OUTPUT_TOKENS = 5
STREAM_KINDS = frozenset({"cut_stream", "empty_stream"})
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Invalid API key.",
    403: "Permission denied.",
    404: "Not found.",
    429: "Rate limit exceeded, please retry later.",
    500: "Internal server error.",
    503: "The service is currently unavailable.",
    529: "Overloaded.",
}


class StreamCut(Exception):
    """Raised inside a streamed answer to drop the connection mid-body (uvicorn closes it)."""


class _QuietCuts(logging.Filter):
    """uvicorn logs the exception that drops a cut stream; that drop is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        return not isinstance(exc, StreamCut)


logging.getLogger("uvicorn.error").addFilter(_QuietCuts())


@dataclass(frozen=True)
class ProviderFault:
    """One scripted misbehaviour. Build them with the classmethods; `inject` them.

    kind: "error" (answer `status` in the API's own error shape), "slow" (wait `seconds`,
    then answer normally), "cut_stream" / "empty_stream" (streamed answers only).
    """

    kind: str
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0
    after_events: int = 0

    @property
    def stream_only(self) -> bool:
        return self.kind in STREAM_KINDS

    @classmethod
    def error(
        cls, status: int, message: str | None = None, retry_after: float | None = None
    ) -> ProviderFault:
        """`status` with the API's error body; a `retry-after` header when `retry_after` is
        given (and, for Gemini's 429, a RetryInfo detail)."""
        text = message or DEFAULT_MESSAGES.get(status, f"HTTP {status}")
        return cls("error", status, text, retry_after)

    @classmethod
    def slow(cls, seconds: float) -> ProviderFault:
        """Wait `seconds`, then answer normally."""
        return cls("slow", seconds=seconds)

    @classmethod
    def cut_stream(cls, after_events: int = 1) -> ProviderFault:
        """Streamed answers: send `after_events` events, then drop the connection."""
        return cls("cut_stream", after_events=after_events)

    @classmethod
    def empty_stream(cls) -> ProviderFault:
        """Streamed answers: 200 with an event stream that carries no events at all."""
        return cls("empty_stream")


# -- shared helpers ----------------------------------------------------------------------
def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _halves(text: str) -> list[str]:
    """`text` in two pieces (streams carry every answer in at least two)."""
    cut = max(1, len(text) // 2)
    return [text[:cut], text[cut:]]


def _text_of(value: Any) -> str:
    """The text of a message content, tool result or Gemini parts list; JSON otherwise."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and _joined_text(value):
        return _joined_text(value)
    return _dumps(value)


def _joined_text(blocks: list[Any]) -> str:
    """The text of the blocks or parts that carry some (thoughts left out)."""
    return "".join(
        b["text"]
        for b in blocks
        if isinstance(b, dict) and isinstance(b.get("text"), str) and not b.get("thought")
    )


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


@dataclass(frozen=True)
class _Turn:
    """What the fake model decides to say to one request."""

    kind: str
    model: str
    tool: str | None  # the tool it calls, if any
    tool_result: str | None  # the tool result the last message carries, if any
    user_text: str
    prompt_tokens: int

    @property
    def text(self) -> str:
        if self.tool_result is not None:
            return f"the tool said: {self.tool_result}"
        return f"{self.kind} answered {self.model}: {self.user_text}"


def _decide(
    kind: str, model: str, tools: list[str], last_is_user: bool, result: str | None, **rest: Any
) -> _Turn:
    tool = tools[0] if tools and last_is_user and result is None else None
    return _Turn(kind, model, tool, result, rest["user_text"], 7 + rest["count"])


class _EventStream:
    """An ASGI response sending `frames` (re-chunked to `chunk` bytes when given); with
    `cut_at` only that many frames, then the connection drops without ending the body."""

    def __init__(
        self, frames: list[bytes], media: str, cut_at: int | None = None, chunk: int | None = None
    ) -> None:
        self.frames, self.media, self.cut_at, self.chunk = frames, media, cut_at, chunk

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        frames = self.frames if self.cut_at is None else self.frames[: self.cut_at]
        pieces = frames
        if self.chunk:
            data = b"".join(frames)
            pieces = [data[i : i + self.chunk] for i in range(0, len(data), self.chunk)]
        headers = [(b"content-type", self.media.encode()), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            for piece in pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            if self.cut_at is not None:
                raise StreamCut()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away meanwhile
            return


Answer = Response | _EventStream
Check = Callable[[Any], str | None]


class _FakeProvider:
    """A real HTTP server on 127.0.0.1 (uvicorn in a daemon thread): keys, recorded
    requests, fault injection. Subclasses give the routes and the API's shapes."""

    kind = ""
    path_prefix = ""
    auth_message = "Invalid API key."

    def __init__(self, keys: set[str] | None, default_key: str, models: list[str]) -> None:
        self.keys: set[str] = set(keys) if keys is not None else {default_key}
        self.models: list[str] = models
        self.requests: list[dict[str, Any]] = []
        self._faults: list[tuple[ProviderFault, str | None]] = []
        self._lock = threading.Lock()
        app = Starlette(routes=self.routes())
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}{self.path_prefix}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))

    def start(self) -> Self:
        threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        ).start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True

    def inject(self, fault: ProviderFault, key: str | None = None, times: int = 1) -> None:
        """Queue `fault` for the next `times` matching requests (those made with `key`
        when given; stream faults only for streamed requests), one per request."""
        with self._lock:
            self._faults.extend([(fault, key)] * times)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    # -- provider hooks --------------------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def key_of(self, request: Request) -> str | None:
        raise NotImplementedError

    def error_body(self, status: int, message: str, retry_after: float | None) -> Any:
        raise NotImplementedError

    # -- the common path of every request ---------------------------------------------
    def error(self, status: int, message: str, retry_after: float | None = None) -> Response:
        headers = {"retry-after": _seconds_text(retry_after)} if retry_after is not None else None
        return _json(self.error_body(status, message, retry_after), status, headers)

    def _take(self, key: str, streaming: bool) -> ProviderFault | None:
        with self._lock:
            for i, (fault, only) in enumerate(self._faults):
                if (only is None or only == key) and (streaming or not fault.stream_only):
                    return self._faults.pop(i)[0]
        return None

    async def _admit(
        self, request: Request, check: Check | None, streaming: Callable[[Any], bool]
    ) -> tuple[Any, ProviderFault | None] | Response:
        """Record the request, then refuse it (401, 400, an injected error) or hand back
        its body and the stream fault, if any, that shapes the answer."""
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
            parsed = True
        except orjson.JSONDecodeError:
            body, parsed = None, False
        key = self.key_of(request)
        with self._lock:
            self.requests.append(
                {
                    "path": request.url.path,
                    "query": dict(request.query_params),
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "body": body,
                    "key": key,
                }
            )
        if key is None or key not in self.keys:
            return self.error(401, self.auth_message)
        problem = "The request body is not valid JSON." if not parsed else None
        problem = problem or (check(body) if check is not None else None)
        if problem:
            return self.error(400, problem)
        fault = self._take(key, bool(streaming(body)))
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
            return body, None
        if fault is not None and fault.kind == "error":
            return self.error(fault.status, fault.message, fault.retry_after)
        return body, fault

    @staticmethod
    def _stream(
        frames: list[bytes], fault: ProviderFault | None, media: str, chunk: int | None = None
    ) -> _EventStream:
        if fault is not None and fault.kind == "empty_stream":
            frames = []
        cut_at = fault.after_events if fault is not None and fault.kind == "cut_stream" else None
        return _EventStream(frames, media, cut_at, chunk)


def _streamed(body: Any) -> bool:
    return isinstance(body, dict) and body.get("stream") is True


def _never(_body: Any) -> bool:
    return False


# -- OpenAI ------------------------------------------------------------------------------
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}
OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def _is_tool_call(call: Any) -> bool:
    if not isinstance(call, dict) or not isinstance(call.get("id"), str):
        return False
    function = call.get("function")
    return (
        call.get("type") == "function"
        and isinstance(function, dict)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments"), str)
    )


def _check_openai_message(i: int, message: Any, call_ids: set[str]) -> str | None:
    if not isinstance(message, dict):
        return f"Invalid type for 'messages[{i}]': expected an object."
    role = message.get("role")
    if role not in OPENAI_ROLES:
        return f"Invalid value: '{role}'. Supported values are: {', '.join(OPENAI_ROLES)}."
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        return f"Invalid type for 'messages[{i}].content': expected a string or an array."
    if content is None and not (role == "assistant" and message.get("tool_calls")):
        return f"Missing required parameter: 'messages[{i}].content'."
    for j, call in enumerate(message.get("tool_calls") or [] if role == "assistant" else []):
        if not _is_tool_call(call):
            return f"Invalid 'messages[{i}].tool_calls[{j}]': needs id, type 'function', function.name and function.arguments (a string)."
        call_ids.add(call["id"])
    if role == "tool" and message.get("tool_call_id") not in call_ids:
        return (
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
            "message with 'tool_calls'."
        )
    return None


def _check_openai(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': empty array. Expected an array with minimum length 1."
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        problem = _check_openai_message(i, message, call_ids)
        if problem:
            return problem
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return "Invalid type for 'tools': expected an array."
    for i, tool in enumerate(tools or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            return f"Missing required parameter: 'tools[{i}].function' (with type 'function')."
        if not isinstance(function.get("name"), str) or not function["name"]:
            return f"Missing required parameter: 'tools[{i}].function.name'."
    return None


def _openai_turn(body: dict[str, Any]) -> _Turn:
    messages = body["messages"]
    last = messages[-1]
    result = _text_of(last.get("content")) if last["role"] == "tool" else None
    users = [_text_of(m.get("content")) for m in messages if m["role"] == "user"]
    tools = [t["function"]["name"] for t in body.get("tools") or []]
    return _decide(
        "openai",
        body["model"],
        tools,
        last["role"] == "user",
        result,
        user_text=users[-1] if users else "",
        count=len(messages),
    )


def _openai_usage(turn: _Turn) -> dict[str, int]:
    total = turn.prompt_tokens + OUTPUT_TOKENS
    return {
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": total,
    }


def _openai_call(turn: _Turn, arguments: str) -> dict[str, Any]:
    return {
        "id": f"call_{secrets.token_hex(4)}",
        "type": "function",
        "function": {"name": turn.tool, "arguments": arguments},
    }


def _openai_completion(turn: _Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if turn.tool:
        message["tool_calls"] = [_openai_call(turn, TOOL_ARGS_JSON)]
    else:
        message["content"] = turn.text
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": turn.model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if turn.tool else "stop",
            }
        ],
        "usage": _openai_usage(turn),
    }


def _openai_chunks(turn: _Turn, include_usage: bool) -> list[dict[str, Any]]:
    base = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": turn.model,
        "system_fingerprint": "fp_fake",
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], **extra}

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if turn.tool:
        chunks.append(chunk({"tool_calls": [{"index": 0, **_openai_call(turn, "")}]}))
        chunks += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
            for part in _halves(TOOL_ARGS_JSON)
        ]
    else:
        chunks += [chunk({"content": part}) for part in _halves(turn.text)]
    chunks.append(chunk({}, "tool_calls" if turn.tool else "stop"))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": _openai_usage(turn)})
    return chunks


class FakeOpenAI(_FakeProvider):
    """OpenAI chat completions: base_url http://127.0.0.1:PORT/v1, Bearer keys."""

    kind = "openai"
    path_prefix = "/v1"
    auth_message = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."

    def __init__(self, keys: set[str] | None = None) -> None:
        super().__init__(keys, OPENAI_KEY, ["fake-gpt", "fake-gpt-mini"])

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
        ]

    def key_of(self, request: Request) -> str | None:
        return _bearer(request)

    def error_body(self, status: int, message: str, retry_after: float | None) -> Any:
        kind = OPENAI_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        return {
            "error": {
                "message": message,
                "type": kind,
                "param": None,
                "code": OPENAI_CODES.get(status),
            }
        }

    async def chat(self, request: Request) -> Answer:
        admitted = await self._admit(request, _check_openai, _streamed)
        if isinstance(admitted, Response):
            return admitted
        body, fault = admitted
        turn = _openai_turn(body)
        if not _streamed(body):
            return _json(_openai_completion(turn))
        options = body.get("stream_options") or {}
        chunks = _openai_chunks(turn, options.get("include_usage") is True)
        frames = [f"data: {_dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
        return self._stream(frames, fault, "text/event-stream; charset=utf-8")

    async def list_models(self, request: Request) -> Answer:
        admitted = await self._admit(request, None, _never)
        if isinstance(admitted, Response):
            return admitted
        data = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
            for m in self.models
        ]
        return _json({"object": "list", "data": data})


# -- Anthropic ---------------------------------------------------------------------------
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def _check_anthropic_tool_results(i: int, blocks: list[Any], previous: Any) -> str | None:
    used = set()
    if isinstance(previous, dict) and previous.get("role") == "assistant":
        used = {b.get("id") for b in _blocks(previous) if b.get("type") == "tool_use"}
    for j, block in enumerate(blocks):
        if block.get("type") == "tool_result" and block.get("tool_use_id") not in used:
            return (
                f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
    return None


def _check_anthropic_message(i: int, message: Any, previous: Any) -> str | None:
    if not isinstance(message, dict):
        return f"messages.{i}: Input should be a valid dictionary"
    if message.get("role") not in ("user", "assistant"):
        return f"messages.{i}.role: Input should be 'user' or 'assistant'"
    content = message.get("content")
    if not isinstance(content, str | list):
        return f"messages.{i}.content: Field required (a string or a list of content blocks)"
    blocks = _blocks(message)
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return f"messages.{i}.content.{j}.type: Field required"
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            return f"messages.{i}.content.{j}.text: Field required"
    return _check_anthropic_tool_results(i, blocks, previous)


def _check_anthropic_system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return None
    if isinstance(system, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        return None
    return "system: Input should be a valid string or a list of text blocks"


def _check_anthropic_tools(tools: Any) -> str | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            return f"tools.{i}.name: Field required"
        server_tool = tool.get("type") not in (None, "custom")  # web_search_..., bash_...
        if not server_tool and not isinstance(tool.get("input_schema"), dict):
            return f"tools.{i}.custom.input_schema: Field required"
    return None


def _check_anthropic(body: Any, counting: bool = False) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not counting and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous: Any = None
    for i, message in enumerate(messages):
        problem = _check_anthropic_message(i, message, previous)
        if problem:
            return problem
        previous = message
    if messages[0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    return _check_anthropic_system(body.get("system")) or _check_anthropic_tools(body.get("tools"))


def _anthropic_turn(body: dict[str, Any]) -> _Turn:
    messages = body["messages"]
    last = messages[-1]
    results = [b for b in _blocks(last) if b.get("type") == "tool_result"]
    result = _text_of(results[0].get("content")) if results else None
    users = [
        _joined_text([b for b in _blocks(m) if b.get("type") == "text"])
        for m in messages
        if m["role"] == "user"
    ]
    users = [text for text in users if text]
    return _decide(
        "anthropic",
        body["model"],
        [t["name"] for t in body.get("tools") or []],
        last["role"] == "user",
        result,
        user_text=users[-1] if users else "",
        count=len(messages),
    )


def _anthropic_message(turn: _Turn) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": turn.text}
    if turn.tool:
        block = {
            "type": "tool_use",
            "id": f"toolu_{secrets.token_hex(12)}",
            "name": turn.tool,
            "input": TOOL_ARGS,
        }
    return {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": [block],
        "stop_reason": "tool_use" if turn.tool else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": turn.prompt_tokens,
            "output_tokens": OUTPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _anthropic_events(turn: _Turn) -> list[dict[str, Any]]:
    message = _anthropic_message(turn)
    block = message["content"][0]
    usage = {**message["usage"], "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "usage": usage}
    if turn.tool:
        first = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _halves(TOOL_ARGS_JSON)]
    else:
        first = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _halves(turn.text)]
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": first},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": OUTPUT_TOKENS},
        },
        {"type": "message_stop"},
    ]


class FakeAnthropic(_FakeProvider):
    """The Anthropic Messages API: base_url http://127.0.0.1:PORT, x-api-key (or Bearer)."""

    kind = "anthropic"
    auth_message = "invalid x-api-key"

    def __init__(self, keys: set[str] | None = None) -> None:
        super().__init__(keys, ANTHROPIC_KEY, ["claude-fake-1"])

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
        ]

    def key_of(self, request: Request) -> str | None:
        return request.headers.get("x-api-key") or _bearer(request)

    def error_body(self, status: int, message: str, retry_after: float | None) -> Any:
        kind = ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}

    async def messages(self, request: Request) -> Answer:
        admitted = await self._admit(request, _check_anthropic, _streamed)
        if isinstance(admitted, Response):
            return admitted
        body, fault = admitted
        turn = _anthropic_turn(body)
        if not _streamed(body):
            return _json(_anthropic_message(turn))
        frames = [
            f"event: {e['type']}\ndata: {_dumps(e)}\n\n".encode() for e in _anthropic_events(turn)
        ]
        # Odd-sized chunks on purpose: events arrive split across reads.
        return self._stream(frames, fault, "text/event-stream; charset=utf-8", chunk=97)

    async def count_tokens(self, request: Request) -> Answer:
        admitted = await self._admit(request, lambda b: _check_anthropic(b, True), _never)
        if isinstance(admitted, Response):
            return admitted
        return _json({"input_tokens": 7 + len(admitted[0]["messages"])})

    async def list_models(self, request: Request) -> Answer:
        admitted = await self._admit(request, None, _never)
        if isinstance(admitted, Response):
            return admitted
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z",
            }
            for m in self.models
        ]
        return _json(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )


# -- Gemini (AI Studio, API key) ---------------------------------------------------------
GEMINI_PART_KEYS = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
    }
)


def _check_gemini_part(where: str, part: Any) -> str | None:
    if not isinstance(part, dict) or not GEMINI_PART_KEYS & part.keys():
        return f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
    for field in ("functionCall", "functionResponse"):
        value = part.get(field)
        if field in part and (not isinstance(value, dict) or not value.get("name")):
            snake = "function_call" if field == "functionCall" else "function_response"
            return f"* GenerateContentRequest.{where}.{snake}.name: Name cannot be empty."
    return None


def _check_gemini_content(where: str, content: Any, system: bool = False) -> str | None:
    if not isinstance(content, dict):
        return f"* GenerateContentRequest.{where}: must be an object"
    if not system and content.get("role", "user") not in ("user", "model"):
        return "Please use a valid role: user, model."
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
    for j, part in enumerate(parts):
        problem = _check_gemini_part(f"{where}.parts[{j}]", part)
        if problem:
            return problem
    return None


def _check_gemini_tools(tools: Any) -> str | None:
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t for t in tools):
        return "* GenerateContentRequest.tools: must be a list of Tool objects"
    for i, tool in enumerate(tools):
        declarations = tool.get("functionDeclarations")
        if declarations is None:
            continue  # googleSearch, codeExecution, urlContext...
        if not isinstance(declarations, list):
            return f"* GenerateContentRequest.tools[{i}].function_declarations: must be a list"
        for j, declaration in enumerate(declarations):
            if not isinstance(declaration, dict) or not declaration.get("name"):
                return f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Name cannot be empty."
    return None


def _check_gemini(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        problem = _check_gemini_content(f"contents[{i}]", content)
        if problem:
            return problem
    system = body.get("systemInstruction")
    if system is not None:
        problem = _check_gemini_content("system_instruction", system, system=True)
        if problem:
            return problem
    return _check_gemini_tools(body.get("tools"))


def _check_gemini_count(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("generateContentRequest"), dict):
        return _check_gemini(body["generateContentRequest"])
    return _check_gemini(body)


def _gemini_result(response: Any) -> str:
    """A functionResponse's response as text: {"result"|"output"|"content": str} unwrapped,
    any other JSON stringified."""
    if isinstance(response, dict) and len(response) == 1:
        ((name, value),) = response.items()
        if name in ("result", "output", "content") and isinstance(value, str):
            return value
    return response if isinstance(response, str) else _dumps(response)


def _gemini_turn(model: str, body: dict[str, Any]) -> _Turn:
    contents = body["contents"]
    last = contents[-1]
    responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
    result = _gemini_result(responses[0].get("response")) if responses else None
    users = [_joined_text(c["parts"]) for c in contents if c.get("role", "user") == "user"]
    users = [text for text in users if text]
    tools = [
        d["name"] for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []
    ]
    return _decide(
        "gemini",
        model,
        tools,
        last.get("role", "user") == "user",
        result,
        user_text=users[-1] if users else "",
        count=len(contents),
    )


def _gemini_response(
    turn: _Turn, parts: list[dict[str, Any]], last: bool, response_id: str = ""
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    answer: dict[str, Any] = {"candidates": [candidate], "modelVersion": turn.model}
    if last:
        candidate["finishReason"] = "STOP"
        answer["usageMetadata"] = {
            "promptTokenCount": turn.prompt_tokens,
            "candidatesTokenCount": OUTPUT_TOKENS,
            "totalTokenCount": turn.prompt_tokens + OUTPUT_TOKENS,
        }
    answer["responseId"] = response_id or secrets.token_hex(8)
    return answer


def _gemini_events(turn: _Turn) -> list[dict[str, Any]]:
    """A streamed answer: text over two events; a function call in one (as Gemini does)."""
    same = secrets.token_hex(8)  # one responseId for all the events of an answer
    if turn.tool:
        call = {"functionCall": {"name": turn.tool, "args": TOOL_ARGS}}
        return [_gemini_response(turn, [call], True, same)]
    first, rest = _halves(turn.text)
    return [
        _gemini_response(turn, [{"text": first}], False, same),
        _gemini_response(turn, [{"text": rest}], True, same),
    ]


class FakeGeminiKey(_FakeProvider):
    """The Gemini API (AI Studio) with API keys: base_url http://127.0.0.1:PORT,
    x-goog-api-key header or ?key=."""

    kind = "gemini"
    auth_message = "API key not valid. Please pass a valid API key."

    def __init__(self, keys: set[str] | None = None) -> None:
        super().__init__(keys, GEMINI_KEY, ["gemini-fake-pro"])

    def routes(self) -> list[Route]:
        base = "/v1beta/models/{model}"
        return [
            Route(base + ":generateContent", self.generate, methods=["POST"]),
            Route(base + ":streamGenerateContent", self.stream_generate, methods=["POST"]),
            Route(base + ":countTokens", self.count_tokens, methods=["POST"]),
            Route("/v1beta/models", self.list_models, methods=["GET"]),
        ]

    def key_of(self, request: Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query_params.get("key")

    def error_body(self, status: int, message: str, retry_after: float | None) -> Any:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "UNKNOWN"),
        }
        if status == 429 and retry_after is not None:
            delay = f"{_seconds_text(retry_after)}s"
            error["details"] = [{"@type": RETRY_INFO, "retryDelay": delay}]
        return {"error": error}

    async def generate(self, request: Request) -> Answer:
        admitted = await self._admit(request, _check_gemini, _never)
        if isinstance(admitted, Response):
            return admitted
        turn = _gemini_turn(request.path_params["model"], admitted[0])
        part = {"functionCall": {"name": turn.tool, "args": TOOL_ARGS}} if turn.tool else None
        return _json(_gemini_response(turn, [part or {"text": turn.text}], last=True))

    async def stream_generate(self, request: Request) -> Answer:
        admitted = await self._admit(request, _check_gemini, lambda _body: True)
        if isinstance(admitted, Response):
            return admitted
        body, fault = admitted
        events = [
            _dumps(e) for e in _gemini_events(_gemini_turn(request.path_params["model"], body))
        ]
        if request.query_params.get("alt") == "sse":
            frames = [f"data: {e}\r\n\r\n".encode() for e in events]
            return self._stream(frames, fault, "text/event-stream")
        # Without alt=sse the answer is one JSON array, written as the events come.
        if fault is not None and fault.kind == "empty_stream":
            return _EventStream([b"[]"], "application/json; charset=UTF-8")
        frames = [(("[" if i == 0 else ",\r\n") + e).encode() for i, e in enumerate(events)]
        return self._stream(frames + [b"]"], fault, "application/json; charset=UTF-8")

    async def count_tokens(self, request: Request) -> Answer:
        admitted = await self._admit(request, _check_gemini_count, _never)
        if isinstance(admitted, Response):
            return admitted
        body = admitted[0]
        contents = body.get("generateContentRequest", body)["contents"]
        return _json({"totalTokens": 7 + len(contents)})

    async def list_models(self, request: Request) -> Answer:
        admitted = await self._admit(request, None, _never)
        if isinstance(admitted, Response):
            return admitted
        methods = ["generateContent", "streamGenerateContent", "countTokens"]
        models = [
            {
                "name": f"models/{m}",
                "version": "001",
                "displayName": m.replace("-", " ").title(),
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 65_536,
                "supportedGenerationMethods": methods,
            }
            for m in self.models
        ]
        return _json({"models": models})
