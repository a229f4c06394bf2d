"""Both quota windows (issue 13): retrieveUserQuotaSummary's 5-hour and weekly buckets per
model group, read with the quota, stored per account, shown everywhere, and an empty weekly
window keeping the account away from that group's models until it resets.

Unit tests hand the scheduler its clocks (no sleeps); the end-to-end test drives the
official SDKs against a real `agproxy serve` on the fake Google.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anthropic
import pytest
from fake_google import Fault
from google import genai

from agproxy.accounts import build_account_service
from agproxy.accounts.store import Account, ModelQuota
from agproxy.accounts.windows import QuotaWindow, model_group, parse_summary, weekly_blocked_until
from agproxy.config import Settings
from agproxy.monitor.record import mask_email
from agproxy.pool import Pool
from agproxy.pool.scheduler import NoAccount, Scheduler
from conftest import add_to, google_env

DAY = 86400.0
CLAUDE, GEMINI = "claude-sonnet-4-6", "gemini-3-flash"


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- parsing -----------------------------------------------------------------------------
SUMMARY = {  # UPSTREAM.md §5.2, both groups
    "groups": [
        {
            "displayName": "Gemini Models",
            "description": "…",
            "buckets": [
                {
                    "bucketId": "gemini-5h",
                    "window": "5h",
                    "remainingFraction": 0.7,
                    "resetTime": "2026-08-22T18:00:00Z",
                    "displayName": "5 hour",
                },
                {
                    "bucketId": "gemini-weekly",
                    "window": "weekly",
                    "remainingFraction": 0.9,
                    "resetTime": "2026-08-27T00:00:00Z",
                },
            ],
        },
        {
            "displayName": "Claude and GPT models",
            "buckets": [
                {"bucketId": "3p-5h", "window": "5h", "remainingFraction": 1, "resetTime": ""},
                {"bucketId": "3p-weekly", "resetTime": "2026-08-27T00:00:00Z"},  # no fraction
            ],
        },
    ]
}


def test_the_summary_becomes_one_window_per_bucket() -> None:
    reset = datetime(2026, 8, 27, tzinfo=UTC).timestamp()
    assert parse_summary(SUMMARY) == [
        QuotaWindow("3p-5h", "3p", "5h", 1.0, None),
        QuotaWindow("3p-weekly", "3p", "weekly", None, reset),  # window from the id
        QuotaWindow(
            "gemini-5h", "gemini", "5h", 0.7, datetime(2026, 8, 22, 18, tzinfo=UTC).timestamp()
        ),
        QuotaWindow("gemini-weekly", "gemini", "weekly", 0.9, reset),
    ]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"groups": "x"},
        {
            "groups": [
                None,
                {"buckets": "x"},
                {"buckets": [None, {"bucketId": 7}, {"bucketId": "x"}]},
            ]
        },
    ],
)
def test_a_malformed_summary_yields_no_windows(body: Any) -> None:
    assert parse_summary(body) == []


@pytest.mark.parametrize(
    ("model", "group"),
    [
        ("gemini-3-flash", "gemini"),
        ("gemini-3.1-flash-image", "gemini"),
        ("claude-sonnet-4-6", "3p"),
        ("claude-opus-4-6-thinking", "3p"),
        ("gpt-oss-120b-medium", "3p"),
        ("imagen-4", None),
    ],
)
def test_models_belong_to_the_group_that_meters_them(model: str, group: str | None) -> None:
    assert model_group(model) == group


NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("windows", "model", "blocked"),
    [
        ([], CLAUDE, None),
        ([QuotaWindow("3p-weekly", "3p", "weekly", 0.0, NOW + DAY)], CLAUDE, NOW + DAY),
        ([QuotaWindow("3p-weekly", "3p", "weekly", None, NOW + DAY)], CLAUDE, NOW + DAY),
        ([QuotaWindow("3p-weekly", "3p", "weekly", None, None)], CLAUDE, math.inf),
        ([QuotaWindow("3p-weekly", "3p", "weekly", 0.0, NOW - 1)], CLAUDE, None),  # reset passed
        ([QuotaWindow("3p-weekly", "3p", "weekly", 0.0, NOW + DAY)], GEMINI, None),  # other group
        ([QuotaWindow("3p-weekly", "3p", "weekly", 0.01, NOW + DAY)], CLAUDE, None),
        ([QuotaWindow("3p-5h", "3p", "5h", 0.0, NOW + 60)], CLAUDE, None),  # the 5-hour window
        ([QuotaWindow("gemini-weekly", "gemini", "weekly", 0, NOW + 5)], GEMINI, NOW + 5),
    ],
)
def test_an_empty_weekly_window_blocks_its_group_until_the_reset(
    windows: list[QuotaWindow], model: str, blocked: float | None
) -> None:
    assert weekly_blocked_until(windows, model, NOW) == blocked


# -- the scheduler, with its clocks in hand ------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.mono, self.wall = 500.0, NOW

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def account(name: str, *windows: QuotaWindow, quota: float = 1.0) -> Account:
    return Account(
        id=name,
        email=f"{name}@example.com",
        refresh_token="1//x",
        quotas=[ModelQuota(CLAUDE, quota, NOW + 3600), ModelQuota(GEMINI, 1.0, NOW + 3600)],
        windows=list(windows),
    )


def scheduler(*accounts: Account, **settings: Any) -> tuple[Scheduler, Clock]:
    pool = Pool(store=None)  # type: ignore[arg-type]  # never loaded: accounts set directly
    pool.accounts = accounts
    clock = Clock()
    config = Settings(api_key="sk-test-000000", **settings)
    return Scheduler(pool, lambda: config, lambda: clock.mono, lambda: clock.wall), clock


WEEKLY_3P_EMPTY = QuotaWindow("3p-weekly", "3p", "weekly", 0.0, NOW + 3 * DAY)


def picks(s: Scheduler, model: str, n: int = 4) -> list[str]:
    return [s.pick(model, None, set()).account.id for _ in range(n)]


def test_an_empty_weekly_window_keeps_the_account_from_its_group_only() -> None:
    s, _ = scheduler(account("a", WEEKLY_3P_EMPTY), account("b"))
    assert picks(s, CLAUDE) == ["b"] * 4
    assert sorted(set(picks(s, GEMINI))) == ["a", "b"]  # still in rotation for Gemini
    assert [a.id for a in s.serving(CLAUDE)] == ["b"]
    assert s.peek(CLAUDE) is not None and s.peek(CLAUDE).id == "b"  # type: ignore[union-attr]


def test_the_account_comes_back_when_the_weekly_window_resets() -> None:
    s, clock = scheduler(account("a", WEEKLY_3P_EMPTY))
    with pytest.raises(NoAccount) as refused:
        s.pick(CLAUDE, None, set())
    assert refused.value.message == (
        f"the weekly quota window for Claude and GPT models is empty on every account with "
        f"quota for {CLAUDE}; the first resets at "
        f"{datetime.fromtimestamp(NOW + 3 * DAY, UTC):%Y-%m-%d %H:%M} UTC (in 3d 0h)"
    )
    assert refused.value.retry_after == 3 * DAY
    assert not s.has_free(CLAUDE)
    clock.advance(3 * DAY - 1)
    assert not s.has_free(CLAUDE)
    clock.advance(1)
    assert picks(s, CLAUDE, 1) == ["a"]


def test_the_soonest_weekly_reset_is_named_when_every_account_waits() -> None:
    later = QuotaWindow("3p-weekly", "3p", "weekly", None, NOW + 5 * DAY)
    s, _ = scheduler(account("a", later), account("b", WEEKLY_3P_EMPTY))
    with pytest.raises(NoAccount) as refused:
        s.pick(CLAUDE, None, set())
    assert "(in 3d 0h)" in refused.value.message and refused.value.retry_after == 3 * DAY


def test_an_unknown_weekly_reset_blocks_without_a_retry_time() -> None:
    s, clock = scheduler(account("a", QuotaWindow("3p-weekly", "3p", "weekly", None, None)))
    clock.advance(30 * DAY)
    with pytest.raises(NoAccount) as refused:
        s.pick(CLAUDE, None, set())
    assert refused.value.retry_after is None
    assert refused.value.message.endswith(f"empty on every account with quota for {CLAUDE}")


def test_a_full_5h_window_and_a_full_weekly_window_change_nothing() -> None:
    full = [
        QuotaWindow("3p-5h", "3p", "5h", 0.4, NOW + 3600),
        QuotaWindow("3p-weekly", "3p", "weekly", 0.2, NOW + DAY),
    ]
    s, _ = scheduler(account("a", *full), account("b", *full))
    assert sorted(set(picks(s, CLAUDE))) == ["a", "b"]


def test_recovery_is_now_when_free_else_the_soonest_cooldown_or_reset() -> None:
    s, clock = scheduler(account("a", WEEKLY_3P_EMPTY), account("b"))
    assert s.recovers_at(CLAUDE) == NOW  # b serves now
    s.cooldowns.set("b", CLAUDE, 120)
    assert s.recovers_at(CLAUDE) == NOW + 120  # b's cooldown ends before a's weekly reset
    s.cooldowns.set("b", CLAUDE, 4 * DAY)
    assert s.recovers_at(CLAUDE) == NOW + 3 * DAY  # now a's weekly reset comes first
    assert s.recovers_at(GEMINI) == NOW  # a is free for Gemini
    s.cooldowns.set("a", None, 60)  # a cooling for every model does not make its reset sooner
    assert s.recovers_at(CLAUDE) == NOW + 3 * DAY
    clock.advance(3 * DAY)
    assert s.recovers_at(CLAUDE) == clock.wall


def test_recovery_waits_for_every_blocker_of_one_account() -> None:
    exhausted = account("a", QuotaWindow("3p-weekly", "3p", "weekly", 0.0, NOW + DAY), quota=0.0)
    s, _ = scheduler(exhausted)
    assert s.recovers_at(CLAUDE) == NOW + DAY  # model quota resets in an hour, weekly in a day
    s.cooldowns.set("a", CLAUDE, 2 * DAY)
    assert s.recovers_at(CLAUDE) == NOW + 2 * DAY
    unknown = account("u", QuotaWindow("3p-weekly", "3p", "weekly", 0.0, None))
    s, _ = scheduler(unknown)
    assert s.recovers_at(CLAUDE) is None and s.recovers_at("gpt-unknown") is None


# -- the store and the fetch, against the fake Google -------------------------------------
def service(store: Any, fake: Any) -> Any:
    settings = Settings(
        api_key="sk-test-000000",
        upstream_base_urls=(fake.v1internal,),
        oauth_token_url=fake.token_url,
        oauth_userinfo_url=fake.userinfo_url,
    )
    return build_account_service(lambda: settings, store)


def test_windows_are_fetched_with_the_quota_stored_and_kept_when_the_summary_fails(
    store: Any, fake_google: Any
) -> None:
    reset = time.time() + 2 * DAY
    google = fake_google.add_account(
        email=f"w-{uuid.uuid4().hex[:6]}@example.com",
        windows={"3p-weekly": {"remainingFraction": None, "resetTime": rfc3339(reset)}},
    )
    accounts = service(store, fake_google)

    async def scenario() -> None:
        try:
            added, _ = await accounts.add_refresh_token(google.refresh_token)
            windows = {w.bucket_id: w for w in added.windows}
            assert set(windows) == {"gemini-5h", "gemini-weekly", "3p-5h", "3p-weekly"}
            assert windows["3p-weekly"].empty and windows["3p-weekly"].reset_at == int(reset)
            assert windows["gemini-weekly"].remaining_fraction == 1.0

            fake_google.set_window(google.email, "3p-weekly", 0.5)
            fake_google.set_quota(google.email, GEMINI, 0.3)
            fake_google.inject(Fault.server_error(503), method="retrieveUserQuotaSummary")
            await accounts.refresh_quota(accounts.store.get(google.email))
            stored = accounts.store.get(google.email)
            assert {q.model: q.remaining_fraction for q in stored.quotas}[GEMINI] == 0.3
            assert {w.bucket_id: w for w in stored.windows}["3p-weekly"].empty  # kept

            await accounts.refresh_quota(stored)
            stored = accounts.store.get(google.email)
            assert {w.bucket_id: w.remaining_fraction for w in stored.windows}["3p-weekly"] == 0.5
            assert stored.public()["quota_windows"][1] == {
                "bucket_id": "3p-weekly",
                "group": "3p",
                "group_name": "Claude and GPT models",
                "window": "weekly",
                "remaining_fraction": 0.5,
                "reset_at": int(reset),
            }
        finally:
            await accounts.client.close()

    asyncio.run(scenario())
    accounts.store.engine.dispose()


# -- end to end: the SDKs against a real gateway -------------------------------------------
def served_by(fake: Any, email: str, prefix: str) -> int:
    return sum(
        1
        for call in fake.calls(email=email)
        if call.rpc in ("streamGenerateContent", "generateContent")
        and str(call.body.get("model", "")).startswith(prefix)
    )


def test_an_account_out_of_weekly_claude_quota_serves_gemini_until_the_reset(
    gateway_factory: Any, fake_google: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    spent = fake_google.add_account(
        email=f"spent-{tag}@example.com",
        windows={"3p-weekly": {"remainingFraction": 0.0, "resetTime": "2099-01-05T00:00:00Z"}},
    )
    fresh = fake_google.add_account(email=f"fresh-{tag}@example.com")
    gw = gateway_factory(**google_env(fake_google), AGPROXY_SCHEDULING_MODE="round_robin")
    add_to(gw, spent, fresh)
    fake_google.reset()
    claude = anthropic.Anthropic(api_key=gw.api_key, base_url=gw.base_url, max_retries=0)
    gemini = genai.Client(api_key=gw.api_key, http_options={"base_url": gw.base_url})

    for i in range(4):
        answer = claude.messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": f"hi {i}"}]
        )
        assert answer.content[0].text
    for i in range(4):
        assert gemini.models.generate_content(model=GEMINI, contents=f"hello {i}").text
    assert served_by(fake_google, spent.email, "claude") == 0
    assert served_by(fake_google, fresh.email, "claude") == 4
    assert served_by(fake_google, spent.email, "gemini") == 2  # round robin: every other one

    # With the other account gone the client hears why, and until when.
    listed = {a["email"]: a for a in gw.admin("GET", "/api/accounts").json()["accounts"]}
    assert gw.admin("POST", f"/api/accounts/{listed[fresh.email]['id']}/disable").status_code == 200
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "anyone?"}]
        )
    message = refused.value.message
    assert "weekly quota window for Claude and GPT models is empty" in message
    assert "the first resets at 2099-01-05 00:00 UTC" in message
    assert int(refused.value.response.headers["retry-after"]) > 3600
    assert served_by(fake_google, spent.email, "claude") == 0

    # The window resets: Google's summary says so at the next refresh (here, in 2 s).
    fake_google.set_window(spent.email, "3p-weekly", 0.0, rfc3339(time.time() + 2))
    assert gw.admin("POST", "/api/accounts/quota").status_code == 200
    time.sleep(max(0.0, windows_reset(gw, spent.email) - time.time()) + 0.1)
    answer = claude.messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "back again"}]
    )
    assert answer.content[0].text and served_by(fake_google, spent.email, "claude") == 1


def windows_reset(gw: Any, email: str) -> float:
    [listed] = [
        a for a in gw.admin("GET", "/api/accounts").json()["accounts"] if a["email"] == email
    ]
    return next(w["reset_at"] for w in listed["quota_windows"] if w["bucket_id"] == "3p-weekly")


def test_windows_show_in_the_cli_the_admin_api_the_metrics_and_the_dashboard(
    gateway_factory: Any, fake_google: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    spent = fake_google.add_account(
        email=f"shown-{tag}@example.com",
        windows={
            "gemini-5h": {"remainingFraction": 0.7},
            "gemini-weekly": {"remainingFraction": 0.9},
            "3p-weekly": {"remainingFraction": None, "resetTime": rfc3339(time.time() + 2 * DAY)},
        },
    )
    gw = gateway_factory(**google_env(fake_google))
    add_to(gw, spent)

    [listed] = gw.admin("GET", "/api/accounts").json()["accounts"]
    windows = {w["bucket_id"]: w for w in listed["quota_windows"]}
    assert {b: w["remaining_fraction"] for b, w in windows.items()} == {
        "3p-5h": 1.0,
        "3p-weekly": None,
        "gemini-5h": 0.7,
        "gemini-weekly": 0.9,
    }
    assert windows["3p-weekly"]["group_name"] == "Claude and GPT models"
    assert windows["3p-weekly"]["window"] == "weekly"

    table = gw.cli("accounts", "list")
    assert table.returncode == 0, table.stderr
    assert "WINDOWS" in table.stdout.splitlines()[0]
    assert re.search(
        r"gemini 5h 70% weekly 90%; 3p 5h 100% weekly empty \(resets in 1d23h\)", table.stdout
    ), table.stdout
    refreshed = gw.cli("accounts", "quota")
    assert refreshed.returncode == 0, refreshed.stderr
    assert re.search(r"GROUP\s+WINDOW\s+REMAINING\s+RESETS IN", refreshed.stdout)
    assert re.search(rf"{re.escape(spent.email)}\s+3p\s+weekly\s+empty\s+1d23h", refreshed.stdout)
    assert re.search(rf"{re.escape(spent.email)}\s+gemini\s+5h\s+70%\s+4h59m", refreshed.stdout)

    metrics = gw.admin("GET", "/metrics").text
    lines = [ln for ln in metrics.splitlines() if ln.startswith("agproxy_account_quota_window")]
    account = f'account="{mask_email(spent.email)}"'
    assert (
        f'agproxy_account_quota_window_remaining{{{account},group="3p",window="weekly"}} 0.0000'
        in lines
    ), lines
    assert any('group="gemini",window="5h"} 0.7000' in ln and "remaining" in ln for ln in lines), (
        lines
    )
    reset = [ln for ln in lines if "reset_timestamp" in ln and 'group="3p",window="weekly"' in ln]
    assert reset and abs(float(reset[0].split()[-1]) - (time.time() + 2 * DAY)) < 120

    quota = {q["model"]: q for q in gw.admin("GET", "/api/dashboard").json()["quota"]}
    board_now = time.time()
    assert abs(quota[GEMINI]["recovers_at"] - board_now) < 60  # serving Gemini now
    assert abs(quota[CLAUDE]["recovers_at"] - (board_now + 2 * DAY)) < 120  # the weekly reset
