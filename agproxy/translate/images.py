"""OpenAI image generation and edits → a Gemini image model request (pure)."""

from __future__ import annotations

import base64
import re
from typing import Any, NamedTuple

from agproxy.translate.fields import BadRequest, opt_str

RATIOS = ("21:9", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "1:1")
QUALITY = {
    "hd": "4K",
    "4k": "4K",
    "max": "4K",
    "xhigh": "4K",
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
    prompt = _prompt(body)
    config, n = image_options(body)
    quality = opt_str(body, "quality", "")
    text = prompt + STYLE.get(opt_str(body, "style", "") or "vivid", "")
    if quality == "hd":
        text += ", (high quality, highly detailed, 4k resolution, hdr)"
    request = {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": config,
    }
    return request, n


def image_options(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(generationConfig for one image, how many images): what generations and edits share."""
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
    return {"candidateCount": 1, "imageConfig": config}, n


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt is required", "prompt")
    return prompt


# -- edits ----------------------------------------------------------------------------
MAX_EDIT_IMAGES = 16  # OpenAI's own limit for the GPT image models
# Gemini takes about 20 MB of inline data per request; more cannot work. (Each of the n
# parallel calls also serializes its own copy, a third larger in base64.)
MAX_EDIT_BYTES = 20 * 1024 * 1024  # the images and the mask of one edit together
MASK_INSTRUCTION = (
    "The next image is a mask for the first image above, of the same size. Edit only the "
    "areas where the mask is fully transparent (alpha 0); keep everything under its opaque "
    "areas exactly as it is."
)
# Edit text fields the Gemini image models have no setting for: checked, then not sent
# (the answer's data URL names the format the model chose).
EDIT_CHOICES = {
    "background": ("transparent", "opaque", "auto"),
    "output_format": ("png", "jpeg", "webp"),
    "input_fidelity": ("high", "low"),
}


class Upload(NamedTuple):
    """An uploaded image: its type (from its first bytes) and its bytes."""

    mime_type: str
    data: bytes


def image_type(data: bytes) -> str | None:
    """The image type its first bytes say, for the formats Gemini reads; else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def png_has_alpha(data: bytes) -> bool:
    """Whether a PNG can be transparent: an alpha colour type (4, 6), or a tRNS chunk
    (which comes before the image data)."""
    if len(data) < 26 or data[12:16] != b"IHDR":
        return False
    if data[25] in (4, 6):
        return True
    image_data = data.find(b"IDAT")
    return b"tRNS" in data[: image_data if image_data >= 0 else len(data)]


def edit_request(
    fields: dict[str, str], images: list[Upload], mask: Upload | None
) -> tuple[dict[str, Any], int]:
    """(inner Gemini request for one edited image, how many) for the text fields and
    files of a `/v1/images/edits` form: the images, the mask after a sentence saying
    what it is, then the prompt."""
    body: dict[str, Any] = dict(fields)
    prompt = _prompt(body)
    if "n" in body:
        body["n"] = _form_int(body["n"])
    for name, choices in EDIT_CHOICES.items():
        if body.get(name) not in (None, *choices):
            raise BadRequest(f"{name} must be one of {', '.join(choices)}", name)
    if not images:
        raise BadRequest("image is required: one or more image files", "image")
    config, n = image_options(body)
    config["maxOutputTokens"] = 8192  # as the reference sends edits
    parts: list[dict[str, Any]] = [_inline(image) for image in images]
    if mask is not None:
        parts += [{"text": MASK_INSTRUCTION}, _inline(mask)]
    parts.append({"text": prompt})
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}, n


def _form_int(value: str) -> int | str:
    """A form field's integer (a form has only text); the text itself when it is none,
    for the field's own check to refuse."""
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 6 else value


def _inline(image: Upload) -> dict[str, Any]:
    data = base64.b64encode(image.data).decode("ascii")
    return {"inlineData": {"mimeType": image.mime_type, "data": data}}


def images_of(response: dict[str, Any]) -> list[dict[str, str]]:
    """The inlineData images in a Gemini response."""
    found = []
    for candidate in response.get("candidates") or []:
        for part in (candidate.get("content") or {}).get("parts") or []:
            data = part.get("inlineData")
            if isinstance(data, dict) and data.get("data"):
                found.append({"mimeType": data.get("mimeType", "image/png"), "data": data["data"]})
    return found
