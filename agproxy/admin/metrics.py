"""`GET /metrics`: Prometheus text format, behind the admin password like /api/*."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from agproxy.admin.dashboard import quota_averages
from agproxy.monitor.record import mask_email
from agproxy.service import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _gauges(gateway: Gateway) -> Iterable[str]:
    accounts = gateway.accounts.store.all()
    by_id = {a.id: a for a in accounts}
    yield "# HELP agproxy_up 1 while the proxy service is running."
    yield "# TYPE agproxy_up gauge"
    yield f"agproxy_up {int(gateway.running)}"
    yield "# HELP agproxy_accounts Google accounts by state."
    yield "# TYPE agproxy_accounts gauge"
    states = Counter(a.state for a in accounts)
    for state in ("enabled", "disabled", "forbidden", "needs_relogin"):
        yield f'agproxy_accounts{{state="{state}"}} {states.get(state, 0)}'
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


async def metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    lines = list(await run_in_threadpool(lambda: list(_gauges(gateway))))
    if gateway.monitor is not None:
        lines.extend(gateway.monitor.metrics.lines())
    return Response("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
