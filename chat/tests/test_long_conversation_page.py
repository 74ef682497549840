"""A conversation page costs the same queries with 2,000 messages as with 10: it shows the latest page,
and older ones load on scrolling up (bench/conversation_page.py times it; BENCHMARKS.md)."""

from __future__ import annotations

import itertools
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.message_pages import MESSAGES_PER_PAGE
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

# Session, user, the conversation, the sidebar's count and page, the messages (with their usage rows and their
# attempts), the context marker, the totals, the catalogue, the subscription (the payment banner).
QUERIES = 11


def conversation_of(user, size: int) -> Conversation:
    conversation = Conversation.objects.create(user=user, title=f"{size} messages")
    messages = Message.objects.bulk_create(
        Message(conversation=conversation, role=role, content=f"**{role}** message {n}")
        for n, role in zip(range(size), ["user", "assistant"] * size, strict=False)
    )
    for previous, message in itertools.pairwise(messages):  # one path: each follows the one before it
        message.parent = previous
    Message.objects.bulk_update(messages, ["parent"], batch_size=500)
    return conversation


def page_queries(client, conversation) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/chat/{conversation.pk}/")
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_the_page_of_a_long_conversation_costs_the_queries_of_a_short_one(logged_in, user):
    short = conversation_of(user, 10)
    long = conversation_of(user, 2000)

    short_queries, _ = page_queries(logged_in, short)
    long_queries, html = page_queries(logged_in, long)

    assert long_queries == short_queries <= QUERIES
    assert html.count('<article id="message-') == MESSAGES_PER_PAGE
    assert "message 1950<" in html and "message 1949<" not in html  # the newest 50, numbered from 0
    assert 'hx-trigger="intersect once"' in html  # the way to the older messages


def test_older_pages_load_in_order_until_the_first_message(logged_in, user):
    conversation = conversation_of(user, 120)
    ids = list(conversation.messages.order_by("id").values_list("id", flat=True))
    shown = []
    html = logged_in.get(f"/chat/{conversation.pk}/").content.decode()
    while True:
        page_ids = [int(i) for i in re.findall(r'<article id="message-(\d+)"', html)]
        shown = page_ids + shown
        if "older-messages" not in html:
            break
        before = page_ids[0]
        with CaptureQueriesContext(connection) as queries:
            html = logged_in.get(f"/chat/{conversation.pk}/messages/?before={before}").content.decode()
        assert len(queries) <= 6

    assert shown == ids


def test_older_messages_are_the_owners_only(client, other_user, user):
    from aihub.testing import logged_in_client

    conversation = conversation_of(user, 60)
    response = logged_in_client(other_user).get(f"/chat/{conversation.pk}/messages/?before=999999")
    bad = logged_in_client(user).get(f"/chat/{conversation.pk}/messages/?before=abc")

    assert response.status_code == 404
    assert bad.status_code == 400
