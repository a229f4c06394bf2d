"""The Gemini-native API end to end (issue 4): the google-genai SDK (v1beta and v1), the
older google-generativeai REST transport and raw HTTP against a real `agproxy serve`,
with the fake Google upstream's request log as the witness of what went upstream."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_google import Fault, count_tokens
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from conftest import Gateway, add_to, google_env, spawn

MODEL = "gemini-3-flash"
VERSIONS = ["v1beta", "v1"]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAC"
    "hwGA60e6kgAAAABJRU5ErkJggg=="
)
SIGNATURE = "Q2lyY3VpdFNpZ25hdHVyZQ=="


def derive_session_id(account_id: str) -> str:
    """UPSTREAM.md §3.1, written out independently of agproxy's own copy."""
    h = -3750763034362895579
    for b in account_id.encode():
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        h ^= b
    return str(h - (1 << 64) if h >= 1 << 63 else h)


class Native:
    """One gateway (auth on, one account) shared by this module's tests."""

    def __init__(self, gw: Gateway, account: Any, account_id: str) -> None:
        self.gw, self.account, self.account_id = gw, account, account_id
        self._clients: list[genai.Client] = []  # a dropped Client closes its connection pool

    @property
    def key(self) -> str:
        return self.gw.api_key

    def client(self, api_version: str | None = None, key: str | None = None) -> genai.Client:
        options: dict[str, Any] = {"base_url": self.gw.base_url}
        if api_version:
            options["api_version"] = api_version
        client = genai.Client(api_key=key or self.key, http_options=options)
        self._clients.append(client)
        return client

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {"x-goog-api-key": self.key, **kw.pop("headers", {})}
        return httpx.post(self.gw.base_url + path, json=body, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Native]:
    root: Path = tmp_path_factory.mktemp("native")
    gw = spawn(root / "gw", AGPROXY_AUTH_MODE="all_except_health", **google_env(fake_google_server))
    tag = uuid.uuid4().hex[:8]
    account = fake_google_server.add_account(
        email=f"native-{tag}@example.com", project=f"proj-native-{tag}"
    )
    assert add_to(gw, account)["active_accounts"] == 1
    [listed] = json.loads(gw.cli("accounts", "list", "--json").stdout)
    try:
        yield Native(gw, account, listed["id"])
    finally:
        gw.stop()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def sse_events(raw: str) -> list[dict[str, Any]]:
    """Strict SSE framing: blank-line separated events, each exactly one `data: ` line."""
    blocks = [b for b in re.split(r"\r?\n\r?\n", raw) if b.strip()]
    events = []
    for block in blocks:
        lines = block.splitlines()
        assert len(lines) == 1 and lines[0].startswith("data: "), block
        events.append(json.loads(lines[0][len("data: ") :]))
    assert raw.endswith(("\n\n", "\r\n\r\n"))
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(
        p.get("text", "")
        for e in events
        for c in e.get("candidates", [])
        for p in c["content"]["parts"]
    )


# -- generate, stream, countTokens through google-genai --------------------------------------
@pytest.mark.parametrize("api_version", VERSIONS)
def test_generate_with_genai(native: Native, fake_google: Any, api_version: str) -> None:
    reply = native.client(api_version).models.generate_content(model=MODEL, contents="Hello there")
    assert reply.text == "echo: Hello there"
    assert reply.candidates and reply.candidates[0].finish_reason == types.FinishReason.STOP
    assert reply.sdk_http_response and reply.sdk_http_response.headers
    assert reply.sdk_http_response.headers["x-agproxy-model"] == MODEL
    [call] = fake_google.calls("generateContent")
    assert call.path == "/v1internal:generateContent" and call.body["model"] == MODEL
    assert call.body["request"]["contents"] == [user("Hello there")]


@pytest.mark.parametrize("api_version", VERSIONS)
def test_stream_with_genai(native: Native, fake_google: Any, api_version: str) -> None:
    chunks = list(
        native.client(api_version).models.generate_content_stream(
            model=MODEL, contents="stream this answer"
        )
    )
    assert len(chunks) >= 3  # one SDK chunk per upstream event, not one buffered reply
    assert "".join(c.text or "" for c in chunks) == "echo: stream this answer"
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata and last.usage_metadata.total_token_count
    [call] = fake_google.calls("streamGenerateContent")
    assert call.query.get("alt") == "sse"
    assert not fake_google.calls("generateContent")


@pytest.mark.parametrize("api_version", VERSIONS)
def test_count_tokens_with_genai(native: Native, fake_google: Any, api_version: str) -> None:
    contents = [
        user("count these words, please"),
        {"role": "model", "parts": [{"text": "ok"}]},
        user("and these ones as well"),
    ]
    counted = native.client(api_version).models.count_tokens(model=MODEL, contents=contents)
    assert counted.total_tokens == count_tokens(contents)
    [call] = fake_google.calls("countTokens")
    assert call.body["request"]["contents"] == contents
    assert not fake_google.calls("generateContent")


def test_count_tokens_with_an_image_part(native: Native, fake_google: Any) -> None:
    contents = [
        {
            "role": "user",
            "parts": [
                {"text": "and this image"},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
            ],
        }
    ]
    counted = native.post(f"/v1beta/models/{MODEL}:countTokens", {"contents": contents})
    assert counted.status_code == 200 and counted.json() == {"totalTokens": count_tokens(contents)}
    assert fake_google.calls("countTokens")[0].body["request"]["contents"] == contents


# -- raw framing ---------------------------------------------------------------------------------
def test_sse_framing_on_the_wire(native: Native, fake_google: Any) -> None:
    with httpx.stream(
        "POST",
        f"{native.gw.base_url}/v1beta/models/{MODEL}:streamGenerateContent",
        params={"alt": "sse"},
        headers={"x-goog-api-key": native.key},
        json={"contents": [user("frame by frame")]},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-agproxy-model"] == MODEL
        raw = "".join(response.iter_text())
    events = sse_events(raw)
    assert len(events) >= 3
    assert all("response" not in e and "traceId" not in e for e in events)  # unwrapped
    assert text_of(events) == "echo: frame by frame"
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["promptTokenCount"] == count_tokens([user("frame by frame")])


def test_stream_without_alt_sse_is_a_json_array(native: Native, fake_google: Any) -> None:
    response = native.post(
        f"/v1beta/models/{MODEL}:streamGenerateContent", {"contents": [user("as an array")]}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    events = json.loads(response.text)
    assert isinstance(events, list) and len(events) >= 3
    assert all("candidates" in e and "response" not in e for e in events)
    assert text_of(events) == "echo: as an array"
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


# -- function calling, images, envelope, usage ---------------------------------------------------
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters={"type": "OBJECT", "required": ["city"], "properties": {"city": {"type": "STRING"}}},
)


def test_function_call_round_trip(native: Native, fake_google: Any) -> None:
    """The model asks for a function, the client runs it and sends the result back."""
    client = native.client()
    fake_google.script(
        parts=[
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": SIGNATURE,
            }
        ]
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
    first = client.models.generate_content(model=MODEL, contents=[question], config=config)
    [call] = first.function_calls or []
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
    declared = fake_google.calls("generateContent")[0].body["request"]["tools"]
    [declaration] = declared[0].get("functionDeclarations") or declared[0]["function_declarations"]
    assert declaration["name"] == "get_weather"
    assert declaration["parameters"]["properties"] == {"city": {"type": "STRING"}}

    answer = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(name="get_weather", response={"result": "sunny, 24C"})
        ],
    )
    second = client.models.generate_content(
        model=MODEL, config=config, contents=[question, first.candidates[0].content, answer]
    )  # type: ignore[index, list-item]
    assert second.text == "echo: [functionResponse get_weather]"
    sent = fake_google.calls("generateContent")[1].body["request"]["contents"]
    model_turn = sent[1]["parts"][0]
    assert model_turn["functionCall"]["name"] == "get_weather"
    assert model_turn["thoughtSignature"] == SIGNATURE  # the issued signature, unchanged
    response_part = (
        sent[2]["parts"][0].get("functionResponse") or sent[2]["parts"][0]["function_response"]
    )
    assert response_part["response"] == {"result": "sunny, 24C"}


def test_automatic_function_calling(native: Native, fake_google: Any) -> None:
    """The SDK's own loop: it calls the Python function and continues the conversation."""
    seen: list[str] = []

    def get_weather(city: str) -> str:
        """Current weather in a city."""
        seen.append(city)
        return f"rainy in {city}"

    fake_google.script(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}])
    reply = native.client().models.generate_content(
        model=MODEL,
        contents="Weather in Oslo?",
        config=types.GenerateContentConfig(tools=[get_weather]),
    )
    assert seen == ["Oslo"]
    assert reply.text == "echo: [functionResponse get_weather]"
    first, second = fake_google.calls("generateContent")
    assert first.body["request"]["tools"]
    history = second.body["request"]["contents"]
    assert [c["role"] for c in history] == ["user", "model", "user"]
    # The SDK dropped no signature here because the fake sent none; the gateway supplies the
    # backend's "do not validate" sentinel so Gemini 3 accepts the history.
    assert history[1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"


def test_image_part_reaches_the_upstream_unchanged(native: Native, fake_google: Any) -> None:
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    response = native.post(
        f"/v1beta/models/{MODEL}:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "what is this?"}, part]}]},
    )
    assert response.status_code == 200
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "echo: what is this?"}]
    [call] = fake_google.calls("generateContent")
    assert call.body["request"]["contents"][0]["parts"][1] == part

    reply = native.client().models.generate_content(
        model=MODEL,
        contents=[types.Part.from_bytes(data=PNG, mime_type="image/png"), "describe it"],
    )
    assert reply.text == "echo: describe it"
    sent = fake_google.calls("generateContent")[-1].body["request"]["contents"][0]["parts"][0]
    inline = sent.get("inlineData") or sent["inline_data"]
    assert base64.b64decode(inline["data"]) == PNG
    assert (inline.get("mimeType") or inline["mime_type"]) == "image/png"


def test_envelope_the_upstream_receives(native: Native, fake_google: Any) -> None:
    before_ms = int(time.time() * 1000)
    body = {
        "contents": [user("hello envelope")],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
    }
    assert native.post(f"/v1beta/models/{MODEL}:generateContent", body).status_code == 200
    reply = native.client().models.generate_content(
        model=MODEL,
        contents="hello again",
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert reply.text == "echo: hello again"
    after_ms = int(time.time() * 1000)

    raw_call, sdk_call = fake_google.calls("generateContent")
    for call in (raw_call, sdk_call):
        envelope = call.body
        assert call.account_email == native.account.email
        assert call.headers["authorization"] == f"Bearer {native.account.access_tokens[-1]}"
        assert envelope["project"] == native.account.project
        assert envelope["model"] == MODEL
        assert envelope["requestType"] == "agent" and envelope["userAgent"] == "antigravity"
        match = re.fullmatch(r"agent/(\d{13})/([0-9a-f]{8})", envelope["requestId"])
        assert match and before_ms <= int(match.group(1)) <= after_ms
        inner = envelope["request"]
        assert inner["sessionId"] == derive_session_id(native.account_id)
        assert inner["systemInstruction"]["role"] == "user"
        assert "model" not in inner
    assert raw_call.body["requestId"] != sdk_call.body["requestId"]
    inner = raw_call.body["request"]
    assert inner["systemInstruction"]["parts"] == [{"text": "You are terse."}]
    assert inner["generationConfig"] == body["generationConfig"]
    assert inner["safetySettings"] == body["safetySettings"]
    assert sdk_call.body["request"]["systemInstruction"]["parts"] == [{"text": "Be brief."}]


USAGE = {
    "promptTokenCount": 1200,
    "candidatesTokenCount": 85,
    "totalTokenCount": 1325,
    "cachedContentTokenCount": 1024,
    "thoughtsTokenCount": 40,
}


def test_usage_metadata_is_passed_through(native: Native, fake_google: Any) -> None:
    fake_google.script(parts=[{"text": "counted"}], usage=USAGE, times=3)
    reply = native.client().models.generate_content(model=MODEL, contents="usage please")
    usage = reply.usage_metadata
    assert usage is not None
    assert (
        usage.prompt_token_count,
        usage.candidates_token_count,
        usage.total_token_count,
        usage.cached_content_token_count,
        usage.thoughts_token_count,
    ) == (1200, 85, 1325, 1024, 40)
    raw = native.post(
        f"/v1beta/models/{MODEL}:generateContent", {"contents": [user("usage please")]}
    ).json()
    assert raw["usageMetadata"] == USAGE
    streamed = native.post(
        f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        {"contents": [user("usage please")]},
    )
    assert sse_events(streamed.text)[-1]["usageMetadata"] == USAGE


# -- models ----------------------------------------------------------------------------------------
def test_model_list_and_get_with_genai(native: Native, fake_google: Any) -> None:
    client = native.client("v1beta")
    listed = {m.name: m for m in client.models.list()}
    assert set(listed) == {f"models/{m}" for m in native.account.models}
    assert "generateContent" in (listed[f"models/{MODEL}"].supported_actions or [])
    got = client.models.get(model=MODEL)
    assert got.name == f"models/{MODEL}" and got.input_token_limit and got.output_token_limit
    assert native.client("v1").models.get(model=MODEL).name == f"models/{MODEL}"
    with pytest.raises(genai_errors.ClientError) as missing:
        client.models.get(model="llama-3-70b")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"


def test_model_list_with_genai_v1(native: Native, fake_google: Any) -> None:
    listed = [m.name for m in native.client("v1").models.list()]
    assert f"models/{MODEL}" in listed
    # The same path still answers the OpenAI shape to everyone else.
    plain = httpx.get(
        f"{native.gw.base_url}/v1/models",
        headers={"Authorization": f"Bearer {native.key}"},
        timeout=10,
    ).json()
    assert plain["object"] == "list" and MODEL in [m["id"] for m in plain["data"]]


def test_unknown_model_served_by_its_family(native: Native, fake_google: Any) -> None:
    client = native.client()
    reply = client.models.generate_content(
        model="gemini-3.5-flash-preview-09-2026", contents="which model?"
    )
    assert reply.text == "echo: which model?"
    assert reply.sdk_http_response and reply.sdk_http_response.headers
    assert reply.sdk_http_response.headers["x-agproxy-model"] == MODEL
    assert fake_google.calls("generateContent")[-1].body["model"] == MODEL

    with httpx.stream(
        "POST",
        f"{native.gw.base_url}/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse",
        headers={"x-goog-api-key": native.key},
        json={"contents": [user("pro please")]},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-agproxy-model"] == "gemini-3-pro-high"
        assert text_of(sse_events(response.read().decode())) == "echo: pro please"
    assert fake_google.calls("streamGenerateContent")[-1].body["model"] == "gemini-3-pro-high"
    got = client.models.get(model="gemini-3.5-flash-preview-09-2026")
    assert got.name == "models/gemini-3.5-flash-preview-09-2026"


# -- errors in Google's shape ----------------------------------------------------------------------
def google_error(response: httpx.Response, code: int, status: str) -> str:
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status) and error["message"]
    return str(error["message"])


def test_model_of_no_known_family_is_404(native: Native, fake_google: Any) -> None:
    for path in (
        "/v1beta/models/llama-3-70b:generateContent",
        "/v1/models/llama-3-70b:generateContent",
        "/v1beta/models/llama-3-70b:streamGenerateContent?alt=sse",
    ):
        message = google_error(native.post(path, {"contents": [user("hi")]}), 404, "NOT_FOUND")
        assert "llama-3-70b" in message
    with pytest.raises(genai_errors.ClientError) as raised:
        native.client().models.generate_content(model="llama-3-70b", contents="hi")
    assert raised.value.code == 404
    assert not fake_google.calls("generateContent") and not fake_google.calls(
        "streamGenerateContent"
    )


def test_malformed_json_is_400(native: Native, fake_google: Any) -> None:
    path = f"/v1beta/models/{MODEL}:generateContent"
    bad = httpx.post(
        native.gw.base_url + path,
        content=b'{"contents": [',
        timeout=30,
        headers={"x-goog-api-key": native.key, "content-type": "application/json"},
    )
    assert "Invalid JSON" in google_error(bad, 400, "INVALID_ARGUMENT")
    google_error(native.post(path, ["not", "an", "object"]), 400, "INVALID_ARGUMENT")
    google_error(native.post(path, {"contents": []}), 400, "INVALID_ARGUMENT")
    stream = httpx.post(
        native.gw.base_url + f"/v1/models/{MODEL}:streamGenerateContent?alt=sse",
        content=b"not json",
        timeout=30,
        headers={"x-goog-api-key": native.key, "content-type": "application/json"},
    )
    google_error(stream, 400, "INVALID_ARGUMENT")
    # Without a JSON content type (a browser's cross-origin "simple" request): 415.
    plain = httpx.post(
        native.gw.base_url + path,
        content=b'{"contents": []}',
        timeout=30,
        headers={"x-goog-api-key": native.key, "content-type": "text/plain"},
    )
    assert "Content-Type: application/json" in google_error(plain, 415, "INVALID_ARGUMENT")
    assert not [r for r in fake_google.requests if r.rpc.endswith("Content")]


def test_wrong_or_missing_key_is_401(native: Native, fake_google: Any) -> None:
    url = f"{native.gw.base_url}/v1beta/models/{MODEL}:generateContent"
    body = {"contents": [user("who am I?")]}
    wrong = httpx.post(url, params={"key": "sk-wrong-key-000000"}, json=body, timeout=30)
    assert "invalid API key" in google_error(wrong, 401, "UNAUTHENTICATED")
    missing = httpx.post(url, json=body, timeout=30)
    assert "missing API key" in google_error(missing, 401, "UNAUTHENTICATED")
    header = httpx.post(
        url, json=body, headers={"x-goog-api-key": "sk-wrong-key-000000"}, timeout=30
    )
    google_error(header, 401, "UNAUTHENTICATED")
    listing = httpx.get(f"{native.gw.base_url}/v1beta/models", params={"key": "nope"}, timeout=30)
    google_error(listing, 401, "UNAUTHENTICATED")
    assert not fake_google.calls("generateContent")
    right = httpx.post(url, params={"key": native.key}, json=body, timeout=30)
    assert right.status_code == 200 and text_of([right.json()]) == "echo: who am I?"
    with pytest.raises(genai_errors.ClientError) as raised:
        native.client(key="sk-wrong-key-000000").models.generate_content(model=MODEL, contents="hi")
    assert raised.value.code == 401 and raised.value.status == "UNAUTHENTICATED"


# -- the older google-generativeai SDK (REST transport) ------------------------------------------
def test_google_generativeai_rest_snippet(native: Native, fake_google: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import google.generativeai as genai_old

    # The README's third snippet, verbatim but for the key and the host.
    genai_old.configure(
        api_key=native.key,
        transport="rest",
        client_options={"api_endpoint": native.gw.base_url},
    )

    model = genai_old.GenerativeModel("gemini-3-flash")
    resp = model.generate_content("Hello")
    print(resp.text)

    assert resp.text == "echo: Hello"
    [call] = fake_google.calls("generateContent")
    assert call.body["request"]["contents"] == [user("Hello")]
    # Its streaming asks for the JSON-array form (no alt=sse).
    chunks = list(model.generate_content("stream through the old SDK", stream=True))
    assert len(chunks) >= 2
    assert "".join(c.text for c in chunks) == "echo: stream through the old SDK"
    assert fake_google.calls("streamGenerateContent")[-1].query.get("alt") == "sse"
    # Its count_tokens sends contents without a role.
    assert model.count_tokens("count me too").total_tokens == count_tokens([user("count me too")])
    assert {m.name for m in genai_old.list_models()} == {
        f"models/{m}" for m in native.account.models
    }
    assert genai_old.get_model(f"models/{MODEL}").name == f"models/{MODEL}"


def test_upstream_error_is_returned_in_google_shape(native: Native, fake_google: Any) -> None:
    fake_google.inject(Fault.invalid_argument("Request contains an invalid argument."))
    with pytest.raises(genai_errors.ClientError) as raised:
        native.client().models.generate_content(model=MODEL, contents="bad")
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    assert "invalid argument" in (raised.value.message or "")
