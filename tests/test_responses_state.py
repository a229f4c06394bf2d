"""The rest of the Responses API through the official `openai` SDK: stored responses and
`previous_response_id`, retrieve/delete/input items (each key sees only its own),
compaction, custom (freeform) tools and file inputs."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, data_dir_store, serving_google

MODEL = "gemini-3-flash"
APPLY_PATCH: dict[str, Any] = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch to the workspace.",
    "format": {
        "type": "grammar",
        "syntax": "lark",
        "definition": 'start: "*** Begin Patch" LF hunk+ "*** End Patch"',
    },
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    with serving_google(
        tmp_path_factory, fake_google_server, "rstate", AGPROXY_AUTH_MODE="strict"
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def keys(gw: Gateway) -> dict[str, str]:
    made = {}
    for name in ("alice", "bob"):
        answer = gw.admin("POST", "/api/keys", json={"name": name})
        assert answer.status_code == 201, answer.text
        made[name] = answer.json()["secret"]
    return made


@pytest.fixture
def client(gw: Gateway, fake_google: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)


def sent_contents(fake_google: Any) -> list[dict[str, Any]]:
    return list(fake_google.calls("streamGenerateContent")[-1].body["request"]["contents"])


def texts(contents: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["role"], p["text"]) for c in contents for p in c["parts"] if "text" in p]


def test_three_turns_continue_with_previous_response_id(
    client: openai.OpenAI, fake_google: Any
) -> None:
    first = client.responses.create(model=MODEL, input="My name is Ada.", instructions="Be terse.")
    second = client.responses.create(
        model=MODEL, input="What is my name?", previous_response_id=first.id
    )
    assert texts(sent_contents(fake_google)) == [
        ("user", "My name is Ada."),
        ("model", "echo: My name is Ada."),
        ("user", "What is my name?"),
    ]
    # Instructions are not carried over (as the API documents): only this turn's count.
    assert "systemInstruction" not in fake_google.calls("streamGenerateContent")[-1].body["request"]
    with client.responses.stream(
        model=MODEL, input="And again?", previous_response_id=second.id
    ) as stream:
        third = stream.get_final_response()
    assert texts(sent_contents(fake_google)) == [
        ("user", "My name is Ada."),
        ("model", "echo: My name is Ada."),
        ("user", "What is my name?"),
        ("model", "echo: What is my name?"),
        ("user", "And again?"),
    ]
    assert third.previous_response_id == second.id and third.output_text == "echo: And again?"


def test_retrieve_input_items_and_delete(client: openai.OpenAI) -> None:
    made = client.responses.create(model=MODEL, input="Keep me.", metadata={"run": "7"})
    got = client.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == "echo: Keep me."
    assert got.metadata == {"run": "7"}
    items = client.responses.input_items.list(made.id)
    [item] = items.data
    assert item.type == "message" and item.content[0].text == "Keep me."  # type: ignore[union-attr]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve(made.id)
    assert f"Response with id '{made.id}' not found." in str(missing.value)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)
    with pytest.raises(openai.BadRequestError) as gone:
        client.responses.create(model=MODEL, input="Hi", previous_response_id=made.id)
    assert gone.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert f"Previous response with id '{made.id}' not found." in str(gone.value)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    made = client.responses.create(model=MODEL, input="Forget me.", store=False)
    assert (made.model_extra or {})["store"] is False  # the request's fields are repeated
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_a_key_sees_only_its_own_responses(gw: Gateway, keys: dict[str, str]) -> None:
    alice = openai.OpenAI(api_key=keys["alice"], base_url=gw.base_url + "/v1", max_retries=0)
    bob = openai.OpenAI(api_key=keys["bob"], base_url=gw.base_url + "/v1", max_retries=0)
    owner = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    secret = alice.responses.create(model=MODEL, input="Alice's secret plan.")
    assert alice.responses.retrieve(secret.id).output_text == "echo: Alice's secret plan."
    for other in (bob, owner):
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(secret.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(secret.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(secret.id)
        with pytest.raises(openai.BadRequestError):
            other.responses.create(model=MODEL, input="Go on", previous_response_id=secret.id)
    assert alice.responses.retrieve(secret.id).id == secret.id  # nobody else deleted it


def test_stored_responses_survive_a_restart(gw: Gateway, client: openai.OpenAI) -> None:
    made = client.responses.create(model=MODEL, input="Remember across restarts.")
    deadline = time.time() + 5
    while time.time() < deadline:  # written off the request path
        with gw_db(gw) as rows:
            if made.id in rows:
                break
        time.sleep(0.05)
    else:
        pytest.fail("the response was never written")
    assert client.responses.retrieve(made.id).output_text == "echo: Remember across restarts."


class gw_db:  # noqa: N801 - a small context manager
    def __init__(self, gw: Gateway) -> None:
        self.engine = data_dir_store(gw.data_dir)

    def __enter__(self) -> set[str]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.text("SELECT id FROM stored_responses"))}

    def __exit__(self, *exc: Any) -> None:
        self.engine.dispose()


# The SDK types compaction output as output items, and warns when it dumps the user
# messages among them (the API's own shape).
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_compact_then_continue(client: openai.OpenAI, fake_google: Any) -> None:
    first = client.responses.create(model=MODEL, input="We are fixing bug #12 in parser.py.")
    fake_google.script(parts=[{"text": "The user and assistant are fixing bug #12 in parser.py."}])
    compacted = client.responses.compact(
        model=MODEL, previous_response_id=first.id, input=[{"role": "user", "content": "Next?"}]
    )
    assert compacted.object == "response.compaction"
    kinds = [item.type for item in compacted.output]
    assert kinds == ["message", "message", "compaction"]  # the user's messages, the summary
    summary_request = fake_google.calls("streamGenerateContent")[-1].body["request"]
    transcript = summary_request["contents"][0]["parts"][0]["text"]
    assert "bug #12 in parser.py" in transcript and "echo: We are fixing" in transcript
    assert "compact" in summary_request["systemInstruction"]["parts"][0]["text"]
    assert compacted.usage.total_tokens > 0
    # The compacted items are the next request's history: the summary stands in for it.
    items = [item.model_dump(exclude_none=True) for item in compacted.output]
    later = client.responses.create(
        model=MODEL, input=[*items, {"role": "user", "content": "Go on."}]
    )
    assert later.output_text.endswith("Go on.")
    sent = texts(sent_contents(fake_google))
    assert any("fixing bug #12 in parser.py" in t and "compacted" in t for _, t in sent)


def test_a_compaction_item_from_elsewhere_is_refused(client: openai.OpenAI) -> None:
    forged = base64.b64encode(b"x" * 64).decode()
    for content in (forged, "agproxy-compaction-1:!!!not base64"):
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(
                model=MODEL,
                input=[{"type": "compaction", "encrypted_content": content}],  # type: ignore[list-item]
            )
        assert "encrypted_content" in str(refused.value)


def test_a_compressed_bomb_is_refused(gw: Gateway) -> None:
    import zlib

    bomb = base64.urlsafe_b64encode(zlib.compress(b"A" * (64 * 1024 * 1024), 9)).decode()
    answer = httpx.post(
        gw.base_url + "/v1/responses",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={
            "model": MODEL,
            "input": [{"type": "compaction", "encrypted_content": "agproxy-compaction-1:" + bomb}],
        },
        timeout=30,
    )
    assert answer.status_code == 400
    assert "too large" in answer.json()["error"]["message"]


def test_custom_tool_round_trip(client: openai.OpenAI, fake_google: Any) -> None:
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch"
    fake_google.script(parts=[{"functionCall": {"name": "apply_patch", "args": {"input": patch}}}])
    with client.responses.stream(
        model=MODEL, tools=[APPLY_PATCH], input="Create hello.txt"
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.custom_tool_call_input.delta" in types
    assert "response.custom_tool_call_input.done" in types
    [call] = final.output
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    assert call.input == patch
    declared = fake_google.calls("streamGenerateContent")[-1].body["request"]["tools"]
    [declaration] = declared[0]["functionDeclarations"]
    assert declaration["name"] == "apply_patch"
    assert '"*** Begin Patch"' in declaration["description"]  # the grammar is passed on
    assert declaration["parameters"]["required"] == ["input"]
    # The tool's output goes back; the call is replayed as the function call it was.
    done = client.responses.create(
        model=MODEL,
        tools=[APPLY_PATCH],  # type: ignore[list-item]
        previous_response_id=final.id,
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}],
    )
    assert done.output_text.startswith("echo:")
    contents = sent_contents(fake_google)
    calls = [p["functionCall"] for c in contents for p in c["parts"] if "functionCall" in p]
    results = [
        p["functionResponse"] for c in contents for p in c["parts"] if "functionResponse" in p
    ]
    assert calls[0]["name"] == "apply_patch" and calls[0]["args"] == {"input": patch}
    assert results[0]["name"] == "apply_patch" and "Done!" in str(results[0]["response"])


def test_input_file_and_input_image(client: openai.OpenAI, fake_google: Any) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n0000").decode()
    client.responses.create(
        model=MODEL,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Read these."},
                    {"type": "input_file", "filename": "a.pdf", "file_data": pdf},
                    {
                        "type": "input_file",
                        "filename": "b.txt",
                        "file_data": "data:text/plain;base64," + base64.b64encode(b"hi").decode(),
                    },
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64," + png,
                        "detail": "auto",
                    },
                ],
            }
        ],
    )
    parts = sent_contents(fake_google)[0]["parts"]
    inline = [p["inlineData"] for p in parts if "inlineData" in p]
    assert inline == [
        {"mimeType": "application/pdf", "data": pdf},
        {"mimeType": "text/plain", "data": base64.b64encode(b"hi").decode()},
        {"mimeType": "image/png", "data": png},
    ]


@pytest.mark.parametrize(
    ("part", "needle"),
    [
        ({"type": "input_file", "file_id": "file-123"}, "no Files API"),
        ({"type": "input_file", "file_url": "https://example.com/a.pdf"}, "file_url"),
        ({"type": "input_file", "file_data": "AAAA"}, "cannot tell the file's type"),
        ({"type": "input_image", "file_id": "file-9"}, "no Files API"),
        ({"type": "input_audio", "input_audio": {}}, "unknown content part"),
    ],
)
def test_file_inputs_the_gateway_cannot_take_are_refused(
    gw: Gateway, part: dict[str, Any], needle: str
) -> None:
    answer = httpx.post(
        gw.base_url + "/v1/responses",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": MODEL, "input": [{"role": "user", "content": [part]}]},
    )
    assert answer.status_code == 400, answer.text
    assert needle in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": 12}, "previous_response_id"),
        ({"previous_response_id": "resp_nope"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tools": [{"type": "custom"}]}, "tools[0].name"),
    ],
)
def test_bad_state_fields_get_400(gw: Gateway, body: dict[str, Any], param: str) -> None:
    answer = httpx.post(
        gw.base_url + "/v1/responses",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": MODEL, "input": "hi", **body},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_compact_needs_something_to_compact(gw: Gateway) -> None:
    answer = httpx.post(
        gw.base_url + "/v1/responses/compact",
        headers={"Authorization": f"Bearer {gw.api_key}"},
        json={"model": MODEL},
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "input"
