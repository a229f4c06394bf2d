"""The web console in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ZAI_ENV, Borrowed, Gateway, add_accounts, add_to, borrow, google_env, spawn

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "console-pass-42"
KEY_RULE = 'api_key must start with "sk-" and be at least 10 characters long'

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is required for the console tests (scripts/test installs it)")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_google_server: Any) -> Iterator[Gateway]:
    """A gateway with the console's password and an empty pool (so its service is stopped),
    for the tests that leave it so: the accounts a test adds are removed after it, and a
    service it started is stopped again."""
    gw = spawn(
        tmp_path_factory.mktemp("console") / "gw",
        AGPROXY_ADMIN_PASSWORD=PASSWORD,
        **google_env(fake_google_server),
    )
    yield gw
    gw.stop()


@pytest.fixture
def empty(gateway: Gateway, fake_google: Any) -> Iterator[Borrowed]:
    with borrow(gateway, fake_google) as turn:
        assert not turn.was_running and not turn.accounts_before
        yield turn


def login(page: Page, gw: Gateway, password: str = PASSWORD) -> None:
    page.goto(gw.base_url + "/")
    page.fill("#login-password", password)
    page.click("#login-submit")


def test_api_proxy_page(page: Page, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    gw = spawn(tmp_path / "gw", AGPROXY_ADMIN_PASSWORD=PASSWORD, **ZAI_ENV)
    try:
        page.goto(gw.base_url + "/")
        expect(page.locator("#login-password")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "console-login.png"))
        login(page, gw, "wrong-password")
        expect(page.locator("#login-error")).to_be_visible()
        expect(page.locator("#login-error")).to_have_text("Wrong password.")

        login(page, gw)
        expect(page.locator("#page-dashboard")).to_be_visible()  # the landing page
        page.click("a[data-page=proxy]")
        expect(page.locator("#status-badge")).to_have_text("running")
        expect(page.locator("#active-accounts")).to_have_text("0 active accounts")
        expect(page.locator("#field-port")).to_be_disabled()
        expect(page.locator("#field-port")).to_have_value(str(gw.port))

        page.click("#toggle-service")
        expect(page.locator("#status-badge")).to_have_text("stopped")
        expect(page.locator("#field-port")).to_be_enabled()
        assert gw.get("/healthz").status_code == 503
        page.click("#toggle-service")
        expect(page.locator("#status-badge")).to_have_text("running")
        expect(page.locator("#field-port")).to_be_disabled()

        original = gw.api_key
        page.fill("#field-api-key", "abc")
        page.click("#btn-save")
        expect(page.locator("#api-key-error")).to_have_text(KEY_RULE)
        assert gw.admin("GET", "/api/proxy/api-key").json()["api_key"] == original

        page.fill("#field-api-key", "sk-valid-test-key-0001")
        page.click("#btn-save")
        expect(page.locator("#toast")).to_contain_text("Saved")
        assert gw.admin("GET", "/api/proxy/api-key").json()["api_key"] == "sk-valid-test-key-0001"
        openai = page.locator("#snippet-openai").inner_text()
        assert "sk-valid-test-key-0001" in openai and f"http://127.0.0.1:{gw.port}/v1" in openai
        claude = page.locator("#snippet-claude").inner_text()
        assert f'ANTHROPIC_BASE_URL="http://127.0.0.1:{gw.port}"' in claude
        assert "/v1" not in claude
        # The other clients' settings, as `agproxy setup` writes them, valid as they stand.
        base = f"http://127.0.0.1:{gw.port}"
        codex = tomllib.loads(page.locator("#snippet-codex").inner_text())
        provider = codex["model_providers"]["agproxy"]
        assert (codex["model_provider"], provider["base_url"]) == ("agproxy", base + "/v1")
        assert provider["http_headers"]["Authorization"] == "Bearer sk-valid-test-key-0001"
        opencode = json.loads(page.locator("#snippet-opencode").inner_text())
        assert opencode["provider"]["agproxy"]["options"]["baseURL"] == base + "/v1"
        env = page.locator("#snippet-gemini-cli").inner_text().splitlines()
        assert env == [f"GOOGLE_GEMINI_BASE_URL={base}", "GEMINI_API_KEY=sk-valid-test-key-0001"]
        assert "agproxy setup claude-code" in page.locator("#snippet-setup").inner_text()

        page.click("label.switch:has(#field-lan)")
        expect(page.locator("#field-lan")).to_be_checked()
        page.select_option("#field-auth-mode", "off")
        expect(page.locator("#lan-warning")).to_be_visible()
        page.select_option("#field-auth-mode", "all_except_health")
        expect(page.locator("#lan-warning")).to_be_hidden()
        page.select_option("#field-auth-mode", "auto")
        page.click("label.switch:has(#field-lan)")

        page.fill("#field-allowed-ips", "192.168.1.0/24, bogus")
        page.click("#btn-save")
        expect(page.locator("#settings-error")).to_contain_text("'bogus' is not an IP address")
        page.fill("#field-allowed-ips", "192.168.1.0/24, 10.0.0.5")
        page.click("#btn-save")
        expect(page.locator("#toast")).to_contain_text("Saved")
        # The toast of the save before may still show: wait for this save to land.
        deadline = time.monotonic() + 5
        while (
            time.monotonic() < deadline
            and not gw.admin("GET", "/api/config").json()["config"]["allowed_ips"]
        ):
            time.sleep(0.05)
        assert gw.admin("GET", "/api/config").json()["config"]["allowed_ips"] == [
            "192.168.1.0/24",
            "10.0.0.5",
        ]

        page.click("a[data-page=mapping]")
        page.fill(".mapping-row .map-from", "gpt-4*")
        page.fill(".mapping-row .map-to", "gemini-3-flash")
        page.click("#btn-mapping-add")
        page.locator(".mapping-row .map-from").nth(1).fill("claude-haiku*")
        page.locator(".mapping-row .map-to").nth(1).fill("gemini-3-flash")
        page.click("#btn-mapping-save")
        expect(page.locator("#toast")).to_contain_text("Mapping saved")
        assert gw.admin("GET", "/api/config").json()["config"]["model_mapping"] == {
            "gpt-4*": "gemini-3-flash",
            "claude-haiku*": "gemini-3-flash",
        }
        page.click("a[data-page=proxy]")
        expect(page.locator("#zai-mode")).to_have_value("exclusive")  # from the environment
        page.fill("#zai-opus", "glm-5")
        page.click("#btn-zai-save")
        expect(page.locator("#toast")).to_contain_text("z.ai settings saved")
        expect(page.locator("#zai-mode")).to_be_disabled()  # set by AGPROXY_ZAI_DISPATCH_MODE
        expect(page.locator("#zai-env")).to_have_text(
            "Set by the environment, read-only here: AGPROXY_ZAI_DISPATCH_MODE, "
            "AGPROXY_ZAI_API_KEY."
        )
        expect(page.locator("#settings-env")).to_be_hidden()
        zai_models = gw.admin("GET", "/api/config").json()["config"]["zai_models"]
        assert zai_models == {"opus": "glm-5", "sonnet": "glm-4.7", "haiku": "glm-4.5-air"}
        page.screenshot(path=str(ARTIFACTS / "console-api-proxy.png"), full_page=True)
    finally:
        gw.stop()


def test_start_error_is_shown_verbatim(page: Page, empty: Borrowed) -> None:
    gw = empty.gw  # empty pool
    login(page, gw)
    expect(page.locator("#status-badge")).to_have_text("stopped")
    page.click("#toggle-service")
    expect(page.locator("#service-error")).to_have_text(
        "no available accounts, please add an account first"
    )
    expect(page.locator("#status-badge")).to_have_text("stopped")


def test_accounts_page(page: Page, empty: Borrowed, fake_google: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    gw = empty.gw
    accounts = [
        fake_google.add_account(
            email=f"page-{uuid.uuid4().hex[:6]}@example.com",
            paid_tier=("g1-pro-tier", "Google AI Pro"),
            models={
                "gemini-3-flash": {"remainingFraction": 0.8, "resetTime": "2099-01-01T00:00:00Z"},
                "claude-sonnet-4-6": {
                    "remainingFraction": 0.15,
                    "resetTime": "2099-01-01T00:00:00Z",
                },
            },
        )
        for _ in range(2)
    ]
    login(page, gw)
    page.click("a[data-page=accounts]")
    expect(page.locator("#accounts-empty")).to_be_visible()
    page.click("button[data-tab=import]")
    page.fill("#import-text", "\n".join([a.refresh_token for a in accounts] + ["1//bad"]))
    page.click("#btn-import")
    expect(page.locator("#import-summary")).to_have_text(
        "2 added, 0 updated, 0 duplicate, 1 invalid"
    )
    first = page.locator(f".account[data-email='{accounts[0].email}']")
    expect(first.locator(".state")).to_have_text("enabled")
    expect(first.locator(".quota[data-model=gemini-3-flash]")).to_contain_text("80%")
    expect(page.locator("#stat-active")).to_have_text("2")

    first.locator("button[data-action=disable]").click()
    expect(first.locator(".state")).to_have_text("disabled")
    expect(page.locator("#stat-active")).to_have_text("1")
    listed = {a["email"]: a["state"] for a in gw.admin("GET", "/api/accounts").json()["accounts"]}
    assert listed[accounts[0].email] == "disabled"
    # The proxy page's count follows: the service started with these accounts.
    status = httpx.post(
        gw.base_url + "/api/proxy/start", headers={"Authorization": f"Bearer {PASSWORD}"}
    ).json()
    assert status["active_accounts"] == 1
    page.screenshot(path=str(ARTIFACTS / "console-accounts.png"), full_page=True)


def test_accounts_page_and_dashboard_show_both_quota_windows(
    page: Page, gateway_factory: Any, fake_google: Any
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    week_end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2 * 86400))
    acct = fake_google.add_account(
        email=f"windows-{uuid.uuid4().hex[:6]}@example.com",
        windows={
            "gemini-5h": {"remainingFraction": 0.7},
            "gemini-weekly": {"remainingFraction": 0.9},
            "3p-5h": {"remainingFraction": 0.15},
            "3p-weekly": {"remainingFraction": 0.0, "resetTime": week_end},
        },
    )
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD, **google_env(fake_google))
    add_to(gw, acct)
    login(page, gw)
    page.click("a[data-page=accounts]")
    card = page.locator(f".account[data-email='{acct.email}']")
    expect(card.locator(".window")).to_have_count(4)
    gemini = card.locator(".window-group[data-group=gemini]")
    expect(gemini.locator(".window-group-name")).to_have_text("Gemini models")
    expect(gemini.locator(".window[data-bucket=gemini-5h]")).to_contain_text("5-hour")
    expect(card.locator(".window[data-bucket=gemini-5h]")).to_contain_text("70% resets in 4h")
    expect(card.locator(".window[data-bucket=gemini-weekly]")).to_contain_text("90%")
    expect(card.locator(".window[data-bucket='3p-5h']")).to_contain_text("15%")
    weekly = card.locator(".window[data-bucket='3p-weekly']")
    expect(card.locator(".window-group[data-group='3p'] .window-group-name")).to_have_text(
        "Claude and GPT models"
    )
    expect(weekly).to_contain_text("weekly")
    expect(weekly).to_contain_text("0% resets in 47h")
    expect(weekly).to_contain_text("not scheduled")
    expect(weekly.locator(".bar.empty")).to_have_count(1)
    order = card.locator(".window").evaluate_all("nodes => nodes.map((n) => n.dataset.bucket)")
    assert order == ["gemini-5h", "gemini-weekly", "3p-5h", "3p-weekly"]
    card.screenshot(path=str(ARTIFACTS / "console-accounts-windows.png"))

    page.click("a[data-page=dashboard]")
    expect(page.locator(".hbar[data-name=gemini-3-flash]")).to_contain_text("available now")
    expect(page.locator(".hbar[data-name=claude-sonnet-4-6]")).to_contain_text("recovers in 1d 23h")
    page.screenshot(path=str(ARTIFACTS / "console-dashboard-recovery.png"), full_page=True)


def test_a_port_move_keeps_the_console_signed_in(
    page: Page, tmp_path: Path, fake_google: Any
) -> None:
    from conftest import free_port

    gw = spawn(tmp_path / "gw", AGPROXY_ADMIN_PASSWORD=PASSWORD, **google_env(fake_google))
    add_accounts(gw, fake_google, prefix="move")
    new_port = free_port()
    try:
        login(page, gw)
        page.click("a[data-page=proxy]")
        page.click("#toggle-service")
        expect(page.locator("#status-badge")).to_have_text("stopped")
        page.fill("#field-port", str(new_port))
        page.click("#btn-save")
        expect(page.locator("#toast")).to_contain_text("Saved")
        page.click("#toggle-service")
        expect(page.locator("#service-error")).to_contain_text(f"moved to port {new_port}")
        page.wait_for_url(f"http://127.0.0.1:{new_port}/#/proxy", timeout=10000)
        expect(page.locator("#status-badge")).to_have_text("running")  # no login form
        expect(page.locator("#login-view")).to_be_hidden()
        # The password never left the old page: no window.name, and the single-use ticket
        # that carried the session is spent and gone from the address bar.
        assert page.evaluate("window.name") == ""
        assert "ticket" not in page.url
        assert PASSWORD not in page.evaluate("JSON.stringify(history.state) + location.href")
        spent = httpx.post(f"http://127.0.0.1:{new_port}/auth/ticket", json={"ticket": "x" * 43})
        assert spent.status_code == 401 and "password" not in spent.json()
    finally:
        gw.stop()


def test_console_loads_as_es_modules_under_its_csp(page: Page, empty: Borrowed) -> None:
    from agproxy.console import STATIC_DIR

    gw = empty.gw
    # One entry module; the pages' modules are imported from it, with no build step.
    assert re.findall(r"<script[^>]*>", gw.get("/").text) == [
        '<script type="module" src="/console/main.js">'
    ]
    modules = sorted(p.name for p in STATIC_DIR.glob("*.js"))
    assert {
        "main.js",
        "api.js",
        "dashboard.js",
        "proxy.js",
        "accounts.js",
        "monitor.js",
        "stats.js",
        "mapping.js",
    } <= set(modules)
    for name in modules:  # browsers refuse a module served with any other type
        answer = gw.get("/console/" + name)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/javascript"), name
    # api.js is the one place that calls fetch().
    fetching = [name for name in modules if "fetch(" in (STATIC_DIR / name).read_text()]
    assert fetching == ["api.js"]

    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    bare: list[str] = []
    page.on(
        "request",
        lambda r: (
            bare.append(r.url)
            if "/api/" in r.url and r.headers.get("authorization") != f"Bearer {PASSWORD}"
            else None
        ),
    )
    login(page, gw)
    for name, title in [
        ("proxy", "API Proxy"),
        ("accounts", "Accounts"),
        ("monitor", "Monitor"),
        ("stats", "Statistics"),
        ("mapping", "Model mapping"),
        ("dashboard", "Dashboard"),
    ]:
        page.click(f"a[data-page={name}]")
        expect(page.locator("#page-title")).to_have_text(title)
        expect(page.locator(f"#page-{name}")).to_be_visible()
    expect(page.locator("#dash-proxy")).to_have_text("stopped")  # data arrived on the last one
    assert problems == []  # no script error, no CSP violation
    assert bare == []  # every admin call carried the session


def test_a_rejected_session_returns_to_the_login_form(page: Page, gateway_factory: Any) -> None:
    gw = gateway_factory(config={"admin_password": PASSWORD})
    login(page, gw)
    page.click("a[data-page=stats]")
    expect(page.locator("#st-requests")).to_have_text("0")
    changed = gw.admin("PUT", "/api/config", json={"admin_password": "another-pass-42"})
    assert changed.status_code == 200
    page.click("#btn-stats-csv")  # answered 401: the console asks for the password again
    expect(page.locator("#login-view")).to_be_visible(timeout=2000)
    expect(page.locator("#app-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('agproxy.admin')") is None  # stale: dropped
    page.fill("#login-password", "another-pass-42")
    page.click("#login-submit")
    expect(page.locator("#page-title")).to_have_text("Statistics")  # back where it was


def test_prompt_rewrites_editor_and_tester(page: Page, gateway_factory: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD)
    login(page, gw)
    page.click("a[data-page=mapping]")
    page.fill(".rewrite-row .rewrite-find", "Anthropic's official CLI")
    page.fill(".rewrite-row .rewrite-replace", "a coding assistant")
    page.fill("#rewrite-sample", "You are Claude Code, Anthropic's official CLI for Claude.")
    page.click("#btn-rewrite-test")  # tested before it is saved
    expect(page.locator("#rewrite-result")).to_have_text(
        "You are Claude Code, a coding assistant for Claude."
    )
    expect(page.locator("#rewrite-matched")).to_have_text("1 rewrite(s) applied")
    assert gw.admin("GET", "/api/config").json()["config"]["prompt_rewrites"] == []
    page.click("#btn-rewrite-save")
    expect(page.locator("#toast")).to_have_text("Rewrites saved")
    saved = gw.admin("GET", "/api/config").json()["config"]["prompt_rewrites"]
    assert saved == [{"find": "Anthropic's official CLI", "replace": "a coding assistant"}]
    page.locator("#rewrites-card").screenshot(path=str(ARTIFACTS / "console-rewrites.png"))
    page.screenshot(path=str(ARTIFACTS / "console-mapping-page.png"), full_page=True)
    # A rule the settings refuse (an empty find is skipped; a too long one is refused).
    page.fill(".rewrite-row .rewrite-find", "x" * 5000)
    page.click("#btn-rewrite-save")
    expect(page.locator("#rewrite-error")).to_contain_text("4000")
    assert gw.admin("GET", "/api/config").json()["config"]["prompt_rewrites"] == saved


def test_an_account_asked_to_verify_shows_its_link(
    page: Page, gateway_factory: Any, fake_google: Any
) -> None:
    from fake_google import Fault
    from fake_google._faults import VALIDATION_URL

    gw = gateway_factory(
        AGPROXY_ADMIN_PASSWORD=PASSWORD, AGPROXY_REPROBE_MINUTES="0", **google_env(fake_google)
    )
    first, _ = add_accounts(gw, fake_google, 2)
    fake_google.inject(Fault.forbidden(validation=True), email=first.email)
    for i in range(3):
        httpx.post(
            gw.base_url + "/v1beta/models/gemini-3-flash:generateContent",
            headers={"x-goog-api-key": gw.api_key},
            json={"contents": [{"role": "user", "parts": [{"text": f"hi {i}"}]}]},
            timeout=30,
        )
    login(page, gw)
    item = page.locator(f".attention-item[data-email='{first.email}']")
    expect(item).to_have_attribute("data-state", "needs_verification")
    expect(item.locator(".verify-link")).to_have_attribute("href", VALIDATION_URL)
    page.click("a[data-page=accounts]")
    card = page.locator(f".account[data-email='{first.email}']")
    expect(card.locator(".state")).to_have_text("needs verification")
    link = card.locator(".verify-link")
    expect(link).to_have_attribute("href", VALIDATION_URL)
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    card.screenshot(path=str(ARTIFACTS / "console-needs-verification.png"))


def test_the_dashboard_lists_the_workers(
    page: Page, tmp_path: Path, fake_google: Any, own_redis: Any
) -> None:
    from conftest import launch, ready

    gw = ready(
        launch(
            tmp_path / "gw",
            serve_args=("--workers", "2"),
            **google_env(fake_google),
            AGPROXY_ADMIN_PASSWORD=PASSWORD,
            AGPROXY_REDIS_URL=own_redis.url,
        )
    )
    try:
        add_accounts(gw, fake_google, prefix="workers")
        login(page, gw)
        page.click("a[data-page=dashboard]")
        rows = page.locator("#processes tr[data-pid]")
        expect(rows).to_have_count(2, timeout=10_000)  # each worker renews its line every 2 s
        expect(page.locator("#processes")).to_contain_text("(this one)")
        expect(rows.nth(0)).to_contain_text("running")
        expect(rows.nth(1)).to_contain_text(f"127.0.0.1:{gw.port}")
        page.locator("#processes-card").screenshot(path=str(ARTIFACTS / "console-processes.png"))
    finally:
        assert gw.stop() == 0
