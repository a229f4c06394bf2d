"""OpenAI image routes: `POST /v1/images/generations` (JSON) and `POST /v1/images/edits`
(multipart/form-data), each answered by one upstream call per image, in parallel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from agproxy.frontends.common import JSONResponse
from agproxy.frontends.failures import exhausted, upstream_failure
from agproxy.frontends.openai import bad_request, read_json, routed_model
from agproxy.pool.policy import Attempt, Exhausted
from agproxy.protocols import Protocol, error_body
from agproxy.service import Gateway
from agproxy.translate.envelope import wrap
from agproxy.translate.fields import BadRequest
from agproxy.translate.images import (
    DEFAULT_MODEL,
    MAX_EDIT_BYTES,
    MAX_EDIT_IMAGES,
    Upload,
    edit_request,
    image_request,
    image_type,
    images_of,
    png_has_alpha,
)
from agproxy.upstream import UpstreamError

OPENAI = Protocol.OPENAI
# Form limits for an edit: the images and a mask as files; the text fields are short
# (the prompt at most 32000 characters, up to 4 bytes each in UTF-8).
FORM_LIMITS = {"max_files": MAX_EDIT_IMAGES + 1, "max_fields": 64, "max_part_size": 256 * 1024}
IMAGE_FIELDS = ("image", "image[]")  # the openai SDK sends `image` for one, `image[]` for a list


async def images_generations(request: Request) -> Response:
    """`POST /v1/images/generations`: a JSON body with the prompt."""
    gateway: Gateway = request.app.state.gateway
    body = await read_json(request)
    if isinstance(body, Response):
        return body
    body.setdefault("model", DEFAULT_MODEL)
    try:
        inner, count = image_request(body)
    except BadRequest as exc:
        return bad_request(exc.message, exc.param)
    return await _images(gateway, body, inner, count)


async def images_edits(request: Request) -> Response:
    """`POST /v1/images/edits`: multipart/form-data with `image` (one or more files),
    an optional PNG `mask`, `prompt` and the generation fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        return bad_request(
            "the request body must be multipart/form-data with the fields image (one or "
            f"more image files), prompt and, optionally, mask (got {content_type or 'none'})"
        )
    try:
        async with request.form(**FORM_LIMITS) as form:
            fields, images, mask = await _edit_form(form)
    except HTTPException as exc:  # the form parser's refusals: malformed, too many parts
        if "Too many files" in exc.detail:
            return bad_request(
                f"too many files: at most {MAX_EDIT_IMAGES} images and one mask", "image"
            )
        return bad_request(f"the multipart body cannot be read: {exc.detail}")
    except BadRequest as exc:
        return bad_request(exc.message, exc.param)
    fields.setdefault("model", DEFAULT_MODEL)
    try:
        inner, count = edit_request(fields, images, mask)
    except BadRequest as exc:
        return bad_request(exc.message, exc.param)
    return await _images(request.app.state.gateway, fields, inner, count)


async def _edit_form(form: FormData) -> tuple[dict[str, str], list[Upload], Upload | None]:
    """(text fields, images, mask) of an edit form, each file checked to be an image."""
    fields: dict[str, str] = {}
    images: list[Upload] = []
    mask: Upload | None = None
    taken = 0  # bytes of the files so far
    for name, value in form.multi_items():
        is_image = name in IMAGE_FIELDS or (name.startswith("image[") and name.endswith("]"))
        if is_image or name == "mask":
            if not isinstance(value, UploadFile):
                raise BadRequest(f"{name} must be a file, not a text field", name)
            if is_image and len(images) == MAX_EDIT_IMAGES:
                raise BadRequest(f"too many images: at most {MAX_EDIT_IMAGES}", "image")
            if name == "mask" and mask is not None:
                raise BadRequest("only one mask may be sent", "mask")
            upload = await _upload(value, name, MAX_EDIT_BYTES - taken)
            taken += len(upload.data)
            if is_image:
                images.append(upload)
            elif upload.mime_type != "image/png" or not png_has_alpha(upload.data):
                raise BadRequest(
                    "mask must be a PNG image with an alpha channel (its fully transparent "
                    "areas mark where to edit)",
                    "mask",
                )
            else:
                mask = upload
        elif isinstance(value, UploadFile):
            raise BadRequest(f"{name} must be a text field, not a file", name)
        else:
            fields.setdefault(name, value)
    return fields, images, mask


async def _upload(file: UploadFile, name: str, room: int) -> Upload:
    """The file's bytes and image type, if it is an image and has `room`."""
    if file.size is not None and file.size > room:
        raise BadRequest(
            f"the files of an edit may take {MAX_EDIT_BYTES} bytes together (Gemini reads "
            f"about 20 MB of images per request); {name} {file.filename or ''!r} "
            f"({file.size} bytes) goes past that",
            name,
        )
    data = await file.read()
    mime_type = image_type(data)
    if mime_type is None:
        raise BadRequest(
            f"{name} {file.filename or ''!r} is not a PNG, JPEG, WEBP or GIF image", name
        )
    return Upload(mime_type, data)


async def _images(
    gateway: Gateway, body: dict[str, Any], inner: dict[str, Any], count: int
) -> Response:
    """`count` images for `inner`, one upstream call each, side by side: what succeeded,
    or the first failure when none did."""
    model = routed_model(gateway, body)
    if isinstance(model, Response):
        return model
    client = gateway.accounts.client

    async def attempt(a: Attempt) -> Any:
        envelope = wrap(inner, a.model, a.creds.project or "", a.account.id, "image_gen")
        envelope["request"].pop("sessionId", None)
        return await client.generate(envelope, a.creds)

    results = await asyncio.gather(
        *(gateway.policy.run(model, None, attempt) for _ in range(count)), return_exceptions=True
    )
    images: list[dict[str, str]] = []
    failure: BaseException | None = None
    for result in results:
        if isinstance(result, BaseException):
            failure = failure or result
        else:
            images += images_of(result)
    if not images:
        if isinstance(failure, Exhausted):
            return exhausted(OPENAI, failure)
        if isinstance(failure, UpstreamError):
            return upstream_failure(OPENAI, failure)
        if failure is not None:
            raise failure
        return JSONResponse(
            error_body(OPENAI, 502, "the upstream answered without an image"), status_code=502
        )
    as_url = body.get("response_format") == "url"
    data = [
        {"url": f"data:{i['mimeType']};base64,{i['data']}"} if as_url else {"b64_json": i["data"]}
        for i in images
    ]
    return JSONResponse(
        {"created": int(time.time()), "data": data}, headers={"x-agproxy-model": model}
    )
