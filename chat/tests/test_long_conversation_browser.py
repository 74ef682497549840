"""A long conversation in a real browser: the latest page of messages, older ones on scrolling up, the
context marker in place, and the composer's estimate as one types."""

from __future__ import annotations

import itertools
import re

import pytest

from chat.message_pages import MESSAGES_PER_PAGE
from chat.models import Conversation, Message
from chat.tests.api_fixtures import catalogue  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def long_conversation(user, catalogue):  # noqa: F811
    conversation = Conversation.objects.create(user=user, title="Long", model=catalogue["fake-model"])
    messages = Message.objects.bulk_create(
        Message(conversation=conversation, role=role, content=f"{role} message {n // 2}")
        for n, role in enumerate(["user", "assistant"] * 60)
    )
    for previous, message in itertools.pairwise(messages):  # one path: each follows the one before it
        message.parent = previous
    Message.objects.bulk_update(messages, ["parent"])
    latest = messages[-1]
    latest.first_sent_id = messages[-20].pk  # the latest reply was sent with its last 19 messages only
    latest.save(update_fields=["first_sent_id"])
    return conversation, messages


def test_scrolling_up_loads_older_messages_and_the_estimate_follows_the_typing(long_conversation, logged_in_page, user):
    conversation, messages = long_conversation
    page = logged_in_page(user)
    page.goto(f"{page.base}/chat/{conversation.pk}/")

    assert page.locator("article.message").count() == MESSAGES_PER_PAGE
    marker_before = page.evaluate("() => document.getElementById('context-marker').nextElementSibling.id")
    assert marker_before == f"message-{messages[-20].pk}"

    page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_function(f"() => document.querySelectorAll('article.message').length === {2 * MESSAGES_PER_PAGE}")
    page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_function("() => document.querySelectorAll('article.message').length === 120")
    ids = page.evaluate("() => [...document.querySelectorAll('article.message')].map(a => Number(a.id.slice(8)))")
    assert ids == [m.pk for m in messages]  # every message once, in order

    page.fill("#message-input", "How much will this question cost me?")
    page.wait_for_function("() => document.getElementById('composer-estimate').textContent.includes('tokens in')")
    estimate = page.locator("#composer-estimate").text_content()
    assert re.fullmatch(r"≈ [\d,]+ tokens in, up to [\d,]+ out: \$[\d.]+–\$[\d.]+", estimate), estimate
