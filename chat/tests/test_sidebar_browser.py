"""The sidebar in headless Chromium at a laptop's and a phone's size: every chat's "⋯" reachable, pin and
archive (and back), and a search result that opens the conversation at the matching message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Conversation, Message
from chat.tests.test_browser_daily_use import chat_page, show_sidebar  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chats(user):
    """Three conversations of `user` (today, three days ago, a month ago); the old one has 80 messages,
    the 5th of them about sourdough."""
    made = {}
    ages = {"Today's chat": 0, "Garden plans": 3, "Bread notes": 30}
    for title in ages:
        made[title] = Conversation.objects.create(user=user, title=title)
        Message.objects.create(conversation=made[title], role="user", content=f"About {title}")
    bread = made["Bread notes"]
    Message.objects.bulk_create(
        Message(
            conversation=bread,
            role="user" if i % 2 else "assistant",
            content="Feed the sourdough starter twice a day." if i == 4 else f"Line {i} of an old chat.",
        )
        for i in range(80)
    )
    for title, days in ages.items():
        Conversation.objects.filter(pk=made[title].pk).update(updated_at=timezone.now() - timedelta(days=days))
    return made


def headings(page) -> list[str]:
    return page.eval_on_selector_all(
        "#conversation-list .conversation-group",
        "items => items.filter(i => getComputedStyle(i).display !== 'none').map(i => i.textContent.trim())",
    )


def titles(page) -> list[str]:
    return page.eval_on_selector_all("#conversation-list .conversation-title", "items => items.map(i => i.title)")


def open_menu(page, conversation: Conversation):
    """Tap the chat's "⋯" (shown on every chat on a phone, not only the active one)."""
    summary = page.locator(f"#conversation-{conversation.pk} .conversation-actions summary")
    assert summary.evaluate("e => getComputedStyle(e).opacity") == "1" or page.viewport_size["width"] > 760
    summary.click()
    return page.locator(f"#conversation-{conversation.pk} .conversation-menu")


def test_pin_and_archive_from_every_chats_menu(chats, chat_page):
    page = chat_page
    today, garden, bread = chats["Today's chat"], chats["Garden plans"], chats["Bread notes"]
    page.goto(f"{page.base}/chat/{today.pk}/")
    show_sidebar(page)
    assert headings(page) == ["Today", "Previous 7 days", "Older"]
    assert titles(page) == ["Today's chat", "Garden plans", "Bread notes"]

    menu = open_menu(page, bread)
    menu.get_by_role("button", name="Pin").click()
    page.locator("#group-pinned").wait_for()
    assert headings(page) == ["Pinned", "Today", "Previous 7 days"]
    assert titles(page) == ["Bread notes", "Today's chat", "Garden plans"]
    assert page.locator(f"#conversation-{today.pk}.active").count() == 1  # still the open one

    menu = open_menu(page, garden)
    menu.get_by_role("button", name="Archive").click()
    page.locator(f"#conversation-{garden.pk}").wait_for(state="detached")
    assert titles(page) == ["Bread notes", "Today's chat"]

    page.click("#archived-toggle")  # the archived chats, beside the open conversation
    page.wait_for_url(f"**/chat/{today.pk}/?view=archived")
    show_sidebar(page)
    assert titles(page) == ["Garden plans"]
    open_menu(page, garden).get_by_role("button", name="Unarchive").click()
    page.locator("#conversation-list-empty", has_text="No archived chats.").wait_for()
    page.click("#archived-toggle")
    show_sidebar(page)
    assert titles(page) == ["Bread notes", "Today's chat", "Garden plans"]
    assert page.problems == []


def test_a_search_result_shows_the_match_and_opens_the_chat_at_it(chats, chat_page):
    page = chat_page
    bread = chats["Bread notes"]
    page.goto(f"{page.base}/chat/")
    show_sidebar(page)
    page.fill("#conversation-search", "sourdough")
    result = page.locator("#conversation-list .conversation-hit")
    result.wait_for()
    assert result.inner_text() == "Feed the sourdough starter twice a day.…"
    assert result.locator("mark").inner_text() == "sourdough"
    assert titles(page) == ["Bread notes"]
    result.click()
    page.wait_for_url(f"**/chat/{bread.pk}/?m=*#message-*")
    hit = page.locator(".message.search-hit")
    assert "Feed the sourdough starter" in hit.inner_text()
    box, view = hit.bounding_box(), page.locator("#messages").bounding_box()
    assert view["y"] <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"]  # scrolled to it
    assert page.problems == []
