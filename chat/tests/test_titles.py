"""Titles written by a free model after a new conversation's first reply, through the chat socket and the
fake upstream: the request it sends, its own usage row, and the cut first message kept when the title
request is refused or fails."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from aihub.asgi import application
from aihub.testing import logged_in_client, session_cookie_header
from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat import replies, titles
from chat.conversations import title_from
from chat.models import AIModel, Conversation, Provider
from chat.tests.fake_upstream import REPLY_WORDS
from chat.tests.test_consumer import ORIGIN, eventually, receive_until_final

pytestmark = pytest.mark.django_db(transaction=True)

FIRST_MESSAGE = "How do I bake a sourdough loaf at home with a starter I got from a friend last week?"
MODEL_TITLE = titles.clean_title("".join(REPLY_WORDS))  # what the fake upstream answers


@pytest.fixture
def titles_on(settings, upstream):
    settings.CHAT_TITLE_MODEL = "auto"
    AIModel.objects.create(
        slug="fake/priced",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="priced",
        name="Priced",
        input_price_per_m=Decimal("0.15"),
        output_price_per_m=Decimal("0.60"),
    )
    return upstream


def titler(upstream_id: str) -> AIModel:
    """The free model 'auto' picks for titles (the only free one)."""
    return AIModel.objects.create(
        slug="fake/titler", provider=Provider.OPENAI_COMPAT, upstream_id=upstream_id, name="Titler"
    )


@pytest.fixture
async def new_chat(user):
    """Open a new chat's socket as `user`; at the end, wait for the replies (and titles) still being written."""
    cookie = await sync_to_async(session_cookie_header)(user)
    sockets = []

    async def open_socket():
        headers = [ORIGIN, (b"cookie", cookie)]
        communicator = WebsocketCommunicator(application, "/ws/chat/new/", headers=headers)
        assert (await communicator.connect())[0]
        sockets.append(communicator)
        return communicator

    yield open_socket
    for communicator in sockets:
        await communicator.disconnect()
    left = list(replies.running.values())
    await asyncio.gather(*left, return_exceptions=True)  # their titles included


async def send_first_message(communicator) -> list[str]:
    await communicator.send_json_to({"action": "send", "message": FIRST_MESSAGE, "model": "fake/priced"})
    return await receive_until_final(communicator)


async def test_a_free_model_titles_the_conversation_after_its_first_reply(titles_on, new_chat, user):
    await sync_to_async(titler)("titler")
    communicator = await new_chat()
    await send_first_message(communicator)  # the reply is over and shown before any title request
    titled = await communicator.receive_from(timeout=5)
    assert f'<h2 id="conversation-heading" hx-swap-oob="outerHTML">{MODEL_TITLE}</h2>' in titled
    conversation = await Conversation.objects.aget()
    assert f'id="conversation-{conversation.pk}-title"' in titled
    assert conversation.title == MODEL_TITLE != title_from(FIRST_MESSAGE)

    reply_request, title_request = titles_on.requests[-2:]
    assert reply_request["body"]["model"] == "priced"
    body = title_request["body"]
    assert body["model"] == "titler" and not body.get("stream")
    assert body["max_tokens"] == titles.MAX_TITLE_TOKENS
    assert body["messages"][0] == {"role": "system", "content": titles.INSTRUCTION}
    assert FIRST_MESSAGE in body["messages"][1]["content"]
    assert "".join(REPLY_WORDS) in body["messages"][1]["content"]

    rows = [r async for r in UsageRecord.objects.filter(user=user).order_by("created_at")]
    assert [(r.purpose, r.model_slug, r.status) for r in rows] == [
        ("request", "fake/priced", "complete"),
        ("title", "fake/titler", "complete"),
    ]
    assert rows[1].cost == 0 and rows[1].prompt_tokens > 0


async def test_a_failed_title_request_keeps_the_first_message_and_is_metered(titles_on, new_chat, user):
    await sync_to_async(titler)("fail-503")
    communicator = await new_chat()
    await send_first_message(communicator)
    title_row = UsageRecord.objects.filter(user=user, purpose=UsageRecord.Purpose.TITLE)
    assert await eventually(title_row.exists)
    assert (await title_row.aget()).status == UsageRecord.Status.FAILED
    assert (await Conversation.objects.aget()).title == title_from(FIRST_MESSAGE)
    assert await communicator.receive_nothing(timeout=0.3)


async def test_a_title_the_plan_refuses_keeps_the_first_message(titles_on, new_chat, user):
    plan = await Plan.objects.acreate(slug="one-rpm", name="One a minute", requests_per_minute=1, is_public=False)
    await sync_to_async(start_subscription)(user, plan)
    await sync_to_async(titler)("titler")
    communicator = await new_chat()
    await send_first_message(communicator)
    await asyncio.gather(*replies.running.values())  # the title request was refused, not sent
    assert [r.purpose async for r in UsageRecord.objects.filter(user=user)] == ["request"]
    assert [r["body"]["model"] for r in titles_on.requests] == ["priced"]
    assert (await Conversation.objects.aget()).title == title_from(FIRST_MESSAGE)
    assert await communicator.receive_nothing(timeout=0.3)


async def test_a_conversation_renamed_meanwhile_keeps_its_new_name(titles_on, new_chat, user):
    await sync_to_async(titler)("titler")
    communicator = await new_chat()
    await communicator.send_json_to({"action": "send", "message": FIRST_MESSAGE, "model": "fake/priced"})
    assert await eventually(Conversation.objects.exists)
    await Conversation.objects.aupdate(title="My bread")
    # The title was asked for (its usage row), and not applied.
    assert await eventually(UsageRecord.objects.filter(purpose=UsageRecord.Purpose.TITLE).exists)
    await asyncio.gather(*replies.running.values())
    assert (await Conversation.objects.aget()).title == "My bread"


def test_the_answer_is_cleaned_into_a_title():
    assert titles.clean_title('Title: "Baking Sourdough at Home."\nMore text') == "Baking Sourdough at Home"
    assert titles.clean_title("**Sourdough basics**") == "Sourdough basics"
    assert titles.clean_title("  \n ") == ""
    long = titles.clean_title("word " * 40)
    assert len(long) <= titles.MAX_TITLE_CHARS + 1 and long.endswith("…")


@pytest.mark.django_db
def test_title_requests_are_told_apart_in_the_activity_log_and_the_admin(user, django_user_model):
    for purpose, slug in ((UsageRecord.Purpose.REQUEST, "fake/asked"), (UsageRecord.Purpose.TITLE, "fake/titler")):
        UsageRecord.objects.create(user=user, model_slug=slug, status="complete", purpose=purpose)
    log = logged_in_client(user).get("/usage/activity/").content.decode()
    rows = re.findall(r"<tr><td>.*?</tr>", log, re.S)
    assert [("· title" in row, "fake/titler" in row) for row in rows] == [(True, True), (False, False)]
    admin = django_user_model.objects.create_superuser("ops@example.com", "correct horse battery")
    titles_only = logged_in_client(admin).get("/admin/billing/usagerecord/?purpose=title").content.decode()
    assert "fake/titler" in titles_only and "fake/asked" not in titles_only
