"""OpenAI image generation → a Gemini image model request (pure)."""

from __future__ import annotations

import re
from typing import Any

from agproxy.translate.fields import BadRequest, opt_str

RATIOS = ("21:9", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "1:1")
QUALITY = {
    "hd": "4K",
    "4k": "4K",
    "high": "4K",
    "medium": "2K",
    "2k": "2K",
    "standard": "1K",
    "1k": "1K",
    "low": "1K",
    "auto": None,
}
STYLE = {
    "vivid": ", (vivid colors, dramatic lighting, rich details)",
    "natural": ", (natural lighting, realistic, photorealistic)",
}
DEFAULT_MODEL = "gemini-3.1-flash-image"


def aspect_ratio(size: Any) -> str:
    """`WxH` (or a ratio string) → the nearest supported aspect ratio."""
    if size is None or size == "auto":
        return "1:1"
    if not isinstance(size, str):
        raise BadRequest("size must be a string like 1024x1024", "size")
    if size in RATIOS:
        return size
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", size)
    if not match or int(match.group(2)) == 0:
        raise BadRequest(f"size {size!r} is not WIDTHxHEIGHT (e.g. 1792x1024)", "size")
    wanted = int(match.group(1)) / int(match.group(2))

    def distance(ratio: str) -> float:
        w, h = ratio.split(":")
        return abs(int(w) / int(h) - wanted)

    return min(RATIOS, key=distance)


def image_request(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(inner Gemini request for one image, how many images) for an images body."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt is required", "prompt")
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
        raise BadRequest("n must be an integer from 1 to 10", "n")
    if body.get("response_format") not in (None, "b64_json", "url"):
        raise BadRequest("response_format must be b64_json or url", "response_format")
    config: dict[str, Any] = {"aspectRatio": aspect_ratio(body.get("size"))}
    size = opt_str(body, "imageSize", "") or opt_str(body, "image_size", "")
    quality = opt_str(body, "quality", "")
    if size:
        config["imageSize"] = size.upper()
    elif quality is not None:
        if quality.lower() not in QUALITY:
            raise BadRequest(f"quality must be one of {', '.join(QUALITY)}", "quality")
        if QUALITY[quality.lower()]:
            config["imageSize"] = QUALITY[quality.lower()]
    text = prompt + STYLE.get(opt_str(body, "style", "") or "vivid", "")
    if quality == "hd":
        text += ", (high quality, highly detailed, 4k resolution, hdr)"
    request = {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {"candidateCount": 1, "imageConfig": config},
    }
    return request, n


def images_of(response: dict[str, Any]) -> list[dict[str, str]]:
    """The inlineData images in a Gemini response."""
    found = []
    for candidate in response.get("candidates") or []:
        for part in (candidate.get("content") or {}).get("parts") or []:
            data = part.get("inlineData")
            if isinstance(data, dict) and data.get("data"):
                found.append({"mimeType": data.get("mimeType", "image/png"), "data": data["data"]})
    return found
