"""The sidebar's list: date groups with pinned chats first, archive and unarchive, search results with an
excerpt of the matching message that open the conversation at it; owner-scoped, one query a page."""

from __future__ import annotations

import html as html_text
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def chat(user, title: str, days_ago: float = 0, **flags) -> Conversation:
    conversation = Conversation.objects.create(user=user, title=title, **flags)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now() - timedelta(days=days_ago))
    return conversation


def sidebar_of(html: str) -> list[str]:
    """The list as read from top to bottom: '# Heading' for group headings (those with something under them),
    titles for conversations."""
    if 'id="conversation-list"' in html:  # a whole page: its list only
        html = html[html.index('id="conversation-list"') :]
        html = html[: html.index("</ul>")]
    found = re.findall(r'<h3>([^<]+)</h3>|class="conversation-title" title="([^"]*)"', html)
    shown = [f"# {heading}" if heading else html_text.unescape(title) for heading, title in found]
    # A heading with nothing under it is hidden by the page's CSS (the Today slot of a new conversation).
    return [
        line
        for i, line in enumerate(shown)
        if not (line.startswith("# ") and (shown[i + 1 : i + 2] or ["# "])[0].startswith("# "))
    ]


def test_conversations_are_grouped_by_day_with_pinned_first(logged_in, user):
    chat(user, "An old pinned one", days_ago=40, pinned=True)
    chat(user, "Twenty days ago", days_ago=20)
    chat(user, "Three days ago", days_ago=3)
    chat(user, "Yesterday's", days_ago=1)
    chat(user, "Just now", days_ago=0)
    chat(user, "Archived", days_ago=0, archived=True)
    html = logged_in.get("/chat/").content.decode()
    assert sidebar_of(html) == [
        "# Pinned",
        "An old pinned one",
        "# Today",
        "Just now",
        "# Yesterday",
        "Yesterday's",
        "# Previous 7 days",
        "Three days ago",
        "# Older",
        "Twenty days ago",
    ]
    assert 'id="archived-toggle"' in html


def test_the_today_heading_is_always_there_for_a_new_conversation(logged_in, user):
    chat(user, "Pinned", days_ago=5, pinned=True)
    chat(user, "Older", days_ago=30)
    html = logged_in.get("/chat/").content.decode()
    assert re.findall(r'<li class="conversation-group" id="group-(\w+)">', html) == ["pinned", "today", "older"]


def test_pinning_moves_a_chat_up_without_changing_its_date(logged_in, user):
    old = chat(user, "Old plans", days_ago=10)
    chat(user, "Recent", days_ago=0)
    before = Conversation.objects.get(pk=old.pk).updated_at
    listing = logged_in.post(f"/chat/{old.pk}/pin/", {"pinned": "1", "active": ""}, **HTMX).content.decode()
    assert sidebar_of(listing) == ["# Pinned", "Old plans", "# Today", "Recent"]
    assert Conversation.objects.get(pk=old.pk).updated_at == before
    assert "Unpin" in listing
    response = logged_in.post(f"/chat/{old.pk}/pin/", {"pinned": "0"})  # without JavaScript: back to the page
    assert response.status_code == 302 and response["Location"] == f"/chat/{old.pk}/"
    assert not Conversation.objects.get(pk=old.pk).pinned


def test_archived_chats_leave_the_list_and_come_back(logged_in, user):
    kept = chat(user, "Kept")
    put_away = chat(user, "Put away")
    listing = logged_in.post(f"/chat/{put_away.pk}/archive/", {"archived": "1"}, **HTMX).content.decode()
    assert sidebar_of(listing) == ["# Today", "Kept"]
    archived = logged_in.get("/chat/?view=archived").content.decode()
    assert sidebar_of(archived) == ["# Today", "Put away"] and "Unarchive" in archived and "← All chats" in archived
    # Unarchived from the archived view: the answer is that view, now empty.
    listing = logged_in.post(
        f"/chat/{put_away.pk}/archive/", {"archived": "0", "view": "archived"}, **HTMX
    ).content.decode()
    assert "No archived chats." in listing
    assert sidebar_of(logged_in.get("/chat/").content.decode()) == ["# Today", "Put away", "Kept"]
    assert logged_in.get(f"/chat/{kept.pk}/").status_code == 200


def test_only_the_owner_may_pin_or_archive(logged_in, other_user):
    theirs = chat(other_user, "Not yours")
    for path in ("pin", "archive"):
        assert logged_in.post(f"/chat/{theirs.pk}/{path}/", {path.replace("pin", "pinned"): "1"}).status_code == 404
    theirs.refresh_from_db()
    assert not theirs.pinned and not theirs.archived
    assert logged_in.get("/chat/pin/").status_code == 404


def test_pin_and_archive_need_post_and_csrf(user):
    mine = chat(user, "Mine")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"/chat/{mine.pk}/pin/", {"pinned": "1"}).status_code == 403
    assert strict.get(f"/chat/{mine.pk}/archive/").status_code == 405


LONG_TEXT = "Some words first. " * 20 + "Feed the Sourdough starter twice a day, then bake." + " More words." * 20


def test_search_results_show_the_matching_text_and_open_at_it(logged_in, user, other_user):
    found = chat(user, "Baking")
    Message.objects.create(conversation=found, role="user", content="Hello")
    hit = Message.objects.create(conversation=found, role="assistant", content=LONG_TEXT)
    chat(user, "Sourdough by title")
    secret = chat(other_user, "Theirs")
    Message.objects.create(conversation=secret, role="user", content="my sourdough secret")
    html = logged_in.get("/chat/conversations/?q=sourdough").content.decode()
    assert sidebar_of(html) == [
        "Sourdough by title",
        "Baking",
    ]
    assert f'href="/chat/{found.pk}/?m={hit.pk}#message-{hit.pk}"' in html
    snippet = re.search(r'<span class="conversation-hit">(.*?)</span>', html, re.S).group(1)
    assert snippet.startswith("…") and "<mark>Sourdough</mark> starter twice a day" in snippet
    assert len(re.sub("<[^>]+>", "", snippet)) <= 170
    assert "Theirs" not in html and "secret" not in html


def test_a_conversation_opens_at_a_match_older_than_its_newest_page(logged_in, user):
    long = chat(user, "Long")
    Message.objects.bulk_create(Message(conversation=long, role="user", content=f"message {i}") for i in range(120))
    target = Message.objects.filter(conversation=long).order_by("id")[9]
    assert f'id="message-{target.pk}"' not in logged_in.get(f"/chat/{long.pk}/").content.decode()
    html = logged_in.get(f"/chat/{long.pk}/?m={target.pk}").content.decode()
    assert f'id="message-{target.pk}"' in html
    assert html.count('class="message user') == 111  # from the match to the newest
    assert "js/chat-sidebar.js" in html


@pytest.mark.parametrize("query", ["", "?q=plan", "?view=archived"])
def test_a_page_of_the_list_costs_the_same_queries_for_3_or_30_chats(logged_in, user, query):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert logged_in.get(f"/chat/conversations/{query}").status_code == 200
        return len(queries)

    def add(n: int):
        for i in range(n):
            c = chat(user, f"plan {i}", days_ago=i % 12, pinned=i % 7 == 0, archived="archived" in query)
            Message.objects.create(conversation=c, role="user", content=f"a plan for day {i}")

    add(3)
    few = count_queries()
    add(27)
    assert count_queries() == few <= 5
