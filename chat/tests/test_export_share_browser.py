"""Export and share in a real browser (headless Chromium): downloads that parse back to the conversation,
a share link read in a logged-out browser context, then a 404 once revoked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aihub.testing import chromium_page, session_key_for
from chat.tests.test_export_share import parse_markdown

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chat(two_message_chat):
    return two_message_chat


@pytest.fixture
def page(asgi_server, chromium_path, user, chat):
    """The owner's page on the real ASGI application (the chat page opens its socket)."""
    with chromium_page(
        chromium_path, viewport={"width": 1280, "height": 900}, base_url=asgi_server, session_key=session_key_for(user)
    ) as page:
        yield page


def download(page, selector: str) -> str:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_text()


def test_exports_download_and_parse_back(page, chat):
    page.goto(f"{page.base}/chat/{chat.pk}/")
    page.click("#conversation-tools summary")
    title, messages = parse_markdown(download(page, "#export-markdown"))
    assert title == "Plans for Tuesday"
    assert messages == [("You", "What is 2 + 2?"), ("Assistant (Fake M)", "It is **4**.")]
    record = json.loads(download(page, "#export-json"))
    assert [(m["role"], m["content"]) for m in record["messages"]] == [
        ("user", "What is 2 + 2?"),
        ("assistant", "It is **4**."),
    ]
    assert page.problems == []


def test_a_share_link_is_read_logged_out_then_404_after_revoke(page, user, chat):
    page.goto(f"{page.base}/chat/{chat.pk}/")
    page.click("#conversation-tools summary")
    page.click("#share-button")
    url = page.locator("#share-url").input_value()
    assert url.startswith(f"{page.base}/s/")

    stranger = page.context.browser.new_context()  # no cookies: logged out
    shared = stranger.new_page()
    response = shared.goto(url)
    assert response.status == 200 and response.headers["x-robots-tag"].startswith("noindex")
    assert shared.locator("#shared-title").inner_text() == "Plans for Tuesday"
    assert shared.locator(".message.assistant strong").inner_text() == "4"
    assert user.email not in shared.content()
    assert shared.locator("meta[name=robots]").get_attribute("content").startswith("noindex")

    page.goto(f"{page.base}/account/")
    row = page.locator("#shared-links tbody tr", has_text="Plans for Tuesday")
    row.locator(".revoke-share").click()
    row.wait_for(state="detached")
    assert shared.goto(url).status == 404
    stranger.close()
    assert page.problems == []
