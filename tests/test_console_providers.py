"""The console's Providers page in headless Chromium: the list (keys masked), adding a
provider through the form (the config file has it, the page never shows its keys again),
refusals shown as the API words them, testing each key against a fake OpenAI-compatible
upstream, disable/enable, remove, a provider set by the environment shown read-only, and the
page filled with providers in every language without text that does not fit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_providers import OPENAI_KEY, FakeOpenAI
from playwright.sync_api import Page, expect
from test_console import ARTIFACTS, PASSWORD, login  # skips the module without chromium
from test_i18n import LANGS, OVERFLOWING, new_page

from conftest import Gateway

WRONG_KEY = "sk-wrong-key-0000000042"


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def watch_problems(page: Page) -> list[str]:
    """Script errors and CSP violations; the refusals a test asks for (400, 409) are not."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    expected = ("status of 400", "status of 409")
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and not any(e in msg.text for e in expected)
            else None
        ),
    )
    return problems


def row(page: Page, name: str) -> Any:
    return page.locator(f"#prov-rows tr.prov-row[data-name='{name}']")


def listed(gw: Gateway) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in gw.admin("GET", "/api/providers").json()["providers"]}


def open_page(page: Page, gw: Gateway) -> None:
    login(page, gw)
    expect(page.locator("#page-dashboard")).to_be_visible()
    page.click("a[data-page=providers]")
    expect(page.locator("#page-title")).to_have_text("Providers")


def test_add_test_disable_and_remove_a_provider(
    page: Page, gateway_factory: Any, fake_openai: FakeOpenAI
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD)
    problems = watch_problems(page)
    page.on("dialog", lambda dialog: dialog.accept())
    open_page(page, gw)
    expect(page.locator("#prov-empty")).to_be_visible()
    expect(page.locator("#prov-table")).to_be_hidden()
    expect(page.locator("#prov-env")).to_be_hidden()
    expect(page.locator("#btn-prov-add")).to_be_enabled()
    # The base URL shows the chosen kind's default.
    expect(page.locator("#prov-base")).to_have_attribute(
        "placeholder", "https://generativelanguage.googleapis.com"
    )
    page.select_option("#prov-kind", "openai_compatible")
    expect(page.locator("#prov-base")).to_have_attribute("placeholder", "https://api.openai.com/v1")

    # Refused entries: the API's message, and nothing saved.
    page.fill("#prov-name", "google")
    page.fill("#prov-keys", OPENAI_KEY)
    page.click("#btn-prov-add")
    expect(page.locator("#prov-error")).to_contain_text("provider name 'google'")
    page.fill("#prov-name", "fake")
    page.fill("#prov-base", "ftp://127.0.0.1/v1")
    page.click("#btn-prov-add")
    expect(page.locator("#prov-error")).to_contain_text("is not an http(s) URL")
    assert listed(gw) == {}
    assert not gw.config_file().get("providers")
    expect(page.locator("#prov-empty")).to_be_visible()

    # A good one: two keys (one named, one wrong), models with aliases.
    page.fill("#prov-base", fake_openai.base_url)
    page.fill("#prov-keys", f"main={OPENAI_KEY}\n\n  wrong = {WRONG_KEY}  \n")
    page.fill("#prov-models", "fake-gpt = gpt, fast\nfake-gpt-mini\n")
    page.click("#btn-prov-add")
    fake = row(page, "fake")
    expect(fake).to_be_visible()
    expect(page.locator("#prov-error")).to_be_hidden()
    expect(page.locator("#toast")).to_have_text("Added fake")
    expect(page.locator("#prov-name")).to_have_value("")  # the form is cleared
    expect(page.locator("#prov-keys")).to_have_value("")

    view = listed(gw)["fake"]
    assert view["kind"] == "openai_compatible" and view["url"] == fake_openai.base_url
    assert view["key_names"] == ["main", "wrong"]
    assert view["models"] == [
        {"id": "fake-gpt", "aliases": ["gpt", "fast"]},
        {"id": "fake-gpt-mini", "aliases": []},
    ]
    assert view["enabled"] is True and view["source"] == "config"
    [saved] = gw.config_file()["providers"]
    assert saved["name"] == "fake" and saved["base_url"] == fake_openai.base_url
    assert saved["keys"] == [
        {"key": OPENAI_KEY, "name": "main"},
        {"key": WRONG_KEY, "name": "wrong"},
    ]

    expect(fake).to_contain_text("OpenAI-compatible")
    expect(fake.locator(".prov-url")).to_have_text(fake_openai.base_url)
    expect(fake.locator(".prov-keys")).to_contain_text("main " + view["keys"][0]["key"])
    expect(fake.locator(".prov-keys")).to_contain_text("wrong " + view["keys"][1]["key"])
    expect(fake.locator(".prov-models")).to_contain_text("fake-gpt = gpt, fast")
    expect(fake.locator(".prov-models")).to_contain_text("fake-gpt-mini")
    expect(fake.locator(".state")).to_have_text("enabled")
    expect(fake.locator(".prov-source")).to_have_text("config file")
    html = page.content()
    assert OPENAI_KEY not in html and WRONG_KEY not in html
    assert "••••" + OPENAI_KEY[-4:] in html

    # Test: each key's result inline, under the row.
    fake.locator("[data-action=test]").click()
    result = page.locator("#prov-rows tr.prov-test[data-name='fake']")
    expect(result).to_be_visible()
    expect(result.locator(".prov-test-head")).to_have_text("1 of 2 keys work")
    good = result.locator("li[data-key='main']")
    expect(good).to_contain_text("works")
    expect(good.locator(".code")).to_have_text("200")
    expect(good).to_contain_text(f"{len(fake_openai.models)} models")
    bad = result.locator("li[data-key='wrong']")
    expect(bad).to_contain_text("failed")
    expect(bad.locator(".code")).to_have_text("401")
    expect(bad).to_contain_text("Incorrect API key provided")
    expect(fake.locator("[data-action=test]")).to_have_text("Test")  # ready again
    page.screenshot(path=str(ARTIFACTS / "console-providers.png"), full_page=True)
    assert OPENAI_KEY not in page.content() and WRONG_KEY not in page.content()

    # Disable, enable: the setting flips, the row says so.
    fake.locator("[data-action=disable]").click()
    expect(fake.locator(".state")).to_have_text("disabled")
    assert listed(gw)["fake"]["enabled"] is False
    assert gw.config_file()["providers"][0]["enabled"] is False
    expect(result).to_be_visible()  # the last test stays shown
    fake.locator("[data-action=enable]").click()
    expect(fake.locator(".state")).to_have_text("enabled")
    assert listed(gw)["fake"]["enabled"] is True
    # The keys sent back masked were kept as they were.
    assert gw.config_file()["providers"][0]["keys"][0]["key"] == OPENAI_KEY

    # Remove, after a confirm.
    fake.locator("[data-action=remove]").click()
    expect(fake).to_have_count(0)
    expect(result).to_have_count(0)
    expect(page.locator("#prov-empty")).to_be_visible()
    assert listed(gw) == {}
    assert not gw.config_file().get("providers")
    assert problems == []


def test_a_provider_the_environment_sets_is_read_only(
    page: Page, gateway_factory: Any, fake_openai: FakeOpenAI
) -> None:
    entry = {
        "name": "envp",
        "kind": "openai_compatible",
        "base_url": fake_openai.base_url,
        "keys": [OPENAI_KEY],
        "models": ["fake-gpt"],
    }
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD, AGPROXY_PROVIDERS=json.dumps([entry]))
    problems = watch_problems(page)
    open_page(page, gw)
    envp = row(page, "envp")
    expect(envp).to_be_visible()
    expect(envp).to_have_class("prov-row read-only")
    expect(envp.locator(".prov-source")).to_contain_text("environment")
    expect(envp.locator(".prov-source")).to_contain_text("set by AGPROXY_PROVIDERS: read-only")
    expect(envp.locator("[data-action=disable]")).to_be_disabled()
    expect(envp.locator("[data-action=remove]")).to_be_disabled()
    expect(envp.locator("[data-action=disable]")).to_have_attribute(
        "title", "Read-only: set outside the config file"
    )
    assert OPENAI_KEY not in page.content()

    # Testing changes nothing: it stays open.
    envp.locator("[data-action=test]").click()
    result = page.locator("#prov-rows tr.prov-test[data-name='envp']")
    expect(result.locator(".prov-test-head")).to_have_text("1 of 1 keys work")

    # Nothing can be added while the environment sets the list, and the form says why.
    expect(page.locator("#btn-prov-add")).to_be_disabled()
    expect(page.locator("#prov-env")).to_contain_text("AGPROXY_PROVIDERS")
    assert gw.admin("POST", "/api/providers", json={**entry, "name": "other"}).status_code == 409
    assert list(listed(gw)) == ["envp"]
    page.screenshot(path=str(ARTIFACTS / "console-providers-env.png"), full_page=True)
    assert problems == []


def test_the_filled_page_fits_in_every_language(
    browser: Any, gateway_factory: Any, fake_openai: FakeOpenAI
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    providers = [
        {
            "name": "fake",
            "kind": "openai_compatible",
            "base_url": fake_openai.base_url,
            "keys": [{"key": OPENAI_KEY, "name": "main"}, {"key": WRONG_KEY, "name": "wrong"}],
            "models": [{"id": "fake-gpt", "aliases": ["gpt", "fast"]}, "fake-gpt-mini"],
        },
        {
            "name": "openrouter",
            "kind": "openai_compatible",
            "base_url": "https://openrouter.ai/api/v1",
            "keys": ["sk-or-v1-0123456789abcdef0123456789abcdef"],
            "proxy": "socks5://user:secret@127.0.0.1:1080",
            "enabled": False,
        },
        {
            "name": "gemini-keys",
            "kind": "gemini_api_key",
            "models": [
                {"id": "gemini-2.5-flash-preview-long-model-name", "aliases": ["flash", "quick"]}
            ],
        },
        {
            "name": "claude",
            "kind": "anthropic_api_key",
            "keys": [{"key": "sk-ant-api03-0123456789abcdef", "name": "team"}],
            "dispatch": "fallback",
        },
    ]
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD, config={"providers": providers})
    assert list(listed(gw)) == ["fake", "openrouter", "gemini-keys", "claude"]
    problems: dict[str, list[str]] = {}
    for lang in LANGS:
        page = new_page(browser, lang)
        try:
            login(page, gw)
            expect(page.locator("#page-dashboard")).to_be_visible()
            page.click("a[data-page=providers]")
            expect(row(page, "claude")).to_be_visible()
            row(page, "fake").locator("[data-action=test]").click()
            expect(page.locator("tr.prov-test li")).to_have_count(2)
            page.screenshot(
                path=str(ARTIFACTS / f"console-providers-full-{lang}.png"), full_page=True
            )
            problems[lang] = page.evaluate(OVERFLOWING)
            assert OPENAI_KEY not in page.content() and "secret@" not in page.content()
        finally:
            page.context.close()
    assert {k: v for k, v in problems.items() if v} == {}
