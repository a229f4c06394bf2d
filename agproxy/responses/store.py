"""Stored responses: what `previous_response_id` continues from, and what
`GET`/`DELETE /v1/responses/{id}` read and remove.

Each row keeps one turn: the input items the client sent with it and the response object
(its output items included), with the id of the response it continued. A conversation is
rebuilt by walking those links back, so a long conversation costs one row per turn
instead of a copy of everything before it in each row.

Rows belong to the client key that made them (`owner`; none when the request came with
the gateway's own key or without one): another key neither reads, continues nor deletes
them, and is told they do not exist. Writes leave the request path: a response is held
in memory until its row is written on a worker thread, and reads look there first, so a
client that continues the moment it has the answer finds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Engine

from agproxy.db.tables import stored_responses

log = logging.getLogger("agproxy.responses")
# A chain longer than this is refused rather than rebuilt (each link is one lookup).
MAX_CHAIN = 1000
PRUNE_EVERY_SECONDS = 300.0


class ChainTooLong(Exception):
    pass


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str | None
    created_at: float
    previous_id: str | None
    input: list[dict[str, Any]]  # the items sent with this turn
    response: dict[str, Any]  # the response object, its output items included

    @property
    def output(self) -> list[dict[str, Any]]:
        output = self.response.get("output")
        return output if isinstance(output, list) else []


class ResponseStore:
    def __init__(self, engine: Engine, retention_days: Callable[[], float]) -> None:
        self.engine = engine
        self.retention_days = retention_days  # read each time: a setting
        self._pending: dict[str, StoredResponse] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._deleted: set[str] = set()  # deleted while their write was under way
        self._last_prune = 0.0

    # -- writing -------------------------------------------------------------------------
    def save(self, stored: StoredResponse) -> None:
        """Keep a response; returns at once (the row is written on a worker thread)."""
        self._pending[stored.id] = stored
        task = asyncio.get_running_loop().create_task(self._write(stored))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, stored: StoredResponse) -> None:
        try:
            await asyncio.to_thread(self._insert, stored)
        except Exception:  # a full disk or a locked database: the answer went out anyway
            log.exception("could not store response %s", stored.id)
        finally:
            self._pending.pop(stored.id, None)
            if stored.id in self._deleted:
                self._deleted.discard(stored.id)
                await asyncio.to_thread(self._remove, stored.id)

    def _insert(self, stored: StoredResponse) -> None:
        row = {
            "id": stored.id,
            "owner": stored.owner,
            "created_at": stored.created_at,
            "previous_id": stored.previous_id,
            "input": orjson.dumps(stored.input).decode(),
            "response": orjson.dumps(stored.response).decode(),
        }
        with self.engine.begin() as conn:
            conn.execute(stored_responses.insert(), row)
        if time.monotonic() - self._last_prune > PRUNE_EVERY_SECONDS:
            self._last_prune = time.monotonic()
            self.prune(time.time())

    async def drain(self) -> None:
        """Wait for the rows under way (on shutdown)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    def prune(self, now: float) -> int:
        cutoff = now - self.retention_days() * 86400
        with self.engine.begin() as conn:
            result = conn.execute(
                stored_responses.delete().where(stored_responses.c.created_at < cutoff)
            )
        return int(result.rowcount or 0)

    # -- reading -------------------------------------------------------------------------
    async def get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        """The response if it exists, is the caller's and is within retention."""
        if response_id in self._pending:  # just answered: no database trip
            return self._lookup(response_id, owner)
        return await asyncio.to_thread(self._lookup, response_id, owner)

    def _lookup(self, response_id: str, owner: str | None) -> StoredResponse | None:
        stored = self._pending.get(response_id) or self._select(response_id)
        if stored is None or stored.owner != owner or stored.id in self._deleted:
            return None
        if stored.created_at < time.time() - self.retention_days() * 86400:
            return None  # past retention, not yet pruned
        return stored

    def _select(self, response_id: str) -> StoredResponse | None:
        if "\x00" in response_id:
            return None  # no id holds one, and PostgreSQL refuses it in a query
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(stored_responses).where(stored_responses.c.id == response_id)
            ).first()
        if row is None:
            return None
        return StoredResponse(
            row.id,
            row.owner,
            row.created_at,
            row.previous_id,
            orjson.loads(row.input),
            orjson.loads(row.response),
        )

    async def history(self, response_id: str, owner: str | None) -> list[dict[str, Any]] | None:
        """Every item of the conversation up to and including `response_id`, oldest first:
        each turn's input, then its output. None when it is not found (or not the
        caller's); ChainTooLong past MAX_CHAIN turns. The links are followed on one worker
        thread, not one trip per turn."""
        turns = await asyncio.to_thread(self._chain, response_id, owner)
        if turns is None:
            return None
        items: list[dict[str, Any]] = []
        for stored in reversed(turns):
            items += stored.input
            items += stored.output
        return items

    def _chain(self, response_id: str, owner: str | None) -> list[StoredResponse] | None:
        turns: list[StoredResponse] = []
        seen: set[str] = set()
        next_id: str | None = response_id
        while next_id is not None:
            if len(turns) >= MAX_CHAIN or next_id in seen:
                raise ChainTooLong(response_id)
            stored = self._lookup(next_id, owner)
            if stored is None:
                break  # an older turn pruned or deleted: the conversation starts here
            seen.add(next_id)
            turns.append(stored)
            next_id = stored.previous_id
        return turns or None

    # -- deleting ------------------------------------------------------------------------
    async def delete(self, response_id: str, owner: str | None) -> bool:
        if await self.get(response_id, owner) is None:
            return False
        if response_id in self._pending:
            self._deleted.add(response_id)  # removed once its write is done
            return True
        await asyncio.to_thread(self._remove, response_id)
        return True

    def _remove(self, response_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(stored_responses.delete().where(stored_responses.c.id == response_id))
