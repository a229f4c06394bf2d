"""Everything the fake remembers. The test thread mutates it while the server thread reads
it, so every read-modify-write goes through `State.lock`."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._faults import Fault, rfc3339

CLIENT_ID = "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
CLIENT_SECRET = "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"
FALLBACK_PROJECT = "bamboo-precept-lgxtn"  # works for everyone (UPSTREAM.md §4.2)
DEFAULT_MODELS = (
    "gemini-3-flash",
    "gemini-3-pro-high",
    "claude-sonnet-4-6",
    "gemini-3.1-flash-image",
)
OAUTH_METHODS = frozenset({"token", "userinfo", "authorize"})
# retrieveUserQuotaSummary's buckets (UPSTREAM.md §5.2): bucket id -> seconds to the reset
# of a fresh window.
WINDOW_BUCKETS = {
    "gemini-5h": 5 * 3600,
    "gemini-weekly": 7 * 86400,
    "3p-5h": 5 * 3600,
    "3p-weekly": 7 * 86400,
}


def default_windows() -> dict[str, dict[str, Any]]:
    """Every bucket full, resetting 5 hours or a week from now."""
    now = time.time()
    return {
        bucket: {"remainingFraction": 1.0, "resetTime": rfc3339(now + seconds)}
        for bucket, seconds in WINDOW_BUCKETS.items()
    }


@dataclass
class FakeAccount:
    """One Google account. `project` becomes "onboarded-<n>" once onboarding completes."""

    email: str
    refresh_token: str
    project: str | None
    tier: str
    paid_tier: tuple[str, str] | None
    models: dict[str, dict[str, Any]]
    access_token_ttl: int
    user_id: str
    name: str
    ineligible_tiers: list[dict[str, str]] = field(default_factory=list)
    # bucket id -> {"remainingFraction": float | None, "resetTime": str}
    windows: dict[str, dict[str, Any]] = field(default_factory=default_windows)
    access_tokens: list[str] = field(default_factory=list)
    revoked: bool = False
    onboarded: bool = False

    @property
    def given_name(self) -> str:
        return self.name.split(" ")[0]

    @property
    def family_name(self) -> str:
        return self.name.split(" ", 1)[-1]


@dataclass(frozen=True)
class RecordedRequest:
    method: str  # HTTP method
    path: str  # e.g. "/v1internal:streamGenerateContent"
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, form dict, raw text when unparsable, or None
    account_email: str | None
    at: float  # time.monotonic()
    rpc: str = ""  # "generateContent", "operations", "token", "userinfo", ...


@dataclass
class Script:
    """A scripted generate reply (see FakeGoogle.script)."""

    parts: list[dict[str, Any]]
    finish_reason: str | None
    usage: dict[str, Any] | None
    chunks: list[list[dict[str, Any]]] | None
    raw: list[dict[str, Any]] | None


@dataclass
class _Queued:
    item: Any
    email: str | None
    model: str | None
    method: str | None
    times: int
    contains: str | None = None  # faults: only calls whose JSON body has this text


@dataclass
class CodeGrant:
    redirect_uri: str | None = None  # None: any redirect_uri is accepted
    code_challenge: str | None = None
    challenge_method: str = "S256"
    offline: bool = True  # access_type=offline and prompt=consent
    used: bool = False


@dataclass
class Operation:
    name: str
    email: str
    tier_id: str
    project: str
    polls: int = 0


class State:
    """Accounts, tokens, codes, faults, scripts and the request log."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.accounts: dict[str, FakeAccount] = {}  # email -> account
        self.access: dict[str, tuple[str, float]] = {}  # access token -> (email, expires_at)
        self.oauth_codes: dict[str, str] = {}  # code -> email (tests may write)
        self.code_grants: dict[str, CodeGrant] = {}  # codes issued by the authorize page
        self.operations: dict[str, Operation] = {}
        self.refreshes: Counter[str] = Counter()
        self._faults: list[_Queued] = []
        self._scripts: list[_Queued] = []
        self._requests: list[RecordedRequest] = []
        self.disconnects: list[dict[str, Any]] = []
        self.issued_signatures: set[str] = set()  # every thoughtSignature sent in a reply
        self.set_defaults()

    def set_defaults(self) -> None:
        """Switches a test may flip; reset() puts them back."""
        self.consent_email: str | None = None  # None: the most recently added account
        self.consent_error: str | None = None  # e.g. "access_denied": the user said no
        self.onboard_fails = False
        self.enforce_quota = True  # remainingFraction 0/None answers 429
        self.check_project = True  # foreign projects answer 403
        self.check_thought_signatures = True  # gemini-3 function calls need signatures
        self.check_claude_signatures = True  # claude thinking must carry an issued signature
        self.check_tool_pairing = True  # claude tool calls need their results
        # Phrases that make any generate call whose system instruction holds them answer
        # a bare 429 (no reason, no retry info), whichever account asks: Google refusing
        # content with a 429, as it does for some identity lines.
        self.content_triggers: list[str] = []
        self.oauth_clients: dict[str, str] | None = {CLIENT_ID: CLIENT_SECRET}  # None: any
        self.deprecated_model_ids: dict[str, dict[str, str]] = {}

    def next_id(self) -> int:
        return next(self._ids)

    # -- accounts and tokens -------------------------------------------------------
    def create_account(
        self,
        email: str,
        refresh_token: str | None,
        project: str | None,
        tier: str,
        paid_tier: tuple[str, str] | None,
        models: dict[str, dict[str, Any]] | None,
        access_token_ttl: int,
        name: str | None,
        ineligible_tiers: list[dict[str, str]] | None,
        windows: dict[str, dict[str, Any]] | None = None,
    ) -> FakeAccount:
        if models is None:
            reset = rfc3339(time.time() + 3600)
            models = {m: {"remainingFraction": 1.0, "resetTime": reset} for m in DEFAULT_MODELS}
        local = email.split("@")[0].replace(".", " ").replace("-", " ").title() or "User"
        with self.lock:
            if email in self.accounts:
                raise ValueError(f"account {email} already exists")
            account = FakeAccount(
                email=email,
                refresh_token=refresh_token or f"1//fake-{secrets.token_urlsafe(24)}",
                project=project,
                tier=tier,
                paid_tier=paid_tier,
                models={k: dict(v) for k, v in models.items()},
                access_token_ttl=access_token_ttl,
                user_id=str(10**20 + self.next_id()),
                name=name or f"{local} Tester",
                ineligible_tiers=list(ineligible_tiers or []),
            )
            for bucket, spec in (windows or {}).items():
                account.windows.setdefault(bucket, {}).update(spec)
            self.accounts[email] = account
            return account

    def last_email(self) -> str | None:
        with self.lock:
            return next(reversed(self.accounts), None)

    def project_allowed(self, account: FakeAccount, project: str) -> bool:
        """An account may name its own project or the well-known fallback."""
        with self.lock:
            return not self.check_project or project in (account.project, FALLBACK_PROJECT)

    def store_code(self, email: str, grant: CodeGrant) -> str:
        code = f"4/0A{secrets.token_urlsafe(40)}"
        with self.lock:
            self.oauth_codes[code] = email
            self.code_grants[code] = grant
        return code

    def account_by_refresh_token(self, refresh_token: str | None) -> FakeAccount | None:
        with self.lock:
            return next(
                (a for a in self.accounts.values() if a.refresh_token == refresh_token), None
            )

    def issue_access_token(self, account: FakeAccount) -> str:
        token = f"ya29.fake-{secrets.token_urlsafe(32)}"
        with self.lock:
            self.access[token] = (account.email, time.time() + account.access_token_ttl)
            account.access_tokens.append(token)
        return token

    def check_access_token(self, token: str | None) -> tuple[FakeAccount | None, str]:
        """(account, "") or (None, ErrorInfo reason why the token is refused)."""
        if not token:
            return None, "CREDENTIALS_MISSING"
        with self.lock:
            entry = self.access.get(token)
            if entry is None:
                return None, "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            email, expires_at = entry
            if time.time() >= expires_at:
                return None, "ACCESS_TOKEN_EXPIRED"
            return self.accounts[email], ""

    # -- faults and scripts --------------------------------------------------------
    def queue_fault(
        self,
        fault: Fault,
        email: str | None,
        model: str | None,
        method: str | None,
        times: int,
        contains: str | None = None,
    ) -> None:
        with self.lock:
            self._faults.append(_Queued(fault, email, model, method, times, contains))

    def take_fault(
        self, method: str, email: str | None, model: str | None, body: Any = None
    ) -> Fault | None:
        """The oldest fault matching this call, consumed once. method=None faults match
        v1internal calls only; OAuth endpoints need an explicit method. `body`: the call's
        parsed JSON, for faults that match on its text."""
        text: str | None = None
        with self.lock:
            for queued in self._faults:
                fault: Fault = queued.item
                if queued.method is None and method in OAUTH_METHODS:
                    continue
                if not fault.applies_to(method):
                    continue
                if queued.contains is not None:
                    if text is None:
                        text = json.dumps(body, ensure_ascii=False)
                    if queued.contains not in text:
                        continue
                if _matches(queued, method, email, model):
                    queued.times -= 1
                    if queued.times <= 0:
                        self._faults.remove(queued)
                    return fault
        return None

    def faults_left(self) -> int:
        with self.lock:
            return sum(q.times for q in self._faults)

    def add_script(self, script: Script, email: str | None, model: str | None, times: int) -> None:
        with self.lock:
            self._scripts.append(_Queued(script, email, model, None, times))

    def take_script(self, email: str, model: str) -> Script | None:
        with self.lock:
            for queued in self._scripts:
                if _matches(queued, None, email, model):
                    queued.times -= 1
                    if queued.times <= 0:
                        self._scripts.remove(queued)
                    return queued.item  # type: ignore[no-any-return]
        return None

    # -- request log ---------------------------------------------------------------
    def record(self, entry: RecordedRequest) -> None:
        with self.lock:
            self._requests.append(entry)

    def recorded(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    def record_disconnect(self, email: str, model: str) -> None:
        """A stream whose client (the gateway) closed the connection before the end."""
        with self.lock:
            self.disconnects.append({"email": email, "model": model, "at": time.monotonic()})

    def clear(self) -> None:
        with self.lock:
            self.disconnects.clear()
            self._faults.clear()
            self._scripts.clear()
            self._requests.clear()
            self.set_defaults()


def _matches(queued: _Queued, method: str | None, email: str | None, model: str | None) -> bool:
    return (
        (queued.method is None or queued.method == method)
        and (queued.email is None or queued.email == email)
        and (queued.model is None or queued.model == model)
    )
