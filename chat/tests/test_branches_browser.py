"""Branches and versions in headless Chromium, at a laptop's and a phone's size: an edit answered on a new
branch, ‹ › back to the original; a regenerated reply beside the previous one."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from chat.tests.test_browser_daily_use import chat_page  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FAKE_REPLY = "Hello from the fake upstream."


def serious_problems_in_the_messages(page) -> list[str]:
    """axe-core's serious or critical findings in the messages area (the editor, ‹ n/m ›, Edit)."""
    violations = Axe().run(page, context="#messages").response["violations"]
    return [
        f"{v['id']}: {[n['target'] for n in v['nodes']]} {v['nodes'][0]['failureSummary']}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def open_chat(page, conversation):
    page.goto(f"{page.base}/chat/{conversation.pk}/")
    page.wait_for_function("() => document.getElementById('connection-status').dataset.state === 'open'")


def test_edit_makes_a_branch_and_switching_back_shows_the_original_reply(
    two_message_chat,
    upstream,
    chat_page,  # noqa: F811
):
    page = chat_page
    open_chat(page, two_message_chat)
    question = page.locator("article.message.user")
    question.get_by_role("button", name="Edit this message").click()
    editor = question.locator(".message-editor textarea")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("What is 2 + 2?")
    editor.press("Escape")  # cancels: the message is back as it was, nothing sent
    expect(question.locator(".message-editor")).to_have_count(0)
    expect(question.locator(".content")).to_be_visible()
    assert upstream.requests == []

    question.get_by_role("button", name="Edit this message").click()
    editor.fill("What is 3 + 3?")
    editor.press("Enter")

    page.locator(".message.assistant.status-complete .content", has_text=FAKE_REPLY).wait_for()
    # Only the new branch was sent upstream, and only it is on screen, its question showing ‹ 2/2 ›.
    assert upstream.requests[-1]["body"]["messages"] == [{"role": "user", "content": "What is 3 + 3?"}]
    expect(question).to_have_count(1)
    expect(question.locator(".content")).to_have_text("What is 3 + 3?")
    expect(question.locator(".version-number")).to_have_text("2/2")

    question.get_by_role("button", name="Previous version").click()

    expect(question.locator(".content")).to_have_text("What is 2 + 2?")
    expect(page.locator("article.message.assistant .content")).to_have_text("It is 4.")
    expect(question.locator(".version-number")).to_have_text("1/2")
    expect(question.get_by_role("button", name="Previous version")).to_be_disabled()
    question.get_by_role("button", name="Edit this message").click()  # an editor open, versions shown
    assert serious_problems_in_the_messages(page) == []
    assert page.problems == []


def test_regenerate_keeps_the_first_reply_behind_the_version_arrows(two_message_chat, upstream, chat_page):  # noqa: F811
    page = chat_page
    open_chat(page, two_message_chat)
    reply = page.locator("article.message.assistant")

    page.click("#regenerate-button")

    page.locator(".message.assistant.status-complete .content", has_text=FAKE_REPLY).wait_for()
    expect(reply).to_have_count(1)
    expect(reply.locator(".version-number")).to_have_text("2/2")
    reply.get_by_role("button", name="Previous version").click()
    expect(reply.locator(".content")).to_have_text("It is 4.")
    expect(reply.locator(".version-number")).to_have_text("1/2")
    reply.get_by_role("button", name="Next version").click()
    expect(reply.locator(".content")).to_have_text(FAKE_REPLY)
    page.reload()  # the version shown is the conversation's, not the page's
    expect(reply.locator(".content")).to_have_text(FAKE_REPLY)
    expect(reply.locator(".version-number")).to_have_text("2/2")
    assert serious_problems_in_the_messages(page) == []
    assert page.problems == []
