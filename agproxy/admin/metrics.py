"""`GET /metrics`: Prometheus text format, behind the admin password like /api/*."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from agproxy.accounts.store import Account
from agproxy.admin.dashboard import quota_averages
from agproxy.monitor.metrics import escape_label
from agproxy.monitor.record import mask_email
from agproxy.service import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


ATTENTION = ("forbidden", "needs_verification", "refused")
STATES = ("enabled", "disabled", "forbidden", "needs_relogin", "needs_verification", "refused")


def _gauges(gateway: Gateway) -> Iterable[str]:
    accounts = gateway.accounts.store.all()
    by_id = {a.id: a for a in accounts}
    yield "# HELP agproxy_up 1 while the proxy service is running."
    yield "# TYPE agproxy_up gauge"
    yield f"agproxy_up {int(gateway.running)}"
    yield "# HELP agproxy_accounts Google accounts by state."
    yield "# TYPE agproxy_accounts gauge"
    states = Counter(a.state for a in accounts)
    for state in STATES:
        yield f'agproxy_accounts{{state="{state}"}} {states.get(state, 0)}'
    yield (
        "# HELP agproxy_account_attention Accounts out of rotation for a refusal, with "
        "Google's reason and the link to open (account masked)."
    )
    yield "# TYPE agproxy_account_attention gauge"
    for a in accounts:
        if a.status.value in ATTENTION:
            labels = (
                f'account="{mask_email(a.email)}",state="{a.status.value}",'
                f'reason="{escape_label((a.status_reason or "")[:200])}",'
                f'link="{escape_label(a.status_url or "")}"'
            )
            yield f"agproxy_account_attention{{{labels}}} 1"
    yield "# HELP agproxy_accounts_serving Accounts in the rotation now."
    yield "# TYPE agproxy_accounts_serving gauge"
    yield f"agproxy_accounts_serving {len(gateway.pool)}"
    cooldowns = gateway.scheduler.cooldowns.snapshot()
    yield "# HELP agproxy_cooldowns Account/model pairs cooling down after a rate limit."
    yield "# TYPE agproxy_cooldowns gauge"
    yield f"agproxy_cooldowns {len(cooldowns)}"
    yield "# HELP agproxy_cooldown_seconds Seconds left of each cooldown (account masked)."
    yield "# TYPE agproxy_cooldown_seconds gauge"
    for c in cooldowns:
        account = by_id.get(str(c["account_id"]))
        name = mask_email(account.email) if account else str(c["account_id"])
        yield (
            f'agproxy_cooldown_seconds{{account="{name}",model="{c["model"] or "*"}"}} '
            f"{c['seconds_left']}"
        )
    yield (
        "# HELP agproxy_quota_remaining_ratio Remaining quota per model, averaged over "
        "serving accounts."
    )
    yield "# TYPE agproxy_quota_remaining_ratio gauge"
    for quota in quota_averages(accounts):
        yield f'agproxy_quota_remaining_ratio{{model="{quota["model"]}"}} {quota["average"]:.4f}'
    yield from _window_gauges(accounts)
    monitor = gateway.monitor
    if monitor is not None:
        yield "# HELP agproxy_monitor_queue Records waiting to be written."
        yield "# TYPE agproxy_monitor_queue gauge"
        yield f"agproxy_monitor_queue {len(monitor.queue)}"
        yield (
            "# HELP agproxy_monitor_queue_bytes Bytes held by records waiting to be written "
            "(bounded by monitor_queue_max_bytes)."
        )
        yield "# TYPE agproxy_monitor_queue_bytes gauge"
        yield f"agproxy_monitor_queue_bytes {monitor.queue_bytes}"


def _window_gauges(accounts: list[Account]) -> Iterable[str]:
    """Each account's 5-hour and weekly windows per model group (account masked)."""
    yield (
        "# HELP agproxy_account_quota_window_remaining Remaining fraction of each account's "
        "quota window, by model group (gemini; 3p: Claude and GPT) and window (5h, weekly)."
    )
    yield "# TYPE agproxy_account_quota_window_remaining gauge"
    labelled = [
        (
            f'account="{escape_label(mask_email(a.email) or a.id)}",'
            f'group="{escape_label(w.group)}",window="{escape_label(w.window)}"',
            w,
        )
        for a in accounts
        for w in a.windows
    ]
    for labels, w in labelled:
        yield f"agproxy_account_quota_window_remaining{{{labels}}} {w.remaining_fraction or 0:.4f}"
    yield (
        "# HELP agproxy_account_quota_window_reset_timestamp_seconds When each quota "
        "window resets (Unix time)."
    )
    yield "# TYPE agproxy_account_quota_window_reset_timestamp_seconds gauge"
    for labels, w in labelled:
        if w.reset_at is not None:
            name = "agproxy_account_quota_window_reset_timestamp_seconds"
            yield f"{name}{{{labels}}} {w.reset_at:.0f}"


async def metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    lines = list(await run_in_threadpool(lambda: list(_gauges(gateway))))
    if gateway.monitor is not None:
        lines.extend(gateway.monitor.metrics.lines())
    return Response("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
