"""Captured multipart/form-data bodies (image edits) as the monitor stores them: the
text fields as sent, each file's bytes replaced by a line saying what was there.

Image bytes are no text to read, and as UTF-8 they would fill the stored body with
replacement characters up to its cap, hiding the fields that came after them.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(rb'boundary="?([^";]+)"?', re.IGNORECASE)
_HEAD_END = b"\r\n\r\n"


def boundary_of(content_type: bytes) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type; None for any other type."""
    if not content_type.lower().startswith(b"multipart/form-data"):
        return None
    found = _BOUNDARY.search(content_type)
    return found.group(1).strip() if found else None


def summarize_multipart(raw: bytes | bytearray, boundary: bytes, cut: bool) -> bytes:
    """`raw` with the content of every file part (and of any part that is not UTF-8
    text) replaced by `[file: N bytes]`; `cut`: the capture ended before the body did."""
    delimiter = b"--" + boundary
    pieces = bytes(raw).split(delimiter)
    last = len(pieces) - 1
    for i in range(1, len(pieces)):
        head, found, content = pieces[i].partition(_HEAD_END)
        if not found or not (b"filename=" in head.lower() or not _is_text(content)):
            continue
        size = len(content.removesuffix(b"\r\n"))
        if cut and i == last:
            summary = b"[file: more than %d bytes, the capture ends inside it]" % size
        else:
            summary = b"[file: %d bytes]\r\n" % size
        pieces[i] = head + found + summary
    return delimiter.join(pieces)


def _is_text(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
