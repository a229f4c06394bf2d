"""The console's Keys page in headless Chromium: the list with usage, creating a key (its
secret shown once, with a Copy button and a warning), refusals, disable/enable, rotate,
delete, and the secret gone from the page once the box is closed."""

from __future__ import annotations

import re
import time
from typing import Any

import sqlalchemy as sa
from playwright.sync_api import Page, expect
from test_console import ARTIFACTS, PASSWORD, login  # skips the module without chromium
from test_keys_admin import plant, record

from agproxy.db.tables import client_keys
from agproxy.keys.store import digest
from conftest import Gateway, data_dir_store

SECRET = re.compile(r"sk-[0-9a-f]{48}")


def digests(gw: Gateway) -> dict[str, str]:
    engine = data_dir_store(gw.data_dir)
    try:
        with engine.connect() as conn:
            return {r.name: r.digest for r in conn.execute(sa.select(client_keys))}
    finally:
        engine.dispose()


def watch_problems(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    # The browser reports the refused form (a 400 on purpose) as an error; nothing else may be.
    expected = "the server responded with a status of 400"
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text) if msg.type == "error" and expected not in msg.text else None
        ),
    )
    return problems


def row(page: Page, name: str) -> Any:
    return page.locator(f"#keys-rows tr[data-name='{name}']")


def test_keys_page(page: Page, gateway_factory: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD)
    made = gw.admin("POST", "/api/keys", json={"name": "alice", "models": ["gemini-*"], "rpm": 60})
    alice_secret = made.json()["secret"]
    now = time.time()
    midnight = now // 86400 * 86400  # "today" is the UTC day: both records must be in it
    early, late = max(now - 20, midnight), max(now - 10, midnight)
    plant(gw.data_dir, [record("alice", early, 1200), record("alice", late, 300)])
    problems = watch_problems(page)
    page.on("dialog", lambda dialog: dialog.accept())

    login(page, gw)
    page.click("a[data-page=keys]")
    expect(page.locator("#page-title")).to_have_text("Keys")
    alice = row(page, "alice")
    expect(alice).to_contain_text(alice_secret[:8] + "…")
    expect(alice).to_contain_text("gemini-*")
    expect(alice).to_contain_text("60 rpm")
    expect(alice).to_contain_text("enabled")
    today = alice.locator("td.usage").first
    expect(today).to_contain_text("2 req")
    expect(today).to_contain_text("4.5k tok")  # 1,500 in + 3,000 out

    # A refused field is shown, and nothing is created.
    page.fill("#key-name", "ci-bot")
    page.fill("#key-rpm", "0")
    page.click("#btn-key-create")
    expect(page.locator("#key-error")).to_contain_text("rpm must be a whole number")
    expect(page.locator("#key-secret-box")).to_be_hidden()
    assert list(digests(gw)) == ["alice"]

    page.fill("#key-rpm", "30")
    page.fill("#key-models", "gemini-*, claude-sonnet-*")
    page.fill("#key-daily-tokens", "2000000")
    page.fill("#key-quota-share", "25")
    page.fill("#key-expires", "2099-01-31T18:00")
    page.click("#btn-key-create")
    box = page.locator("#key-secret-box")
    expect(box).to_be_visible()
    expect(page.locator("#key-error")).to_be_hidden()
    secret = page.locator("#key-secret").inner_text()
    assert SECRET.fullmatch(secret)
    assert digests(gw)["ci-bot"] == digest(secret)
    expect(box).to_contain_text("will not be shown again")
    expect(page.locator("#key-secret-title")).to_contain_text("ci-bot")
    page.click("#btn-key-secret-copy")
    expect(page.locator("#toast")).to_have_text("Copied")
    ci = row(page, "ci-bot")
    expect(ci).to_contain_text("gemini-*, claude-sonnet-*")
    expect(ci).to_contain_text("30 rpm, 2,000,000 tokens/day, 25% of quota")
    expect(ci).to_contain_text("2099-01-31 18:00")  # the browser's zone, as it was typed
    assert secret not in page.locator("#keys-table").inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-keys-secret.png"), full_page=True)
    expect(page.locator("#key-name")).to_have_value("")  # the form is cleared

    page.click("#btn-key-secret-done")
    expect(box).to_be_hidden()
    assert secret not in page.content()

    ci.locator("[data-action=disable]").click()
    expect(ci).to_contain_text("disabled")
    assert not gw.admin("GET", "/api/keys/ci-bot").json()["enabled"]
    ci.locator("[data-action=enable]").click()
    expect(ci.locator("[data-action=disable]")).to_be_visible()
    assert gw.admin("GET", "/api/keys/ci-bot").json()["state"] == "enabled"

    ci.locator("[data-action=rotate]").click()
    expect(box).to_be_visible()
    expect(page.locator("#key-secret-title")).to_contain_text("New secret for key “ci-bot”")
    rotated = page.locator("#key-secret").inner_text()
    assert SECRET.fullmatch(rotated) and rotated != secret
    assert digests(gw)["ci-bot"] == digest(rotated)
    expect(ci).to_contain_text(rotated[:8] + "…")
    # Leaving the page takes the secret off it too.
    page.click("a[data-page=accounts]")
    page.click("a[data-page=keys]")
    expect(box).to_be_hidden()
    expect(row(page, "ci-bot")).to_be_visible()
    assert rotated not in page.content() and secret not in page.content()

    row(page, "alice").locator("[data-action=delete]").click()
    expect(row(page, "alice")).to_have_count(0)
    assert list(digests(gw)) == ["ci-bot"]
    page.screenshot(path=str(ARTIFACTS / "console-keys-list.png"), full_page=True)
    for s in (alice_secret, secret, rotated):
        assert s not in page.content()
    assert problems == []  # no script error, no CSP violation


def test_usage_by_key_on_the_statistics_page(page: Page, gateway_factory: Any) -> None:
    gw = gateway_factory(AGPROXY_ADMIN_PASSWORD=PASSWORD)
    now = time.time()
    plant(
        gw.data_dir,
        [record("alice", now - 20, 100), record("bob", now - 10, 1000), record(None, now - 5, 10)],
    )
    problems = watch_problems(page)
    login(page, gw)
    page.click("a[data-page=stats]")
    by_key = page.locator("#by-key")
    expect(by_key.locator(".hbar")).to_have_count(3)
    expect(by_key.locator(".hbar[data-name=alice]")).to_contain_text("300")  # tokens in + out
    expect(by_key.locator(".hbar[data-name=bob]")).to_contain_text("3.0k")
    expect(by_key.locator(".hbar[data-name='–']")).to_be_visible()  # the owner's key
    by_key.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "console-stats-by-key.png"), full_page=True)
    assert problems == []
