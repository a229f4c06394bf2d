"""Image generation through `/v1/images/generations` with the official `openai` SDK."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from agproxy.translate.images import aspect_ratio
from agproxy.translate.openai_chat import BadRequest
from conftest import Gateway, add_accounts, google_env, spawn


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    gateway = spawn(tmp_path_factory.mktemp("images"), **google_env(fake_google_server))
    add_accounts(gateway, fake_google_server, prefix="img")
    yield gateway
    gateway.stop()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_generate_writes_valid_pngs(gw: Gateway, fake_google: Any, tmp_path: Path) -> None:
    client = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    result = client.images.generate(
        model="gemini-3.1-flash-image", prompt="a red fox", n=2, size="1792x1024", quality="hd"
    )
    assert len(result.data) == 2
    for i, image in enumerate(result.data):
        raw = base64.b64decode(image.b64_json or "")
        (tmp_path / f"fox{i}.png").write_bytes(raw)
        assert png_size(raw) == (1, 1)
    calls = fake_google.calls("generateContent")
    assert len(calls) == 2
    envelope = calls[-1].body
    assert envelope["requestType"] == "image_gen"
    assert envelope["request"]["generationConfig"]["imageConfig"] == {
        "aspectRatio": "16:9",
        "imageSize": "4K",
    }
    assert envelope["request"]["contents"][0]["parts"][0]["text"].startswith("a red fox, (")


def test_url_format_is_a_data_uri(gw: Gateway, fake_google: Any) -> None:
    client = openai.OpenAI(api_key=gw.api_key, base_url=gw.base_url + "/v1", max_retries=0)
    result = client.images.generate(prompt="a cat", response_format="url")
    assert (result.data[0].url or "").startswith("data:image/png;base64,")
    assert fake_google.calls("generateContent")[-1].body["model"] == "gemini-3.1-flash-image"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "size": "huge"}, "size"),
        ({"prompt": "x", "quality": "ultra"}, "quality"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
    ],
)
def test_bad_image_requests(gw: Gateway, body: dict, param: str) -> None:
    response = httpx.post(gw.base_url + "/v1/images/generations", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ("1024x1024", "1:1"),
        ("1792x1024", "16:9"),
        ("1024x1792", "9:16"),
        ("2560x1080", "21:9"),
        ("1200x900", "4:3"),
        ("1000x1250", "4:5"),
        ("3:2", "3:2"),
        (None, "1:1"),
        ("auto", "1:1"),
    ],
)
def test_aspect_ratio(size: str | None, ratio: str) -> None:
    assert aspect_ratio(size) == ratio


def test_aspect_ratio_refuses_nonsense() -> None:
    with pytest.raises(BadRequest):
        aspect_ratio("10x0")
