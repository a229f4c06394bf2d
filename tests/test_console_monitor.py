"""The console's Dashboard, Monitor, Statistics and Model mapping pages in headless
Chromium, against a gateway on the fake Google upstream."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_google import Fault
from playwright.sync_api import Page, expect  # noqa: E402
from test_console import ARTIFACTS, PASSWORD, login  # skips the module without chromium

from conftest import Borrowed, Gateway, borrow, gateway_with, google_env, spawn


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    gw = spawn(
        tmp_path_factory.mktemp("console-monitor") / "gw",
        AGPROXY_ADMIN_PASSWORD=PASSWORD,
        **google_env(fake_google_server),
    )
    yield gw
    gw.stop()


@pytest.fixture
def shared(gateway: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    """The module's gateway with an empty monitor: the pages show this test's records, and
    its accounts and settings are gone again after it."""
    with borrow(gateway, fake_google) as turn:
        assert gateway.admin("POST", "/api/logs/clear").status_code == 200
        yield turn


def ask(gw: Gateway, model: str = "gemini-3-flash", text: str = "hello") -> httpx.Response:
    return httpx.post(
        gw.base_url + f"/v1beta/models/{model}:generateContent",
        timeout=30,
        json={"contents": [{"role": "user", "parts": [{"text": text}]}]},
    )


def test_dashboard_shows_a_cooling_down_account_with_its_time_left(
    page: Page, shared: Borrowed, fake_google: Any
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    gw = shared.gw
    shared.configure(scheduling_mode="round_robin")
    accounts = shared.add_accounts(3)
    for i in range(5):
        assert ask(gw, text=f"warm {i}").status_code == 200
    fake_google.inject(Fault.rate_limited(retry_delay="300s"), email=accounts[0].email, times=3)
    for _ in range(3):
        assert ask(gw).status_code == 200  # rotated away from the limited account
    gw.cli("accounts", "disable", accounts[2].email)
    login(page, gw)
    cooling = page.locator(f".attention-item[data-email='{accounts[0].email}']")
    expect(cooling).to_have_attribute("data-state", "cooling_down")
    expect(cooling).to_contain_text("cooling down")
    expect(cooling).to_contain_text("gemini-3-flash")
    first = cooling.locator(".countdown").inner_text()
    assert re.fullmatch(r"4m \d\ds", first), first  # 300 s, less the time since
    time.sleep(1.5)
    assert cooling.locator(".countdown").inner_text() != first  # it counts down
    expect(page.locator("#dash-proxy")).to_have_text("running")
    expect(page.locator("#dash-serving")).to_have_text("2 / 3")
    expect(page.locator("#dash-accounts-sub")).to_contain_text("1 disabled")
    expect(page.locator("#dash-requests")).to_have_text("8")
    expect(page.locator("#dash-error-rate")).to_have_text("0%")
    expect(page.locator("#dash-chart svg rect.ok")).not_to_have_count(0)
    assert page.locator("#dash-chart").get_attribute("data-total") == "8"
    next_flash = page.locator("#next-up tr[data-model='gemini-3-flash'] td").nth(1)
    expect(next_flash).to_have_text(accounts[1].email)  # the one free account
    expect(page.locator("#dash-quota .hbar[data-name='gemini-3-flash']")).to_contain_text("100%")
    page.screenshot(path=str(ARTIFACTS / "console-dashboard.png"), full_page=True)

    # Reset by hand: the cooling account leaves the list and is asked again at once.
    cooling.locator("button[data-action=reset]").click()
    expect(page.locator("#toast")).to_contain_text("1 cooldown(s) cleared")
    expect(cooling).to_have_count(0)
    board = gw.admin("GET", "/api/dashboard").json()
    assert [i for i in board["attention"] if i["state"] == "cooling_down"] == []
    # And from the Accounts page: the account cools again, its card's Reset clears it.
    fake_google.inject(Fault.rate_limited(retry_delay="300s"), email=accounts[0].email)
    for i in range(3):
        assert ask(gw, text=f"again {i}").status_code == 200
    assert gw.admin("GET", "/api/dashboard").json()["attention"][0]["state"] == "cooling_down"
    page.click("a[data-page=accounts]")
    card = page.locator(f".account[data-email='{accounts[0].email}']")
    card.locator("button[data-action=reset]").click()
    expect(page.locator("#toast")).to_contain_text("reset, 1 cooldown(s) cleared")
    board = gw.admin("GET", "/api/dashboard").json()
    assert [i for i in board["attention"] if i["state"] == "cooling_down"] == []


def test_monitor_shows_new_requests_live_filters_and_details(
    page: Page, shared: Borrowed, fake_google: Any
) -> None:
    gw = shared.gw
    shared.configure(scheduling_mode="round_robin")
    shared.reset_afterwards("monitor_capture_bodies")  # switched on from the page
    accounts = shared.add_accounts(2)
    assert ask(gw, text="before").status_code == 200
    login(page, gw)
    page.click("a[data-page=monitor]")
    rows = page.locator("#mon-rows .log-row")
    expect(rows).to_have_count(1)
    expect(page.locator("#mon-live")).to_have_class(re.compile(r"\bon\b"))

    made = time.monotonic()
    assert ask(gw, text="live one").status_code == 200
    expect(rows).to_have_count(2, timeout=2000)  # within 2 s, without a reload
    assert time.monotonic() - made < 2.5

    fake_google.inject(Fault.rate_limited(retry_delay="60s"), email=accounts[0].email)
    fake_google.inject(Fault.rate_limited(retry_delay="60s"), email=accounts[1].email)
    assert ask(gw, model="gemini-3-pro-high", text="limited").status_code == 429
    expect(rows).to_have_count(3, timeout=2000)
    expect(rows.first.locator(".code")).to_have_text("429")
    expect(rows.first.locator(".model")).to_have_text("gemini-3-pro-high")

    page.check("#mon-errors")
    expect(rows).to_have_count(1)
    page.uncheck("#mon-errors")
    expect(rows).to_have_count(3)
    page.fill("#mon-model", "pro-high")
    expect(rows).to_have_count(1)
    # A new request that does not match the filter does not show up.
    assert ask(gw, text="filtered out").status_code == 200
    page.wait_for_timeout(700)
    expect(rows).to_have_count(1)
    page.fill("#mon-model", "")
    page.select_option("#mon-status", "2xx")
    expect(rows).to_have_count(3)
    page.select_option("#mon-status", "")
    page.fill("#mon-search", "rate limited")  # only the error text holds this
    expect(rows).to_have_count(1)
    page.fill("#mon-search", "")
    expect(rows).to_have_count(4)

    page.locator(".log-row .code", has_text="429").click()
    expect(page.locator("#mon-detail")).to_be_visible()
    attempts = page.locator("#detail-attempts li")
    expect(attempts).to_have_count(2)
    expect(attempts.first).to_contain_text("429 rate_limited")
    expect(page.locator("#detail-error")).to_contain_text("rate limited")
    expect(page.locator("#detail-request")).to_contain_text("Not captured")
    page.screenshot(path=str(ARTIFACTS / "console-monitor.png"), full_page=True)
    page.click("#btn-detail-close")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#btn-mon-clear")
    expect(rows).to_have_count(0)
    expect(page.locator("#mon-empty")).to_be_visible()
    assert gw.admin("GET", "/api/logs").json()["logs"] == []

    # Body capture from the page: the next request's bodies show, redacted.
    page.check("#mon-bodies")
    expect(page.locator("#toast")).to_contain_text("Capturing bodies")
    assert gw.admin("GET", "/api/config").json()["config"]["monitor_capture_bodies"]
    planted = "sk-" + uuid.uuid4().hex
    assert ask(gw, text=f"my key is {planted}").status_code == 200
    expect(rows).to_have_count(1, timeout=2000)
    rows.first.click()
    expect(page.locator("#detail-request")).to_contain_text("my key is [redacted]")
    expect(page.locator("#detail-response")).to_contain_text("echo: my key is [redacted]")
    assert planted not in page.content()


def test_statistics_page_draws_its_charts_from_the_records(
    page: Page, shared: Borrowed, fake_google: Any
) -> None:
    gw = shared.gw
    shared.add_accounts(2)
    for i in range(4):
        assert ask(gw, text="tokens " * (i + 1)).status_code == 200
    for i in range(2):
        assert ask(gw, model="gemini-3-pro-high", text=f"pro {i}").status_code == 200
    fake_google.inject(Fault.invalid_argument("nope"))
    assert ask(gw).status_code == 400
    logs = gw.admin("GET", "/api/logs").json()["logs"]
    tokens = sum((r["input_tokens"] or 0) + (r["output_tokens"] or 0) for r in logs)

    login(page, gw)
    page.click("a[data-page=stats]")
    expect(page.locator("#st-requests")).to_have_text("7")
    expect(page.locator("#st-errors")).to_have_text("1 failed")
    expect(page.locator("#chart-tokens svg rect.input")).not_to_have_count(0)
    expect(page.locator("#chart-tokens svg rect.output")).not_to_have_count(0)
    assert int(page.locator("#chart-tokens").get_attribute("data-total") or 0) == tokens
    assert page.locator("#chart-tokens").get_attribute("data-points") in ("24", "25")
    expect(page.locator("#chart-requests svg rect.err")).to_have_count(1)
    expect(page.locator("#by-model .hbar")).to_have_count(2)
    expect(page.locator("#by-model .hbar").first).to_have_attribute("data-name", "gemini-3-flash")
    expect(page.locator("#by-account .hbar")).to_have_count(2)
    page.screenshot(path=str(ARTIFACTS / "console-stats.png"), full_page=True)

    page.click("#stats-range .tab[data-hours='720']")
    # A locator assertion, not wait_for_function: that evaluates its string with eval,
    # which the console's CSP refuses (the test then fails whenever it has to poll).
    expect(page.locator("#chart-tokens")).to_have_attribute("data-points", "31", timeout=5000)
    with page.expect_download() as download:
        page.click("#btn-stats-csv")
    text = Path(download.value.path()).read_text()
    assert text.startswith("bucket_start,bucket,model,account,key,requests")
    assert sum(int(line.split(",")[5]) for line in text.splitlines()[1:]) == 7


def test_model_mapping_page_reorders_tests_and_saves(page: Page, shared: Borrowed) -> None:
    gw = shared.gw
    shared.add_accounts(1)
    shared.configure(model_mapping={"gpt-*": "gemini-3-flash", "*t-4o": "gemini-3-pro-high"})
    login(page, gw)
    page.click("a[data-page=mapping]")
    expect(page.locator(".mapping-row")).to_have_count(2)
    expect(page.locator("#served-models .chip", has_text="gemini-3-pro-high")).to_have_count(1)
    # Equal specificity: the higher rule wins.
    page.fill("#trace-model", "gpt-4o")
    page.click("#btn-trace")
    expect(page.locator("#trace-result")).to_have_text("gpt-4o → gemini-3-flash by rule gpt-*")
    page.locator(".mapping-row").nth(1).locator("button[title='Move up']").click()
    expect(page.locator(".mapping-row .map-from").first).to_have_value("*t-4o")
    page.click("#btn-trace")  # tests the unsaved order
    expect(page.locator("#trace-result")).to_have_text("gpt-4o → gemini-3-pro-high by rule *t-4o")
    page.fill("#trace-model", "llama-3")
    page.click("#btn-trace")
    expect(page.locator("#trace-result")).to_contain_text("nothing serves it")
    page.screenshot(path=str(ARTIFACTS / "console-mapping.png"), full_page=True)
    page.click("#btn-mapping-save")
    expect(page.locator("#toast")).to_contain_text("Mapping saved")
    saved = gw.admin("GET", "/api/config").json()["config"]["model_mapping"]
    assert list(saved.items()) == [("*t-4o", "gemini-3-pro-high"), ("gpt-*", "gemini-3-flash")]
    assert (
        gw.admin("GET", "/api/models/trace", params={"model": "gpt-4o"}).json()["model"]
        == "gemini-3-pro-high"
    )


def test_a_retired_model_error_offers_its_successor_as_a_mapping(
    page: Page, gateway_factory: Any, fake_google: Any
) -> None:
    gw, _ = gateway_with(gateway_factory, fake_google, 1, AGPROXY_ADMIN_PASSWORD=PASSWORD)
    retired = "gemini-3-flash is no longer available. Please switch to gemini-3-pro-high."
    fake_google.script(model="gemini-3-flash", parts=[{"text": retired}], times=5)
    assert ask(gw, text="old model").status_code == 404
    login(page, gw)
    page.click("a[data-page=monitor]")
    page.locator(".log-row .code", has_text="404").click()
    offer = page.locator("#detail-successor button")
    expect(offer).to_have_text("Map gemini-3-flash → gemini-3-pro-high")
    page.locator("#mon-detail").screenshot(path=str(ARTIFACTS / "console-successor.png"))
    offer.click()
    expect(page.locator("#toast")).to_have_text("Mapped gemini-3-flash → gemini-3-pro-high")
    mapping = gw.admin("GET", "/api/config").json()["config"]["model_mapping"]
    assert mapping == {"gemini-3-flash": "gemini-3-pro-high"}
    answer = ask(gw, text="mapped now")  # the rule routes the old id to its successor
    assert answer.status_code == 200 and answer.headers["x-agproxy-model"] == "gemini-3-pro-high"
