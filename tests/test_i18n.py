"""The console in its languages: one JSON file per language under console/static/i18n/
(English the source of truth), the language a browser gets and the switch, and every page
drawn in every language without text that does not fit (real headless Chromium)."""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from test_console import ARTIFACTS, CHROMIUM, PASSWORD, login  # noqa: F401  (skips without chromium)

from agproxy.console import STATIC_DIR
from conftest import add_to, google_env

I18N = STATIC_DIR / "i18n"
LANGS = ["en", "es", "pt", "fr", "de", "zh"]
PAGES = ["dashboard", "proxy", "accounts", "providers", "keys", "monitor", "stats", "mapping"]
PLACEHOLDER = re.compile(r"\{(\w+)\}")
TAG = re.compile(r"</?\w+")


def strings(lang: str) -> dict[str, str]:
    data = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and all(isinstance(v, str) for v in data.values()), lang
    return data


def test_one_file_per_language_and_nothing_else() -> None:
    assert sorted(p.stem for p in I18N.glob("*.json")) == sorted(LANGS)
    # The selector offers exactly these, by their own names.
    offered = re.search(r"LANGUAGES = \{([^}]*)\}", (STATIC_DIR / "i18n.js").read_text())
    assert offered and re.findall(r"(\w+): \"", offered.group(1)) == LANGS


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_a_translation_has_exactly_the_english_keys(lang: str) -> None:
    en, other = strings("en"), strings(lang)
    assert sorted(set(en) - set(other)) == [], "missing"
    assert sorted(set(other) - set(en)) == [], "not in en.json"


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_a_translation_keeps_the_placeholders_and_markup(lang: str) -> None:
    en, other = strings("en"), strings(lang)
    for key, text in en.items():
        assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(other[key])), key
        assert sorted(TAG.findall(text)) == sorted(TAG.findall(other[key])), key
        if text:
            assert other[key] or key == "dash.left", key  # "left" has no word of its own in some


def test_every_key_the_console_uses_is_in_english() -> None:
    en = strings("en")
    html = (STATIC_DIR / "console.html").read_text()
    used = set(re.findall(r'data-i18n(?:-html|-placeholder|-title)?="([^"]+)"', html))
    assert len(used) > 100
    for path in STATIC_DIR.glob("*.js"):
        if path.name == "i18n.js":
            continue
        used |= set(re.findall(r'\bt\(\s*"([\w.]+)"\s*[,)]', path.read_text()))
        # Keys picked from a table (states, page titles): quoted "area.name" strings.
        used |= set(
            re.findall(
                r'"((?:nav|acc|dash|keys|mon|stats|status)\.\w+)"(?!\s*\+)', path.read_text()
            )
        )
    # Built from a prefix: table headers.
    used |= {
        f"dash.col_{h}" for h in ["host", "pid", "worker", "listening", "service", "requests", "up"]
    }
    used |= {f"acc.col_{h}" for h in ["line", "result", "email", "reason"]}
    used |= {"app.title", "lang.label"}  # set by i18n.js itself
    assert sorted(used - set(en)) == []
    assert sorted(set(en) - used) == [], "keys nothing uses"


def test_the_language_files_ship_with_the_package() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "static/i18n/*" in pyproject["tool"]["setuptools"]["package-data"]["agproxy.console"]


# Elements whose text must fit: a box that clips or grows past its container. Text cut on
# purpose (text-overflow: ellipsis) and scrolling boxes are left out.
OVERFLOWING = """() => {
  const sel = "button, .btn, .tab, .nav-link, .nav, th, .badge, .state, .tile, .tile > *, .topbar, .topbar-right, "
    + ".toolbar, .tabs, .input-row, .card, label, h1, h2, h3, .actions, .account-head, .account-actions, "
    + ".stats > div, .snippet-head, .drawer-head, .field, .login-card, .hbar-top, .quota-top, dt, .main";
  const out = [];
  for (const node of document.querySelectorAll(sel)) {
    if (!node.getClientRects().length) continue;
    const style = getComputedStyle(node);
    if (style.textOverflow === "ellipsis" || ["auto", "scroll"].includes(style.overflowX)) continue;
    if (node.scrollWidth > node.clientWidth + 1) {
      out.push(`${node.tagName.toLowerCase()}${node.id ? "#" + node.id : ""}.${node.className}: `
        + `${node.scrollWidth} > ${node.clientWidth}: ${node.textContent.trim().slice(0, 60)}`);
    }
  }
  const doc = document.scrollingElement;
  if (doc.scrollWidth > innerWidth + 1) out.push(`page: ${doc.scrollWidth} > ${innerWidth}`);
  return out;
}"""


def new_page(browser: Any, locale: str) -> Page:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale=locale)
    return context.new_page()


def test_the_language_follows_the_browser_and_the_switch_is_remembered(
    browser: Any, gateway_factory: Any
) -> None:
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD)
    page = new_page(browser, "de-DE")
    try:
        page.goto(gw.base_url + "/")
        expect(page.locator("#login-submit")).to_have_text("Anmelden")
        assert page.evaluate("document.documentElement.lang") == "de"
        expect(page.locator("#login-lang")).to_have_value("de")
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        expect(page.locator("#page-title")).to_have_text("Übersicht")
        expect(page.locator("a[data-page=accounts]")).to_have_text("Konten")
        expect(page.locator("#status-badge")).to_have_text("gestoppt")  # no accounts: stopped
        expect(page.locator("#toggle-service")).to_have_text("Starten")

        # The switch in the sidebar redraws the page at once, with no reload.
        page.evaluate("window.__same_document = true")
        page.select_option("#nav-lang", "fr")
        expect(page.locator("#page-title")).to_have_text("Tableau de bord")
        expect(page.locator("#status-badge")).to_have_text("arrêté")
        expect(page.locator("#toggle-service")).to_have_text("Démarrer")
        expect(page.locator("#dash-proxy")).to_have_text("arrêté")
        expect(page.locator("#attention-empty")).to_have_text(
            "Tous les comptes sont en bonne santé."
        )
        assert page.evaluate("window.__same_document") is True
        assert page.evaluate("document.documentElement.lang") == "fr"

        # Remembered: after a reload it is still French although the browser says de.
        page.reload()
        expect(page.locator("#page-title")).to_have_text("Tableau de bord")
        page.click("#logout")
        expect(page.locator("#login-submit")).to_have_text("Se connecter")
        assert page.evaluate("document.documentElement.lang") == "fr"
        page.select_option("#login-lang", "zh")
        expect(page.locator("#login-submit")).to_have_text("登录")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        assert page.evaluate("localStorage.getItem('agproxy.lang')") == "zh"
    finally:
        page.context.close()

    # A browser language the console lacks falls back to English; a region is ignored.
    for locale, lang, text in [
        ("ja-JP", "en", "Sign in"),
        ("pt-BR", "pt", "Entrar"),
        ("zh-TW", "zh", "登录"),
    ]:
        page = new_page(browser, locale)
        try:
            page.goto(gw.base_url + "/")
            expect(page.locator("#login-submit")).to_have_text(text)
            assert page.evaluate("document.documentElement.lang").split("-")[0] == lang
        finally:
            page.context.close()


def test_every_page_in_every_language_fits(
    browser: Any, gateway_factory: Any, fake_google: Any
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    accounts = [
        fake_google.add_account(
            email=f"lang-{i}-{uuid.uuid4().hex[:6]}@example.com",
            paid_tier=("g1-pro-tier", "Google AI Pro"),
            models={
                "gemini-3-flash": {"remainingFraction": 0.8, "resetTime": "2099-01-01T00:00:00Z"},
                "claude-sonnet-4-6": {
                    "remainingFraction": 0.15,
                    "resetTime": "2099-01-01T00:00:00Z",
                },
            },
            windows={
                "gemini-5h": {"remainingFraction": 0.7},
                "3p-weekly": {"remainingFraction": 0.0},
            },
        )
        for i in range(2)
    ]
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD, **google_env(fake_google))
    add_to(gw, *accounts)
    gw.admin(
        "POST",
        "/api/keys",
        json={"name": "ci-bot", "rpm": 30, "daily_tokens": 2000000, "quota_share": 25},
    )
    gw.admin("PUT", "/api/config", json={"model_mapping": {"gpt-4*": "gemini-3-flash"}})
    # A request or two for the monitor and the statistics.
    for _ in range(2):
        httpx.post(
            gw.base_url + "/v1/chat/completions",
            timeout=30,
            headers={"Authorization": f"Bearer {gw.api_key}"},
            json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi"}]},
        )

    problems: dict[str, list[str]] = {}
    for lang in LANGS:
        page = new_page(browser, lang)
        try:
            page.goto(gw.base_url + "/")
            expect(page.locator("#login-password")).to_be_visible()
            assert page.evaluate("document.documentElement.lang").split("-")[0] == lang
            page.screenshot(path=str(ARTIFACTS / f"console-login-{lang}.png"))
            problems[f"login-{lang}"] = page.evaluate(OVERFLOWING)
            login(page, gw)
            expect(page.locator("#page-dashboard")).to_be_visible()
            for name in PAGES:
                page.click(f"a[data-page={name}]")
                expect(page.locator(f"#page-{name}")).to_be_visible()
                expect(page.locator("#status-badge")).not_to_have_text("…")
                if name == "monitor":  # the table, then a request's details over it
                    expect(page.locator(".log-row").first).to_be_visible()
                    page.screenshot(path=str(ARTIFACTS / f"console-monitor-{lang}.png"))
                    problems[f"monitor-table-{lang}"] = page.evaluate(OVERFLOWING)
                    page.locator(".log-row").first.click()
                    expect(page.locator("#mon-detail")).to_be_visible()
                    name = "monitor-detail"
                if name == "accounts":
                    expect(page.locator(".account")).to_have_count(2)
                if name == "keys":
                    expect(page.locator(".key-row")).to_have_count(1)
                page.wait_for_timeout(300)  # charts drawn, lists filled
                shot = ARTIFACTS / f"console-{name}-{lang}.png"
                page.screenshot(path=str(shot), full_page=True)
                problems[f"{name}-{lang}"] = page.evaluate(OVERFLOWING)
        finally:
            page.context.close()
    assert {k: v for k, v in problems.items() if v} == {}
