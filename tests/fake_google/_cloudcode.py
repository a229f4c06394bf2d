"""Cloud Code Assist `v1internal`: POST {base}:{method} and GET {base}/operations/<id>
(UPSTREAM.md §2–§5)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._faults import Fault, error_info, format_duration, unauthenticated_body
from ._generate import CutBody, EventStream, build_reply, count_tokens
from ._http import Refusal, apply_fault, bearer, json_response, parse_json, record
from ._state import FakeAccount, Operation, State
from ._validate import bad, check_contents, check_envelope, check_metadata, get, reject_unknown

WWW_AUTHENTICATE = {
    "www-authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
}
TIER_NAMES = {
    "free-tier": "Gemini Code Assist for individuals",
    "standard-tier": "Gemini Code Assist",
    "legacy-tier": "Gemini Code Assist",
}
DISPLAY_NAMES = {
    "gemini-3-flash": "Gemini 3 Flash",
    "gemini-3-pro-high": "Gemini 3 Pro (High)",
    "gemini-3-pro-low": "Gemini 3 Pro (Low)",
    "claude-sonnet-4-6": "Claude Sonnet 4.6",
    "gemini-3.1-flash-image": "Gemini 3.1 Flash Image",
}
UNLISTED_MODEL = "chat_20706"  # listed without quotaInfo: clients must skip it
# retrieveUserQuotaSummary's groups: bucket id prefix -> (group name, the models it meters)
WINDOW_GROUPS = {
    "gemini": ("Gemini Models", ("gemini",)),
    "3p": ("Claude and GPT models", ("claude", "gpt")),
}
WINDOW_NAMES = {"5h": "5 hour", "weekly": "Weekly"}


@dataclass
class Call:
    """One authenticated v1internal call."""

    state: State
    request: Request
    method: str
    account: FakeAccount
    body: dict[str, Any]

    async def checkpoint(self, model: str | None = None) -> Fault | None:
        """Apply the next matching fault: wait (slow) or answer (error). A stream or body
        fault is returned for the generate code."""
        fault = self.state.take_fault(self.method, self.account.email, model, self.body)
        await apply_fault(fault, model)
        return fault if fault is not None and fault.shapes_reply else None


Handler = Callable[[Call], Awaitable[Response]]


class CloudCode:
    def __init__(self, state: State) -> None:
        self.state = state
        self.methods: dict[str, Handler] = {
            "loadCodeAssist": self.load_code_assist,
            "onboardUser": self.onboard_user,
            "fetchAvailableModels": self.fetch_available_models,
            "retrieveUserQuotaSummary": self.quota_summary,
            "countTokens": self.count_tokens,
            "generateContent": self.generate,
            "streamGenerateContent": self.generate,
        }

    async def rpc(self, request: Request) -> Response:
        method = request.path_params["method"]
        body, parsed = parse_json(await request.body())
        account, reason = self.state.check_access_token(bearer(request))
        record(self.state, request, body, account.email if account else None, method)
        try:
            handler = self.methods.get(method)
            if handler is None:
                raise Refusal.google(404, f"Method not found: v1internal:{method}")
            if account is None:
                raise Refusal(401, unauthenticated_body(reason), WWW_AUTHENTICATE)
            if not parsed:
                raise bad(f"Invalid JSON payload received. Unexpected token.\n{body[:60]}")
            if not isinstance(body if body is not None else {}, dict):
                raise bad("Invalid JSON payload received. Expected an object.")
            self._check_user_project(request, account)
            return await handler(Call(self.state, request, method, account, body or {}))
        except Refusal as refusal:
            return refusal.response()

    async def operation(self, request: Request) -> Response:
        account, reason = self.state.check_access_token(bearer(request))
        record(self.state, request, None, account.email if account else None, "operations")
        name = f"operations/{request.path_params['op']}"
        try:
            if account is None:
                raise Refusal(401, unauthenticated_body(reason), WWW_AUTHENTICATE)
            with self.state.lock:
                op = self.state.operations.get(name)
            if op is None or op.email != account.email:
                raise Refusal.google(404, "Requested entity was not found.")
            await Call(self.state, request, "operations", account, {}).checkpoint()
            return json_response(self._finish(op, account))
        except Refusal as refusal:
            return refusal.response()

    def _check_user_project(self, request: Request, account: FakeAccount) -> None:
        project = request.headers.get("x-goog-user-project")
        if project and not self.state.project_allowed(account, project):
            raise Refusal.google(
                403,
                (
                    f"Caller does not have required permission to use project {project}. Grant the "
                    "caller the roles/serviceusage.serviceUsageConsumer role, or a custom role with "
                    "the serviceusage.services.use permission, and then retry."
                ),
                [
                    error_info(
                        "USER_PROJECT_DENIED",
                        {
                            "consumer": f"projects/{project}",
                            "service": "cloudcode-pa.googleapis.com",
                        },
                        domain="googleapis.com",
                    )
                ],
            )

    # -- project discovery -------------------------------------------------------------
    def _allowed_tiers(self, account: FakeAccount) -> list[dict[str, Any]]:
        ids = [account.tier] + (["standard-tier"] if account.tier != "standard-tier" else [])
        return [{**_tier(tier_id), "isDefault": tier_id == account.tier} for tier_id in ids]

    async def load_code_assist(self, call: Call) -> Response:
        reject_unknown(call.body, {"metadata", "cloudaicompanionProject", "mode"})
        check_metadata(call.body)
        await call.checkpoint()
        account = call.account
        with self.state.lock:
            out: dict[str, Any] = {}
            if account.project:
                out["currentTier"] = _tier(account.tier)
            out["allowedTiers"] = self._allowed_tiers(account)
            if account.ineligible_tiers:
                out["ineligibleTiers"] = list(account.ineligible_tiers)
            if account.project:
                out["cloudaicompanionProject"] = account.project
            if account.paid_tier:
                out["paidTier"] = {"id": account.paid_tier[0], "name": account.paid_tier[1]}
        return json_response(out)

    async def onboard_user(self, call: Call) -> Response:
        reject_unknown(call.body, {"tierId", "cloudaicompanionProject", "metadata"})
        check_metadata(call.body)
        tier_id = get(call.body, "tierId")
        allowed = [t["id"] for t in self._allowed_tiers(call.account)]
        if tier_id not in allowed:
            raise bad(f"Invalid tierId {tier_id!r}: allowed tiers are {', '.join(allowed)}.")
        await call.checkpoint()
        number = self.state.next_id()
        with self.state.lock:
            project = call.account.project or f"onboarded-{number}"
            op = Operation(f"operations/op-{number}", call.account.email, tier_id, project)
            self.state.operations[op.name] = op
            if call.account.project:  # already set up: done at once
                return json_response(self._finish(op, call.account))
        return json_response({"name": op.name, "done": False})

    def _finish(self, op: Operation, account: FakeAccount) -> dict[str, Any]:
        """The operation as a poll sees it: done from the first poll on."""
        with self.state.lock:
            op.polls += 1
            if self.state.onboard_fails:
                return {
                    "name": op.name,
                    "done": True,
                    "error": {
                        "code": 9,
                        "message": "Onboarding failed: this account is not eligible "
                        "for Gemini Code Assist.",
                    },
                }
            account.project, account.tier, account.onboarded = op.project, op.tier_id, True
        return {
            "name": op.name,
            "done": True,
            "response": {
                "@type": "type.googleapis.com/google.internal.cloud.code.v1internal."
                "OnboardUserResponse",
                "cloudaicompanionProject": {"id": op.project, "name": op.project},
            },
        }

    # -- quota ---------------------------------------------------------------------------
    def _check_project_field(self, call: Call) -> None:
        reject_unknown(call.body, {"project"})
        project = call.body.get("project")
        if project is not None and not self.state.project_allowed(call.account, str(project)):
            raise Refusal.google(403, f"Permission denied on resource project {project}.")

    async def fetch_available_models(self, call: Call) -> Response:
        self._check_project_field(call)
        await call.checkpoint()
        with self.state.lock:
            models = {name: _model_entry(name, spec) for name, spec in call.account.models.items()}
            deprecated = dict(self.state.deprecated_model_ids)
        models[UNLISTED_MODEL] = {
            "displayName": "Chat",
            "maxTokens": 1048576,
            "maxOutputTokens": 65536,
        }
        return json_response({"models": models, "deprecatedModelIds": deprecated})

    async def quota_summary(self, call: Call) -> Response:
        """The account's buckets (FakeGoogle.set_window), grouped as Google groups them; an
        omitted fraction means the window is empty."""
        self._check_project_field(call)
        await call.checkpoint()
        with self.state.lock:
            windows = {k: dict(v) for k, v in call.account.windows.items()}
        groups: dict[str, list[dict[str, Any]]] = {}
        for bucket_id, spec in sorted(windows.items()):
            prefix, _, window = bucket_id.rpartition("-")
            bucket: dict[str, Any] = {
                "bucketId": bucket_id,
                "window": window,
                "displayName": WINDOW_NAMES.get(window, window),
                "resetTime": spec.get("resetTime", ""),
            }
            if spec.get("remainingFraction") is not None:
                bucket["remainingFraction"] = spec["remainingFraction"]
            groups.setdefault(prefix, []).append(bucket)
        return json_response(
            {
                "groups": [
                    {
                        "displayName": WINDOW_GROUPS.get(prefix, (prefix, ()))[0],
                        "description": f"Usage limits for {prefix} models (fake)",
                        "buckets": buckets,
                    }
                    for prefix, buckets in groups.items()
                ]
            }
        )

    # -- generation ----------------------------------------------------------------------
    async def count_tokens(self, call: Call) -> Response:
        reject_unknown(call.body, {"request"})
        request = call.body.get("request")
        if not isinstance(request, dict):
            raise bad('Invalid request: countTokens needs "request" (an object).')
        contents = check_contents(get(request, "contents"), "request", alternate=False)
        model = str(request.get("model") or "").removeprefix("models/") or None
        await call.checkpoint(model)
        return json_response({"totalTokens": count_tokens(contents)})

    async def generate(self, call: Call) -> Response:
        model, request = check_envelope(self.state, call.account, call.body)
        stream_fault = await call.checkpoint(model)
        self._check_content(request)
        self._check_quota(call.account, model)
        reply = build_reply(self.state.take_script(call.account.email, model), model, request)
        issued = {
            p.get("thoughtSignature")
            for c in reply.whole().get("candidates") or []
            for p in (c.get("content") or {}).get("parts") or []
        }
        with self.state.lock:
            self.state.issued_signatures |= {sig for sig in issued if sig}
        trace_id = secrets.token_hex(8)
        headers = {"x-cloudaicompanion-trace-id": trace_id}
        if call.method == "generateContent":
            whole = {"response": reply.whole(), "traceId": trace_id}
            if stream_fault is not None:  # cut_body
                return CutBody(whole, headers)  # type: ignore[return-value]
            return json_response(whole, headers=headers)
        events = [{"response": event, "traceId": trace_id} for event in reply.events()]
        sse = call.request.query_params.get("alt") == "sse"
        email = call.account.email

        def left() -> None:
            self.state.record_disconnect(email, model)

        return EventStream(
            events,
            sse,
            headers,
            stream_fault,  # type: ignore[return-value]
            on_disconnect=left,
        )

    def _check_content(self, request: dict[str, Any]) -> None:
        """A system instruction holding a content trigger: the bare 429 Google sends."""
        with self.state.lock:
            triggers = list(self.state.content_triggers)
        if not triggers:
            return
        system = request.get("systemInstruction")
        parts = system.get("parts") if isinstance(system, dict) else None
        said = " ".join(str(p.get("text", "")) for p in parts or [] if isinstance(p, dict))
        if any(trigger in said for trigger in triggers):
            raise Refusal.google(429, "Resource has been exhausted (e.g. check quota).")

    def _check_quota(self, account: FakeAccount, model: str) -> None:
        """An exhausted model (remainingFraction 0 or absent) answers 429 until resetTime."""
        self._check_windows(account, model)
        with self.state.lock:
            spec = dict(account.models.get(model) or {})
            enforce = self.state.enforce_quota
        fraction = spec.get("remainingFraction")
        if not enforce or (fraction is not None and fraction > 0):
            return
        raise _exhausted(model, spec.get("resetTime"))

    def _check_windows(self, account: FakeAccount, model: str) -> None:
        """An empty quota summary bucket (5-hour or weekly) of the model's group answers
        429 until its resetTime, whatever the model's own quota says."""
        with self.state.lock:
            windows = {k: dict(v) for k, v in account.windows.items()}
            enforce = self.state.enforce_quota
        for bucket_id, spec in windows.items():
            prefix = bucket_id.rpartition("-")[0]
            if not model.startswith(WINDOW_GROUPS.get(prefix, ("", ()))[1]):
                continue
            fraction = spec.get("remainingFraction")
            if not enforce or (fraction is not None and fraction > 0):
                continue
            reset = _epoch(spec.get("resetTime"))
            if reset is None or reset > time.time():
                raise _exhausted(model, spec.get("resetTime"))


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _exhausted(model: str, reset_time: Any) -> Refusal:
    """The 429 of an exhausted quota, naming the delay to its reset when known."""
    reset = _epoch(reset_time)
    delay = None if reset is None else max(0.0, reset - time.time())
    fault = Fault.rate_limited(
        retry_delay=None if delay is None else f"{round(delay, 3):g}s",
        quota_reset_delay=None if delay is None else format_duration(delay),
    )
    return Refusal(429, fault.body(model))


def _tier(tier_id: str) -> dict[str, Any]:
    return {
        "id": tier_id,
        "name": TIER_NAMES.get(tier_id, tier_id),
        "description": f"{TIER_NAMES.get(tier_id, tier_id)} (fake)",
        "userDefinedCloudaicompanionProject": tier_id == "standard-tier",
    }


def _model_entry(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    quota: dict[str, Any] = {}
    if spec.get("remainingFraction") is not None:
        quota["remainingFraction"] = spec["remainingFraction"]
    quota["resetTime"] = spec.get("resetTime", "")
    entry: dict[str, Any] = {
        "displayName": DISPLAY_NAMES.get(name, name),
        "quotaInfo": quota,
        "maxTokens": 200000 if name.startswith("claude") else 1048576,
        "maxOutputTokens": 65536,
        "supportsThinking": "-image" not in name,
        "thinkingBudget": 24576,
        "supportsImages": True,
        "recommended": True,
        "supportedMimeTypes": {"image/png": True, "image/jpeg": True, "application/pdf": True},
    }
    entry.update({k: v for k, v in spec.items() if k not in ("remainingFraction", "resetTime")})
    return entry
