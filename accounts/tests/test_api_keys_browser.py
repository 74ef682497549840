"""The API key page and the API reference in a real browser (headless Chromium)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(logged_in_page, user):
    """A logged-in page allowed to use the clipboard."""
    return logged_in_page(user, permissions=("clipboard-read", "clipboard-write"))


def test_it_issues_copies_and_revokes_a_key_in_the_browser(page):
    page.goto(f"{page.base}/account/api-keys/")
    page.fill("#id_name", "from the browser")
    page.click("#create-api-key button[type=submit]")
    shown = page.text_content("#new-key").strip()
    assert re.fullmatch(r"ahk_[0-9A-Za-z]{38}", shown)
    page.click("button[data-copy-target='#new-key']")
    expect(page.locator("button[data-copy-target='#new-key']")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == shown

    page.goto(f"{page.base}/account/api-keys/")
    assert shown not in page.content()
    row = page.locator("#api-key-table tbody tr", has_text="from the browser")
    assert row.locator(".badge").text_content() == "active"
    row.locator("button", has_text="Revoke").click()
    page.wait_for_selector(".flash")
    assert (
        page.locator("#api-key-table tbody tr", has_text="from the browser").locator(".badge").text_content()
        == "revoked"
    )
    assert page.problems == []


def test_the_api_reference_renders_the_schema_from_this_site_only(page):
    requested, blocked = [], []
    # The one violation expected: Redoc's vendor logo from its CDN, refused by the reference's own policy.
    page.expect_csp_violation = lambda v: v["directive"] == "img-src" and not v["blocked"].startswith(page.base)
    page.on("request", lambda r: requested.append(r.url))
    page.on("requestfailed", lambda r: r.failure == "csp" and blocked.append(r.url))
    page.goto(f"{page.base}/api/docs")
    page.wait_for_selector("h2:has-text('Create a chat completion (streamed or not)')", timeout=15_000)
    assert page.locator("h2:has-text('Rename a session')").count() == 1
    # Redoc's vendor logo (a CDN image) is refused by the page's Content-Security-Policy, before any network.
    elsewhere = [url for url in requested if not url.startswith((page.base, "blob:", "data:"))]
    assert elsewhere == blocked
    assert [p for p in page.problems if "Content Security Policy" not in p] == []
