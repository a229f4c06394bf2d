"""What the pool's processes share through Redis: cooldowns, sticky sessions, and notices
that accounts, keys or settings changed.

- A cooldown set in one process is written to one Redis hash (`agproxy:cooldowns`, field
  "account id, model" → until on the wall clock) and published; the others apply it at
  once (pub/sub on loopback: about a millisecond). A process that starts, or finds Redis
  again after losing it, reads the hash and writes back what it learned meanwhile.
- A conversation's account (its session key, hashed) is one Redis string with the
  session's lifetime, and is published when it is made or changes: every process knows
  the bindings of the conversations it has seen, and asks Redis about one it has not
  before picking its account.
- A change to accounts, keys or settings is published; the other processes reload
  from the store at once instead of at their next poll.

The request path never waits on a write; a read (the session's account) has the link's
short timeout, and a link that is down answers at once with "not known".
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from agproxy.pool.scheduler import SESSION_TTL, Cooldowns, Scheduler
from agproxy.shared.link import CHANNEL, PREFIX, TIMEOUT, Link

COOLDOWNS = PREFIX + "cooldowns"
# Bindings of longer session keys (a client's own user id can be long) are not told to
# the others as events, only kept in Redis: the others ask for them there.
MAX_TOLD_SESSION = 1024
SEPARATOR = "\x1f"  # between account id and model in a cooldown's field: in neither


def _session_key(session: str) -> str:
    # Hashed: a session key can be a client's long user id; Redis keys stay short.
    return PREFIX + "session:" + hashlib.sha256(session.encode()).hexdigest()[:32]


class SharedPool:
    def __init__(self, link: Link, scheduler: Scheduler) -> None:
        self.link = link
        self.scheduler = scheduler
        self.cooldowns: Cooldowns = scheduler.cooldowns
        # Woken by another process's notice (accounts, keys, config): the watchers reload.
        self.changed: dict[str, asyncio.Event] = {
            "accounts": asyncio.Event(),
            "keys": asyncio.Event(),
            "config": asyncio.Event(),
        }
        self.cooldowns.on_change = self._cooldown_changed
        scheduler.on_bind = self._bound
        link.handlers["cooldown"] = self._cooldown_event
        link.handlers["changed"] = self._changed_event
        link.handlers["bound"] = self._bound_event
        link.on_up.append(self.resync)

    # -- cooldowns ---------------------------------------------------------------
    def _cooldown_changed(self, account_id: str, model: str, until: float | None) -> None:
        field = account_id + SEPARATOR + model
        event = self._event(account_id, model, until)

        async def write(r: Any) -> None:
            async with r.pipeline(transaction=False) as pipe:
                if until is None:
                    pipe.hdel(COOLDOWNS, field)
                else:
                    pipe.hset(COOLDOWNS, field, repr(until))
                pipe.publish(CHANNEL, event)
                await pipe.execute()

        self.link.soon(write)

    def _event(self, account_id: str, model: str, until: float | None) -> bytes:
        return orjson.dumps(
            {
                "from": self.link.me,
                "kind": "cooldown",
                "account": account_id,
                "model": model,
                "until": until,
            }
        )

    def _cooldown_event(self, event: dict[str, Any]) -> None:
        account, model, until = event.get("account"), event.get("model"), event.get("until")
        if not isinstance(account, str) or not isinstance(model, str):
            return
        if until is not None and not isinstance(until, int | float):
            return
        self.cooldowns.apply(account, model, until)

    async def resync(self) -> None:
        """Take the cooldowns Redis holds; give it those it lacks (learned while it was
        away, or before this process's first connection); drop the expired ones there."""
        stored: dict[bytes, bytes] = await self.link.client.hgetall(COOLDOWNS)  # type: ignore[assignment]
        now = time.time()
        theirs: dict[tuple[str, str], float] = {}
        expired = []
        for raw_field, raw_until in stored.items():
            account, _, model = raw_field.decode("utf-8", "replace").partition(SEPARATOR)
            try:
                until = float(raw_until)
            except ValueError:
                until = 0.0
            if until <= now:
                expired.append(raw_field)
                continue
            theirs[(account, model)] = until
            self.cooldowns.apply(account, model, until)
        missing: dict[Any, Any] = {
            a + SEPARATOR + m: repr(u)
            for a, m, u in self.cooldowns.export(now)
            if u > theirs.get((a, m), 0.0) + 0.5
        }
        async with self.link.client.pipeline(transaction=False) as pipe:
            if missing:  # and told: a process that re-synced before this one lacks them
                pipe.hset(COOLDOWNS, mapping=missing)
                for field, until in missing.items():
                    account, _, model = field.partition(SEPARATOR)
                    pipe.publish(CHANNEL, self._event(account, model, float(until)))
            if expired:
                pipe.hdel(COOLDOWNS, *expired)
            await pipe.execute()

    # -- sticky sessions ---------------------------------------------------------
    def _bound(self, session: str, account_id: str) -> None:
        key = _session_key(session)
        told = (
            orjson.dumps(
                {"from": self.link.me, "kind": "bound", "session": session, "account": account_id}
            )
            if len(session) <= MAX_TOLD_SESSION
            else None
        )

        async def write(r: Any) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(key, account_id, ex=int(SESSION_TTL))
                if told is not None:
                    pipe.publish(CHANNEL, told)
                await pipe.execute()

        self.link.soon(write)

    def _bound_event(self, event: dict[str, Any]) -> None:
        session, account = event.get("session"), event.get("account")
        if isinstance(session, str) and isinstance(account, str):
            self.scheduler.adopt(session, account)

    async def recall(self, session: str) -> None:
        """Before a conversation's turn is scheduled: the account another process bound it
        to becomes this process's binding too. A binding this process holds is current
        (others tell theirs as they make them), so Redis is asked only about a
        conversation this process has not seen: one GET per new conversation, not one per
        request (measured: a GET per request cost 0.05–0.075 ms of CPU)."""
        if self.scheduler.bound_to(session) is not None:
            return
        key = _session_key(session)
        found = await self.link.run(lambda r: r.get(key), None)
        if found:
            self.scheduler.adopt(session, found.decode())

    # -- chores ------------------------------------------------------------------
    async def take_chore(self, name: str, seconds: float) -> bool:
        """Whether this process does a periodic chore (the quota refresh) this round: the
        first to ask in `seconds` does; all do when Redis is not there."""
        key = PREFIX + "chore:" + name
        taken = await self.link.run(
            lambda r: r.set(key, self.link.me, nx=True, ex=max(1, int(seconds))), True
        )
        return bool(taken)

    # -- change notices ----------------------------------------------------------
    def announce(self, what: str) -> None:
        """Accounts, keys or config changed here: the other processes reload now."""
        self.link.publish("changed", what=what)

    def _changed_event(self, event: dict[str, Any]) -> None:
        woken = self.changed.get(str(event.get("what")))
        if woken is not None:
            woken.set()

    async def wait_change(self, what: str, timeout: float) -> None:
        """Until another process announces a change to `what`, or `timeout` passes."""
        woken = self.changed[what]
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
        # arrives as the event is set, and the shutdown waiting for this task never ends.
        try:
            async with asyncio.timeout(timeout):
                await woken.wait()
        except TimeoutError:
            return
        woken.clear()


def sleeper(shared: SharedPool | None, what: str) -> Callable[[float], Any]:
    """The watchers' pause between polls: cut short by a notice when Redis is in use."""
    if shared is None:
        return asyncio.sleep
    return lambda seconds: shared.wait_change(what, seconds)


def clear_stored_cooldowns(url: str, account_id: str, model: str | None) -> int:
    """`agproxy accounts reset` with no gateway running: the account's cooldowns kept in
    Redis go too (a gateway starting later would take them back). How many; raises
    RedisError (or OSError) when Redis is not there."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        fields = []
        stored: list[bytes] = client.hkeys(COOLDOWNS)  # type: ignore[assignment]
        for field in stored:
            account, _, cooled = field.decode("utf-8", "replace").partition(SEPARATOR)
            if account == account_id and model in (None, cooled):
                fields.append(field)
        if fields:
            client.hdel(COOLDOWNS, *fields)
        return len(fields)
    finally:
        client.close()
