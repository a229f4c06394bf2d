"""Admin API for the console's Dashboard and Model mapping pages (and the prompt
rewrites tester beside the mapping)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agproxy.accounts.store import Account
from agproxy.admin.monitor import settled
from agproxy.admin.proxy import admin_error, read_json_object
from agproxy.config import Settings
from agproxy.frontends.common import JSONResponse
from agproxy.monitor import stats
from agproxy.router.mapping import BUILTIN, trace
from agproxy.service import Gateway
from agproxy.translate.rewrites import rewrite

OUT_OF_ROTATION = ("forbidden", "needs_relogin", "needs_verification", "refused")


def _attention(accounts: list[Account], gateway: Gateway) -> list[dict[str, Any]]:
    """Accounts that are not serving, or cooling down, with why and for how long."""
    by_id = {a.id: a for a in accounts}
    items: list[dict[str, Any]] = []
    for account in accounts:
        if account.state in OUT_OF_ROTATION:
            items.append(
                {
                    "account_id": account.id,
                    "email": account.email,
                    "state": account.state,
                    "reason": account.status_reason,
                    "link": account.status_url,
                    "since": account.status_changed_at,
                }
            )
    for cooling in sorted(gateway.scheduler.cooldowns.snapshot(), key=lambda c: -c["seconds_left"]):
        cool = by_id.get(str(cooling["account_id"]))
        if cool is not None:
            items.append(
                {
                    "account_id": cool.id,
                    "email": cool.email,
                    "state": "cooling_down",
                    "model": cooling["model"],
                    "seconds_left": cooling["seconds_left"],
                }
            )
    return items


def quota_averages(accounts: list[Account], floor: float = 0.0) -> list[dict[str, Any]]:
    """Per model, over serving accounts: average remaining quota, how many accounts are
    exhausted or below the protection `floor`, and the soonest reset."""
    fractions: dict[str, list[float]] = defaultdict(list)
    resets: dict[str, list[float]] = defaultdict(list)
    for account in accounts:
        if not account.serving:
            continue
        for quota in account.quotas:
            fractions[quota.model].append(quota.remaining_fraction or 0.0)
            if quota.reset_at:
                resets[quota.model].append(quota.reset_at)
    return [
        {
            "model": model,
            "average": round(sum(values) / len(values), 4),
            "accounts": len(values),
            "exhausted": sum(1 for v in values if v <= 0),
            "protected": sum(1 for v in values if 0 < v < floor),
            "next_reset_at": min(resets[model]) if resets[model] else None,
        }
        for model, values in sorted(fractions.items())
    ]


def _dashboard(gateway: Gateway) -> dict[str, Any]:
    accounts = gateway.accounts.store.all()
    now = time.time()
    since = now - 3600
    last_hour = stats.totals(gateway.engine, since)
    series = [
        {"t": p["t"], "requests": p["requests"], "errors": p["errors"]}
        for p in stats.series(gateway.engine, "5min", since + 300)
    ]
    busiest = [
        row["model"]
        for row in stats.breakdown(gateway.engine, "model", since)
        if row["model"] in gateway.catalog()
    ]
    models = busiest[:3] or list(gateway.catalog()[:3])
    next_up = []
    for model in models:
        account = gateway.scheduler.peek(model)
        next_up.append(
            {
                "model": model,
                "email": account.email if account else None,
                "account_id": account.id if account else None,
            }
        )
    states: dict[str, int] = defaultdict(int)
    for account in accounts:
        states[account.state] += 1
    requests = last_hour["requests"]
    quota = quota_averages(accounts, gateway.settings.quota_protection_percent / 100)
    for row in quota:  # when the pool can next serve the model (now, later, unknown)
        row["recovers_at"] = gateway.scheduler.recovers_at(row["model"])
    return {
        "status": gateway.status(),
        "accounts": {"total": len(accounts), "active": len(gateway.pool), **states},
        "attention": _attention(accounts, gateway),
        "quota": quota,
        "now": now,
        "next_up": next_up,
        "last_hour": {
            **last_hour,
            "error_rate": round(last_hour["errors"] / requests, 4) if requests else 0,
            "series": series,
        },
    }


async def dashboard(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    await settled(gateway)
    board = await run_in_threadpool(_dashboard, gateway)
    if gateway.shared is not None:  # several processes may serve: list them
        board["processes"] = await gateway.shared.workers.listing()
    return JSONResponse(board)


async def trace_model(request: Request) -> Response:
    """How a model id would be routed now: `{"model": "gpt-4o"}` (or `?model=`), with
    optional unsaved `rules` to try before saving them."""
    gateway: Gateway = request.app.state.gateway
    if request.method == "GET":
        body: dict[str, Any] = {"model": request.query_params.get("model")}
    else:
        parsed = await read_json_object(request)
        if isinstance(parsed, Response):
            return parsed
        body = parsed
    model, rules = body.get("model"), body.get("rules")
    if not isinstance(model, str) or not model.strip():
        return admin_error(400, "model is required", "model")
    if rules is None:
        rules = gateway.settings.model_mapping
    elif not (
        isinstance(rules, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in rules.items())
    ):
        return admin_error(400, "rules must be an object of model id → model id", "rules")
    found = trace(model.strip(), rules, gateway.catalog())
    return JSONResponse(
        {
            "requested": found.requested,
            "model": found.model,
            "rule": found.rule,
            "source": found.source,
            "target": rules[found.rule] if found.source == "rule" and found.rule else None,
        }
    )


async def test_rewrites(request: Request) -> Response:
    """The console's tester: `text` as the upstream would see it after `rules` (the saved
    prompt_rewrites when none are given), and which rules changed it."""
    gateway: Gateway = request.app.state.gateway
    body = await read_json_object(request)
    if isinstance(body, Response):
        return body
    text = body.get("text")
    if not isinstance(text, str) or len(text) > 200_000:
        return admin_error(400, "text must be a string of at most 200000 characters", "text")
    try:
        rules = (
            gateway.settings.prompt_rewrites
            if body.get("rules") is None
            else Settings(prompt_rewrites=body["rules"]).prompt_rewrites
        )
    except ValidationError as exc:
        return admin_error(400, f"rules: {exc.errors()[0]['msg']}", "rules")
    matched = [i for i, rule in enumerate(rules) if rule.find in text]
    return JSONResponse({"text": rewrite(text, rules), "matched": matched})


async def models(request: Request) -> Response:
    """What the mapping page shows beside the rules: the models served now and the
    built-in table that applies when no rule matches."""
    gateway: Gateway = request.app.state.gateway
    return JSONResponse(
        {
            "served": list(gateway.catalog()),
            "builtin": BUILTIN,
            "rules": gateway.settings.model_mapping,
        }
    )


routes = [
    Route("/models", models, methods=["GET"]),
    Route("/dashboard", dashboard, methods=["GET"]),
    Route("/models/trace", trace_model, methods=["GET", "POST"]),
    Route("/prompt-rewrites/test", test_rewrites, methods=["POST"]),
]
