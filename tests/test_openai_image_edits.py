"""Image edits through `/v1/images/edits` (multipart/form-data): the official `openai` SDK
against the fake Google upstream, and hostile forms sent by hand."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from agproxy.monitor.forms import boundary_of, summarize_multipart
from agproxy.translate.images import MASK_INSTRUCTION, MAX_EDIT_BYTES, MAX_EDIT_IMAGES
from conftest import Gateway, borrow, serving_google

EDITS = "/v1/images/edits"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x02" * 64
GIF = b"GIF89a" + b"\x03" * 64


def png(width: int = 2, height: int = 2, alpha: bool = True) -> bytes:
    """A real PNG: RGBA (colour type 6) with a transparent left column, or opaque RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    pixel = (
        (lambda x: b"\xff\x00\x00" + (b"\x00" if x == 0 else b"\xff"))
        if alpha
        else (lambda x: b"\xff\x00\x00")
    )
    rows = b"".join(b"\x00" + b"".join(pixel(x) for x in range(width)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    with serving_google(
        tmp_path_factory, fake_google_server, "edit", AGPROXY_MONITOR_CAPTURE_BODIES="true"
    ) as gateway:
        yield gateway


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)


def parts_of(call: Any) -> list[dict[str, Any]]:
    [content] = call.body["request"]["contents"]
    assert content["role"] == "user"
    return list(content["parts"])


# -- through the SDK ------------------------------------------------------------------
def test_edit_one_image(gw: Gateway, fake_google: Any) -> None:
    photo = png(4, 4)
    result = sdk(gw).images.edit(image=("cat.png", photo, "image/png"), prompt="add a red hat")
    [image] = result.data
    assert base64.b64decode(image.b64_json or "").startswith(b"\x89PNG\r\n\x1a\n")
    [call] = fake_google.calls("generateContent")
    envelope = call.body
    assert envelope["requestType"] == "image_gen"
    assert envelope["model"] == "gemini-3.1-flash-image"
    assert "sessionId" not in envelope["request"]
    assert parts_of(call) == [
        {"inlineData": {"mimeType": "image/png", "data": b64(photo)}},
        {"text": "add a red hat"},
    ]
    assert envelope["request"]["generationConfig"] == {
        "candidateCount": 1,
        "imageConfig": {"aspectRatio": "1:1"},
        "maxOutputTokens": 8192,
    }


def test_edit_a_list_of_images_with_a_mask(gw: Gateway, fake_google: Any) -> None:
    first, mask = png(3, 2), png(3, 2)
    result = sdk(gw).images.edit(
        # The SDK sends a list as `image[]` parts; the type comes from the bytes, not the
        # name or the declared type.
        image=[("a.png", first, "image/png"), ("b.jpg", JPEG, "image/jpeg"), ("c.bin", WEBP)],
        mask=("mask.png", mask, "image/png"),
        prompt="put the dog from the other photos on the sofa",
        model="gemini-3.1-flash-image",
        n=2,
        size="1536x1024",
        quality="high",
        response_format="url",
    )
    assert len(result.data) == 2
    assert all((i.url or "").startswith("data:image/png;base64,iVBOR") for i in result.data)
    calls = fake_google.calls("generateContent")
    assert len(calls) == 2  # one upstream call per image, like generations
    for call in calls:
        assert parts_of(call) == [
            {"inlineData": {"mimeType": "image/png", "data": b64(first)}},
            {"inlineData": {"mimeType": "image/jpeg", "data": b64(JPEG)}},
            {"inlineData": {"mimeType": "image/webp", "data": b64(WEBP)}},
            {"text": MASK_INSTRUCTION},
            {"inlineData": {"mimeType": "image/png", "data": b64(mask)}},
            {"text": "put the dog from the other photos on the sofa"},
        ]
        config = call.body["request"]["generationConfig"]
        assert config["imageConfig"] == {"aspectRatio": "3:2", "imageSize": "4K"}
    assert "transparent" in MASK_INSTRUCTION and "mask" in MASK_INSTRUCTION


def test_repeated_image_fields_and_gif(gw: Gateway, fake_google: Any) -> None:
    """Other clients repeat `image` or number the parts (`image[0]`); all are images."""
    files = [
        ("image", ("a.gif", GIF, "image/gif")),
        ("image", ("b.png", png(), "image/png")),
        ("image[2]", ("c.jpg", JPEG, "image/jpeg")),
        ("prompt", (None, "merge them")),
        ("n", (None, "1")),
        ("background", (None, "opaque")),
        ("output_format", (None, "png")),
    ]
    response = post_form(gw, files, headers={"x-api-key": "any"})
    assert response.status_code == 200, response.text
    assert response.headers["x-agproxy-model"] == "gemini-3.1-flash-image"
    [call] = fake_google.calls("generateContent")
    mimes = [p["inlineData"]["mimeType"] for p in parts_of(call) if "inlineData" in p]
    assert mimes == ["image/gif", "image/png", "image/jpeg"]
    assert parts_of(call)[-1] == {"text": "merge them"}


def test_the_monitor_keeps_the_fields_not_the_image_bytes(gw: Gateway) -> None:
    photo = png() + b"\x00\xff\xfe" * 40_000  # 120 KB of bytes that are no text
    answered = sdk(gw).images.edit(
        image=("big.png", photo, "image/png"), prompt="a monitor-visible prompt"
    )
    assert answered.data
    deadline = time.monotonic() + 10
    while True:
        logs = gw.admin("GET", "/api/logs").json()["logs"]
        mine = [entry for entry in logs if entry["path"] == EDITS and entry["status"] == 200]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    detail = gw.admin("GET", f"/api/logs/{mine[0]['id']}").json()
    stored = detail["request_body"]
    assert 'name="prompt"' in stored and "a monitor-visible prompt" in stored
    assert f"[file: {len(photo)} bytes]" in stored
    assert "PNG" not in stored and "\ufffd" not in stored and len(stored) < 2000


def test_summarize_multipart_marks_a_cut_file() -> None:
    boundary = boundary_of(b"multipart/form-data; boundary=XyZ")
    assert boundary == b"XyZ" and boundary_of(b"application/json") is None
    raw = (
        b'--XyZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\x00\x01\x02"
    )
    summary = summarize_multipart(raw, boundary, cut=True)
    assert summary.endswith(b"[file: more than 7 bytes, the capture ends inside it]")
    assert b"\r\n\r\nhi\r\n--XyZ" in summary
    whole = summarize_multipart(raw + b"\r\n--XyZ--\r\n", boundary, cut=False)
    assert whole.endswith(b"\r\n\r\n[file: 7 bytes]\r\n--XyZ--\r\n")


# -- hostile forms --------------------------------------------------------------------
def refused(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    """The OpenAI error object of a refusal (asserting its status and shape)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return dict(error)


def post_form(
    gw: Gateway, files: list[tuple[str, Any]], headers: dict[str, str] | None = None
) -> httpx.Response:
    """A multipart form as the SDKs send it: with the key (any value, auth is off here)."""
    headers = {"Authorization": "Bearer any", **(headers or {})} if headers is None else headers
    return httpx.post(gw.base_url + EDITS, files=files, headers=headers, timeout=60)


PROMPT = ("prompt", (None, "make it blue"))


def image(data: bytes = b"", name: str = "image", filename: str = "x.png") -> tuple[str, Any]:
    return (name, (filename, data or png(), "application/octet-stream"))


@pytest.mark.parametrize(
    ("files", "param", "message"),
    [
        ([image()], "prompt", "prompt is required"),
        ([image(), ("prompt", (None, "   "))], "prompt", "prompt is required"),
        ([PROMPT, ("model", (None, "gemini-3.1-flash-image"))], "image", "image is required"),
        ([image(b"hello, I am text", filename="a.txt"), PROMPT], "image", "is not a PNG, JPEG"),
        ([image(b"%PDF-1.7 ..."), PROMPT], "image", "is not a PNG, JPEG, WEBP or GIF"),
        ([("image", (None, "a path?")), PROMPT], "image", "must be a file"),
        ([image(), image(b"BM...", "image[]"), PROMPT], "image[]", "is not a PNG"),
        ([image(), ("prompt", ("p.txt", b"make it blue"))], "prompt", "must be a text field"),
        ([image(), PROMPT, ("n", (None, "two"))], "n", "n must be an integer from 1 to 10"),
        ([image(), PROMPT, ("n", (None, "11"))], "n", "n must be an integer from 1 to 10"),
        ([image(), PROMPT, ("n", (None, "1.5"))], "n", "n must be an integer from 1 to 10"),
        ([image(), PROMPT, ("size", (None, "huge"))], "size", "WIDTHxHEIGHT"),
        ([image(), PROMPT, ("quality", (None, "ultra"))], "quality", "quality must be"),
        ([image(), PROMPT, ("response_format", (None, "png"))], "response_format", "b64_json"),
        ([image(), PROMPT, ("output_format", (None, "svg"))], "output_format", "png, jpeg"),
        ([image(), PROMPT, ("background", (None, "pink"))], "background", "transparent"),
        ([image(), PROMPT, image(JPEG, "mask")], "mask", "mask must be a PNG image"),
        ([image(), PROMPT, image(png(alpha=False), "mask")], "mask", "alpha channel"),
        ([image(), PROMPT, image(b"nope", "mask")], "mask", "is not a PNG"),
        ([image(), PROMPT, image(name="mask"), image(name="mask")], "mask", "only one mask"),
        ([image(), PROMPT, ("mask", (None, "x"))], "mask", "must be a file"),
    ],
)
def test_bad_forms_are_400(
    gw: Gateway, fake_google: Any, files: list[tuple[str, Any]], param: str, message: str
) -> None:
    error = refused(post_form(gw, files))
    assert error["param"] == param and message in error["message"], error
    assert not fake_google.calls("generateContent")


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (MAX_EDIT_IMAGES + 1, f"too many images: at most {MAX_EDIT_IMAGES}"),
        # Past images and a mask the form parser itself stops reading files.
        (MAX_EDIT_IMAGES + 3, f"too many files: at most {MAX_EDIT_IMAGES} images and one mask"),
    ],
)
def test_too_many_images(gw: Gateway, count: int, message: str) -> None:
    files = [image(name="image[]") for _ in range(count)] + [PROMPT]
    error = refused(post_form(gw, files))
    assert error["param"] == "image" and error["message"] == message


@pytest.mark.parametrize("split", [False, True])
def test_files_over_the_size_limit(gw: Gateway, split: bool) -> None:
    """Gemini reads about 20 MB of images per request: one image that big, or several."""
    if split:
        half = png() + bytes(MAX_EDIT_BYTES // 2)
        files = [image(half, "image[]", "a.png"), image(half, "image[]", "b.png"), PROMPT]
        named, size = "image[] 'b.png'", len(half)
    else:
        huge = png() + bytes(MAX_EDIT_BYTES)
        files = [image(huge, filename="huge.png"), PROMPT]
        named, size = "image 'huge.png'", len(huge)
    error = refused(post_form(gw, files))
    assert error["param"] == named.split()[0]
    assert error["message"] == (
        f"the files of an edit may take {MAX_EDIT_BYTES} bytes together (Gemini reads about "
        f"20 MB of images per request); {named} ({size} bytes) goes past that"
    )


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'{"prompt": "x", "image": "aGk="}', "application/json", "(got application/json)"),
        (b"prompt=x", "application/x-www-form-urlencoded", "must be multipart/form-data"),
        (b"just text", "text/plain", "must be multipart/form-data"),
        (b"just text", None, "(got none)"),
        (b"garbage", "multipart/form-data", "cannot be read: Missing boundary"),
        (b"no parts at all", "multipart/form-data; boundary=abc", "cannot be read"),
        (
            b"--abc\r\nContent-Disposition: form-data\r\n\r\nx\r\n--abc--\r\n",
            "multipart/form-data; boundary=abc",
            'cannot be read: The Content-Disposition header field "name" must be provided',
        ),
    ],
)
def test_bodies_that_are_no_edit_form(
    gw: Gateway, content: bytes, content_type: str | None, message: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    error = refused(
        httpx.post(gw.base_url + EDITS, content=content, headers={"x-api-key": "k", **headers})
    )
    assert message in error["message"], error
    if not content_type or not content_type.startswith("multipart/"):
        # The route refuses these itself, whoever sends them.
        unkeyed = refused(httpx.post(gw.base_url + EDITS, content=content, headers=headers))
        assert message in unkeyed["message"], unkeyed


def test_a_form_over_the_body_limit_is_413(gw: Gateway, fake_google: Any) -> None:
    with borrow(gw, fake_google) as turn:
        turn.configure(max_body_bytes=1000)
        files = [image(png() + bytes(5000)), PROMPT]
        error = refused(post_form(gw, files), status=413)
        assert "limit is 1000 bytes" in error["message"]
        # Without a Content-Length the parts are counted as they arrive.
        request = httpx.Request("POST", gw.base_url + EDITS, files=files)
        body = request.read()
        chunked = httpx.post(
            gw.base_url + EDITS,
            content=iter([body[:500], body[500:]]),
            headers={"Content-Type": request.headers["Content-Type"], "x-api-key": "any"},
        )
        refused(chunked, status=413)


def test_a_form_without_a_key_header_could_be_a_web_page(gw: Gateway, fake_google: Any) -> None:
    """A plain HTML form on any page can post multipart/form-data without a preflight; the
    SDKs always send a key header, a form cannot."""
    response = post_form(gw, [image(), PROMPT], headers={})
    assert response.status_code == 415
    assert "needs an Authorization (or x-api-key) header" in response.json()["error"]["message"]
    evil = post_form(
        gw, [image(), PROMPT], headers={"Origin": "http://evil.example", "x-api-key": "k"}
    )
    assert evil.status_code == 403
    assert not fake_google.calls("generateContent")
