"""Branches and versions: an edited message starts a new branch, a regenerated reply is a new version beside
the previous one, ‹ › switches between them; the page, the history sent upstream and the usage follow."""

from __future__ import annotations

import importlib
import io
import json
import zipfile

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aihub.testing import logged_in_client
from billing.models import UsageRecord
from chat.models import Conversation, Message
from chat.tests.fake_upstream import REPLY_WORDS
from chat.tests.test_consumer import (  # noqa: F401  (fixtures)
    chat_with,
    connect,
    conversation,
    receive_until_final,
    reply_id_in,
    send,
    session_cookie,
)

# transaction: the consumer works in threads of its own; the tests of pages and models roll back (plain django_db).
pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "".join(REPLY_WORDS)


def sent_upstream(upstream) -> list[tuple[str, str]]:
    """The messages of the last request the fake upstream received, as (role, text)."""
    return [(m["role"], m["content"]) for m in upstream.requests[-1]["body"]["messages"]]


async def exchange(communicator, text: str) -> tuple[int, list[str]]:
    await send(communicator, text, "fake/fake-model")
    frame = await communicator.receive_from(timeout=10)  # the first of a test session may take a while
    while 'id="messages"' not in frame:
        frame = await communicator.receive_from(timeout=10)
    return reply_id_in(frame), await receive_until_final(communicator)


async def edit(communicator, message_id: int, text: str) -> tuple[str, list[str]]:
    """Edit a sent message; returns the frame that shows the new branch, and the frames up to the reply's end."""
    await communicator.send_json_to(
        {"action": "edit", "message_id": str(message_id), "message": text, "model": "fake/fake-model"}
    )
    start = await communicator.receive_from(timeout=10)
    return start, await receive_until_final(communicator)


def path_of(conversation: Conversation) -> list[tuple[str, str]]:
    return list(conversation.messages.on_path().order_by("id").values_list("role", "content"))


def user_message(conversation: Conversation, text: str) -> Message:
    return conversation.messages.get(role="user", content=text)


async def switch(client, conversation: Conversation, message_id: int, step: int, *, seen_by=None):
    """‹ (-1) or › (1) on a message, as htmx posts it; `seen_by`: a socket that then receives the new path."""
    response = await sync_to_async(client.post)(
        f"/chat/{conversation.pk}/messages/{message_id}/version/", {"step": str(step)}, HTTP_HX_REQUEST="true"
    )
    if seen_by is not None:
        assert 'hx-swap-oob="innerHTML"' in await seen_by.receive_from(timeout=5)
    return response


async def test_an_edit_starts_a_branch_and_only_that_branch_goes_upstream(chat_with, conversation, upstream):
    communicator = await chat_with("fake-model")
    await exchange(communicator, "Hi")
    await exchange(communicator, "Tell me more")
    more = await sync_to_async(user_message)(conversation, "Tell me more")

    start, frames = await edit(communicator, more.pk, "Tell me less")

    # The messages area shows the new branch: the edit and its reply being written, not the old question.
    assert 'id="messages" class="messages" hx-swap-oob="innerHTML"' in start
    assert "Tell me less" in start and "Tell me more" not in start
    assert 'aria-label="Version 2 of 2"' in start  # the edited message has ‹ 2/2 ›
    assert "status-complete" in frames[-1]
    assert sent_upstream(upstream) == [("user", "Hi"), ("assistant", REPLY), ("user", "Tell me less")]
    assert await sync_to_async(path_of)(conversation) == [
        ("user", "Hi"),
        ("assistant", REPLY),
        ("user", "Tell me less"),
        ("assistant", REPLY),
    ]
    # The original question and its reply are kept, off the path; the edit is their sibling.
    less = await sync_to_async(user_message)(conversation, "Tell me less")
    assert less.parent_id == more.parent_id and not (await Message.objects.aget(pk=more.pk)).on_path
    assert await Message.objects.filter(parent=more, role="assistant", content=REPLY).aexists()

    await exchange(communicator, "And then?")
    assert sent_upstream(upstream)[2:] == [("user", "Tell me less"), ("assistant", REPLY), ("user", "And then?")]


async def test_editing_the_first_message_makes_a_second_root(chat_with, conversation, upstream):
    communicator = await chat_with("fake-model")
    await exchange(communicator, "Hi")
    first = await sync_to_async(user_message)(conversation, "Hi")

    await edit(communicator, first.pk, "Good morning")

    assert sent_upstream(upstream) == [("user", "Good morning")]
    hello = await sync_to_async(user_message)(conversation, "Good morning")
    assert hello.parent_id is None and first.parent_id is None
    assert await sync_to_async(path_of)(conversation) == [("user", "Good morning"), ("assistant", REPLY)]


async def test_switching_back_shows_the_original_branch_and_the_history_follows_it(
    chat_with, connect, conversation, upstream, session_cookie
):
    communicator = await chat_with("fake-model")
    await exchange(communicator, "Hi")
    hi = await sync_to_async(user_message)(conversation, "Hi")
    await edit(communicator, hi.pk, "Good morning")
    hello = await sync_to_async(user_message)(conversation, "Good morning")
    other_tab, _, _ = await connect(conversation.pk)

    response = await switch(session_cookie[0], conversation, hello.pk, -1, seen_by=communicator)

    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="message-{hi.pk}"' in html and "Good morning" not in html
    assert 'aria-label="Version 1 of 2"' in html
    # Every page showing the conversation follows (its socket), so what it sends next follows the branch shown.
    assert f'id="message-{hi.pk}"' in await other_tab.receive_from(timeout=5)
    await exchange(other_tab, "Thanks")
    assert sent_upstream(upstream) == [("user", "Hi"), ("assistant", REPLY), ("user", "Thanks")]


async def test_regenerate_then_switch_between_the_two_versions(chat_with, conversation, upstream, session_cookie, user):
    communicator = await chat_with("fake-model")
    first, _ = await exchange(communicator, "Hi")
    await communicator.send_json_to({"action": "regenerate", "model": "fake/fake-model"})
    second = reply_id_in(await communicator.receive_from(timeout=5))
    await receive_until_final(communicator)

    response = await switch(session_cookie[0], conversation, second, -1, seen_by=communicator)

    html = response.content.decode()
    assert f'id="message-{first}"' in html and f'id="message-{second}"' not in html
    assert 'aria-label="Version 1 of 2"' in html
    assert [m.pk for m in await sync_to_async(list)(conversation.messages.on_path())][-1] == first
    # Each request left its usage row: the regeneration was a new request, the first reply's row stays.
    replies = await sync_to_async(list)(Message.objects.filter(conversation=conversation, role="assistant"))
    rows = await sync_to_async(list)(UsageRecord.objects.filter(user=user).values_list("request_id", flat=True))
    assert sorted(rows) == sorted(r.usage_id for r in replies) and len(rows) == 2
    # The next message follows the version shown (the first reply), with that reply in its history.
    await exchange(communicator, "Why?")
    reply_first = await Message.objects.aget(pk=first)
    assert sent_upstream(upstream)[1] == ("assistant", reply_first.content)
    why = await sync_to_async(user_message)(conversation, "Why?")
    assert why.parent_id == first


async def test_going_back_to_a_branch_shows_the_version_chosen_last_there(
    chat_with, conversation, upstream, session_cookie
):
    communicator = await chat_with("fake-model")
    first, _ = await exchange(communicator, "Hi")
    await communicator.send_json_to({"action": "regenerate", "model": "fake/fake-model"})
    second = reply_id_in(await communicator.receive_from(timeout=5))
    await receive_until_final(communicator)
    client = session_cookie[0]
    await switch(client, conversation, second, -1, seen_by=communicator)  # the first reply again, under "Hi"
    hi = await sync_to_async(user_message)(conversation, "Hi")
    await edit(communicator, hi.pk, "Good morning")
    hello = await sync_to_async(user_message)(conversation, "Good morning")

    await switch(client, conversation, hello.pk, -1, seen_by=communicator)

    on_path = await sync_to_async(list)(conversation.messages.on_path().order_by("id").values_list("pk", flat=True))
    assert on_path == [hi.pk, first]


async def test_an_edit_or_switch_is_refused_while_a_reply_is_written(chat_with, conversation, upstream, session_cookie):
    communicator = await chat_with("fake-model")
    await exchange(communicator, "Hi")
    hi = await sync_to_async(user_message)(conversation, "Hi")
    await sync_to_async(Message.objects.create)(conversation=conversation, role="assistant", status="streaming")

    await communicator.send_json_to({"action": "edit", "message_id": hi.pk, "message": "Good morning", "model": "auto"})
    refused = await communicator.receive_from(timeout=5)
    response = await switch(session_cookie[0], conversation, hi.pk, 1)

    assert "A reply is still being written" in refused
    assert response.status_code == 422 and "A reply is still being written" in response.content.decode()
    assert not await Message.objects.filter(content="Good morning").aexists()


async def test_bad_edits_are_refused_visibly(chat_with, connect, conversation, upstream, other_user):
    communicator = await chat_with("fake-model")
    await exchange(communicator, "Hi")
    hi = await sync_to_async(user_message)(conversation, "Hi")
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    theirs = await Conversation.objects.acreate(user=other_user, title="Theirs")
    their_message = await Message.objects.acreate(conversation=theirs, role="user", content="Secret")

    for message_id, text, expected in [
        ("abc", "Good morning", "must be the id of one of your messages"),
        (reply.pk, "Good morning", "not in this conversation as it is shown"),  # a reply is not edited
        (their_message.pk, "Good morning", "not in this conversation as it is shown"),
        (hi.pk, "   ", "Write a message first."),
    ]:
        await communicator.send_json_to({"action": "edit", "message_id": message_id, "message": text, "model": "auto"})
        assert expected in await communicator.receive_from(timeout=5)
    assert (await Message.objects.aget(pk=their_message.pk)).content == "Secret"
    assert await Message.objects.filter(conversation=conversation).acount() == 2


@pytest.mark.django_db
def test_switching_is_the_owners_only_and_checks_its_step(user, other_user, logged_in):
    conversation = Conversation.objects.create(user=user, title="Mine")
    first = Message.objects.create(conversation=conversation, role="user", content="Hi")

    foreign = logged_in_client(other_user).post(f"/chat/{conversation.pk}/messages/{first.pk}/version/", {"step": "1"})
    bad_step = logged_in.post(f"/chat/{conversation.pk}/messages/{first.pk}/version/", {"step": "2"})
    past_the_end = logged_in.post(f"/chat/{conversation.pk}/messages/{first.pk}/version/", {"step": "1"})
    get = logged_in.get(f"/chat/{conversation.pk}/messages/{first.pk}/version/")

    assert foreign.status_code == 404
    assert bad_step.status_code == 400
    assert past_the_end.status_code == 409
    assert get.status_code == 405


def branched_conversation(user, questions: int) -> Conversation:
    """A conversation of `questions` exchanges whose every question was edited once and every reply
    regenerated once (through the functions the socket calls)."""
    from chat import conversations

    conversation = Conversation.objects.create(user=user, title="Branched")
    for n in range(questions):
        message, reply, _ = conversations.add_user_message(conversation, f"Question {n}", None)
        Message.objects.filter(pk=reply.pk).update(status="complete", content=f"Answer {n}")
        message, reply, _ = conversations.add_user_message(conversation, f"Question {n} edited", None, message.pk)
        Message.objects.filter(pk=reply.pk).update(status="complete", content=f"Answer {n} to the edit")
        _, reply = conversations.add_reply_version(conversation, None)
        Message.objects.filter(pk=reply.pk).update(status="complete", content=f"Answer {n} again")
    return conversation


@pytest.mark.django_db
def test_the_page_shows_the_path_with_its_versions_in_the_queries_of_a_linear_one(user, logged_in):
    linear = Conversation.objects.create(user=user, title="Linear")
    for n in range(4):
        Message.objects.create(conversation=linear, role="user", content=f"Plain {n}")
        Message.objects.create(conversation=linear, role="assistant", content=f"Reply {n}")
    branched = branched_conversation(user, 4)

    with CaptureQueriesContext(connection) as linear_queries:
        logged_in.get(f"/chat/{linear.pk}/")
    with CaptureQueriesContext(connection) as queries:
        html = logged_in.get(f"/chat/{branched.pk}/").content.decode()

    assert len(queries) == len(linear_queries)
    assert html.count('<article id="message-') == 8
    assert html.count('aria-label="Version 2 of 2"') == 8  # each question's edit, each reply's new version
    assert "Question 3 edited" in html and "Answer 3 again" in html
    assert "Question 3<" not in html and "Answer 3 to the edit" not in html and "Answer 3<" not in html
    assert 'class="versions"' not in logged_in.get(f"/chat/{linear.pk}/").content.decode()


def test_history_and_exports_hold_the_path_only(user, logged_in):
    from chat.conversations import history_for

    conversation = branched_conversation(user, 2)

    history = [(m["role"], m["content"]) for m in history_for(conversation, None)]
    export = logged_in.get(f"/chat/{conversation.pk}/export.md").content.decode()
    api = logged_in.get(f"/api/v1/sessions/{conversation.pk}").json()

    path = [
        ("user", "Question 0 edited"),
        ("assistant", "Answer 0 again"),
        ("user", "Question 1 edited"),
        ("assistant", "Answer 1 again"),
    ]
    assert history == path
    assert [(m["role"], m["content"]) for m in api["messages"]] == path
    assert "Answer 0 again" in export and "Answer 0 to the edit" not in export and "Question 1\n" not in export


@pytest.mark.django_db
def test_the_archive_of_all_conversations_holds_every_branch_marked(user, logged_in):
    branched_conversation(user, 1)

    archive = zipfile.ZipFile(io.BytesIO(logged_in.get("/chat/export.zip").content))

    [json_name] = [n for n in archive.namelist() if n.startswith("json/")]
    record = json.loads(archive.read(json_name))
    assert [(m["content"], m["on_path"]) for m in record["messages"]] == [
        ("Question 0", False),
        ("Answer 0", False),
        ("Question 0 edited", True),
        ("Answer 0 to the edit", False),
        ("Answer 0 again", True),
    ]
    [markdown_name] = [n for n in archive.namelist() if n.startswith("markdown/")]
    assert "## You (an earlier version, not on the branch shown)" in archive.read(markdown_name).decode()


@pytest.mark.django_db
def test_existing_conversations_become_one_path():
    backfill = importlib.import_module("chat.migrations.0011_message_branches").link_each_message_to_the_one_before
    from accounts.models import User

    owner = User.objects.create_user("old@example.com", "correct horse battery")
    conversations = [Conversation.objects.create(user=owner, title=f"Old {n}") for n in range(2)]
    rows = Message.objects.bulk_create(  # as they were before branches: no parents
        Message(conversation=c, role=role, content=f"{c.title} {role}")
        for c in conversations
        for role in ["user", "assistant", "user", "assistant"]
    )

    backfill(apps, None)

    parents = dict(Message.objects.values_list("pk", "parent_id"))
    for first, *rest in (rows[:4], rows[4:]):
        assert parents[first.pk] is None
        assert [parents[m.pk] for m in rest] == [m.pk for m in [first, *rest][:-1]]
    assert all(Message.objects.values_list("on_path", flat=True))


@pytest.mark.django_db
def test_the_admin_shows_which_messages_are_on_the_path(user, django_user_model):
    conversation = branched_conversation(user, 1)
    staff = django_user_model.objects.create_superuser("root@example.com", "correct horse battery")

    response = logged_in_client(staff).get(f"/admin/chat/conversation/{conversation.pk}/change/")

    assert response.status_code == 200
    assert response.content.decode().count('class="field-on_path"') == 5 + 1  # and the inline's empty form
