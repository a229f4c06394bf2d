"""What the owner must hear about without watching the console: an account changing
state (asked to verify, refused, back in rotation) and a model's pool going empty.

An account's change becomes a record in the monitor (protocol `event`); each event,
when `alert_webhook_url` is set, one JSON POST to it, retried a few times on failure. The
payload names the account by email and carries the state, Google's reason and link;
never a token or a key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from agproxy.config import Settings
from agproxy.monitor.record import RequestRecord, mask_email
from agproxy.monitor.writer import MonitorWriter

log = logging.getLogger("agproxy.alerts")

WEBHOOK_TRIES = 3
WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=10)
EMPTY_AGAIN_AFTER = 600.0  # a pool still empty is reported again after this long (seconds)


class Alerts:
    def __init__(
        self,
        settings: Callable[[], Settings],
        monitor: Callable[[], MonitorWriter | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.clock = clock
        self.empty: dict[str, float] = {}  # model → when its empty pool was reported
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # -- events -------------------------------------------------------------------------
    def account_state(
        self, account_id: str, email: str, state: str, reason: str | None, link: str | None
    ) -> None:
        back = state == "ok"
        self._record(
            f"/accounts/{account_id}/state",
            200 if back else 403,
            f"{email}: {state}"
            + (f": {reason}" if reason else "")
            + (f" ({link})" if link else ""),
            account_id,
            email,
        )
        self._post(
            {
                "event": "account_state",
                "account": email,
                "account_id": account_id,
                "state": state,
                "reason": reason,
                "link": link,
            }
        )

    def pool_empty(self, model: str, why: str, retry_after: float | None) -> None:
        """No account can serve `model` now: reported once until it serves again (or
        after EMPTY_AGAIN_AFTER seconds of staying empty)."""
        now = self.clock()
        last = self.empty.get(model)
        if last is not None and now - last < EMPTY_AGAIN_AFTER:
            return
        self.empty[model] = now  # the monitor has the requests that found it empty already
        self._post(
            {"event": "pool_empty", "model": model, "reason": why, "retry_after": retry_after}
        )

    def served(self, model: str) -> None:
        """The model's pool answered again: the next time it empties is news."""
        if self.empty:
            self.empty.pop(model, None)

    # -- delivery -----------------------------------------------------------------------
    def _record(
        self, path: str, status: int, text: str, account_id: str | None, email: str | None
    ) -> None:
        writer = self.monitor()
        if writer is None or not self.settings().monitor_enabled:
            return
        record = RequestRecord("event", "EVENT", path, None)
        record.status, record.error = status, text[:2000]
        record.account, record.account_id = mask_email(email), account_id
        writer.submit(record)

    def _post(self, payload: dict[str, Any]) -> None:
        url = self.settings().alert_webhook_url
        if not url:
            return
        payload = {**payload, "at": time.time(), "source": "agproxy"}
        try:
            task = asyncio.get_running_loop().create_task(self._deliver(url, payload))
        except RuntimeError:  # no loop (a CLI command): nothing to deliver with
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=WEBHOOK_TIMEOUT)
        for attempt in range(WEBHOOK_TRIES):
            try:
                async with self._session.post(url, json=payload) as response:
                    if response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                problem = type(exc).__name__
            if attempt + 1 < WEBHOOK_TRIES:
                await asyncio.sleep(2**attempt)
        log.warning("alert webhook failed %d times (%s); event %s dropped", WEBHOOK_TRIES,
                    problem, payload.get("event"))  # fmt: skip

    async def close(self) -> None:
        for task in list(self._tasks):
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if self._session is not None:
            await self._session.close()
