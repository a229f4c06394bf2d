"""Incremental parsing of the upstream's SSE stream into JSON events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


class SSEDecoder:
    """Feed raw bytes as they arrive; get each `data: <json>` event once it is complete.

    Lines that are blank, comments (`: ping`), not `data:`, `[DONE]` or not JSON are
    skipped, as the backend never sends anything else worth reading.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[Any]:
        self._buffer += chunk
        if b"\n" not in chunk:
            return
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            event = _parse_line(line)
            if event is not None:
                yield event

    def flush(self) -> Iterator[Any]:
        """The last line, when the stream ended without a newline."""
        line, self._buffer = self._buffer, b""
        event = _parse_line(line)
        if event is not None:
            yield event


def _parse_line(line: bytes) -> Any:
    line = line.strip()
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
