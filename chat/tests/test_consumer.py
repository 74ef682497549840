"""The chat socket, driven through the real ASGI application (origin check, session auth, routing)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from aihub.asgi import application
from aihub.testing import logged_in_client, session_cookie_header
from billing.metering import count_text_tokens
from billing.models import Reservation, UsageRecord
from chat import replies
from chat.models import AIModel, Conversation, Message, Provider
from chat.tests.fake_upstream import REPLY_WORDS

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")
FINAL_MARK = 'class="chat-status"'  # the busy indicator switched off: the exchange is over


def fake_model(upstream_id: str) -> AIModel:
    return AIModel.objects.create(
        slug=f"fake/{upstream_id}",
        provider=Provider.OPENAI_COMPAT,
        upstream_id=upstream_id,
        name=f"Fake {upstream_id}",
    )


@pytest.fixture
def session_cookie(user):
    client = logged_in_client(user)
    return client, f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.fixture
def conversation(user):
    return Conversation.objects.create(user=user, title="Testing")


@pytest.fixture
async def connect(session_cookie):
    """Open the chat socket of a conversation as the logged-in user; every socket is closed at the end."""
    opened = []

    async def open_socket(conversation_id: int, headers=None):
        if headers is None:
            headers = [ORIGIN, (b"cookie", session_cookie[1].encode())]
        communicator = WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/", headers=headers)
        connected, code = await communicator.connect()
        opened.append(communicator)
        return communicator, connected, code

    yield open_socket
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect()
    # Replies are written detached from the socket that asked: those a test leaves running are stopped (and
    # their usage recorded) before its database goes away.
    left_running = list(replies.running.values())
    for task in left_running:
        task.cancel()
    await asyncio.gather(*left_running, return_exceptions=True)


@pytest.fixture
def chat_with(connect, conversation):
    """Open the owner's socket on `conversation`, a fake model of this upstream behaviour in the catalogue."""

    async def open_chat(upstream_id: str):
        await sync_to_async(fake_model)(upstream_id)
        communicator, _, _ = await connect(conversation.pk)
        return communicator

    return open_chat


async def send(communicator, message: str, model: str) -> None:
    await communicator.send_json_to({"action": "send", "message": message, "model": model})


async def joined(communicator) -> None:
    """Wait until a socket has joined its conversation: it handles frames in order, and only after its
    handshake's set-up (joining the groups after the accept), so the answer to a frame sent now says so."""
    await communicator.send_json_to({"action": "ping"})
    while "Unknown action" not in await communicator.receive_from():
        pass


async def eventually(predicate, timeout: float = 5.0):
    """Wait until a (sync, ORM-using) predicate holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await sync_to_async(predicate)():
            return True
        await asyncio.sleep(0.05)
    return False


async def receive_until_final(communicator, timeout: float = 10.0) -> list[str]:
    frames = []
    while True:
        frames.append(await communicator.receive_from(timeout=timeout))
        if FINAL_MARK in frames[-1]:
            return frames


def deltas_of(frames: list[str], reply_id: int) -> list[str]:
    pattern = re.compile(rf'^<span id="reply-{reply_id}" hx-swap-oob="beforeend">(.*)</span>$', re.S)
    return [m.group(1) for m in (pattern.match(f) for f in frames) if m]


async def receive_start(communicator) -> str:
    """The fragment that starts an exchange on every socket of the conversation (the sender's own
    acknowledgement comes before it)."""
    # A reply's first frames wait on a thread hop and the database: seconds on a busy machine (1 s, the
    # communicator's default, was missed at load 10).
    frame = await communicator.receive_from(timeout=10)
    while 'id="messages"' not in frame:
        frame = await communicator.receive_from(timeout=10)
    return frame


async def close_code(communicator) -> int | None:
    """The code the server closed this socket with (after accepting it: a code sent before the accept
    never reaches a browser)."""
    output = await communicator.receive_output(timeout=5)
    while output["type"] != "websocket.close":
        output = await communicator.receive_output(timeout=5)
    return output.get("code")


def reply_id_in(start_frame: str) -> int:
    return int(re.search(r'id="reply-(\d+)"', start_frame).group(1))


async def test_it_closes_anonymous_sockets_with_4401(conversation):
    communicator = WebsocketCommunicator(application, f"/ws/chat/{conversation.pk}/", headers=[ORIGIN])
    connected, _ = await communicator.connect()
    assert connected  # accepted, so that the close code reaches the page
    assert await close_code(communicator) == 4401


async def test_it_closes_someone_elses_conversation_with_4404(connect, other_user):
    foreign = await Conversation.objects.acreate(user=other_user, title="Not yours")
    communicator, connected, _ = await connect(foreign.pk)
    assert connected
    await send(communicator, "Let me in", "auto")
    assert await close_code(communicator) == 4404
    assert not await Message.objects.filter(conversation=foreign).aexists()


async def test_it_refuses_a_foreign_origin(connect, conversation, session_cookie):
    headers = [(b"origin", b"https://evil.example"), (b"cookie", session_cookie[1].encode())]
    _, connected, _ = await connect(conversation.pk, headers=headers)
    assert not connected


async def test_it_accepts_the_owner(connect, conversation):
    communicator, connected, _ = await connect(conversation.pk)
    assert connected
    await communicator.disconnect()


async def test_it_saves_the_message_before_calling_upstream(chat_with, conversation, upstream):
    communicator = await chat_with("hang")
    await send(communicator, "Are you there?", "fake/hang")
    start = await receive_start(communicator)
    assert "Are you there?" in start
    assert await eventually(lambda: len(upstream.requests) == 1)
    # The upstream has the request and has not answered: the user's words are already stored.
    assert await sync_to_async(
        Message.objects.filter(conversation=conversation, role="user", content="Are you there?").exists
    )()
    reply = await Message.objects.aget(pk=reply_id_in(start))
    assert reply.status == Message.Status.STREAMING
    await communicator.disconnect()


async def test_it_streams_deltas_as_fragments_then_the_final_reply(chat_with, conversation, upstream):
    communicator = await chat_with("fake-model")
    await send(communicator, "Hi there", "fake/fake-model")
    start = await receive_start(communicator)
    reply_id = reply_id_in(start)
    assert 'id="conversation-heading"' in start  # the first message names the conversation
    frames = await receive_until_final(communicator)
    deltas = deltas_of(frames, reply_id)
    assert deltas[0] == REPLY_WORDS[0]  # the first piece at once
    assert "".join(deltas) == "".join(REPLY_WORDS)
    assert len(deltas) < len(REPLY_WORDS)  # pieces the upstream sends together go out in one fragment
    final = frames[-1]
    assert f'id="message-{reply_id}"' in final and 'hx-swap-oob="outerHTML"' in final
    assert "Hello from the fake upstream." in final
    assert "11 in + 6 out tokens" in final
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "".join(REPLY_WORDS)
    assert (await Conversation.objects.aget(pk=conversation.pk)).title == "Hi there"
    await communicator.disconnect()


async def test_it_removes_the_first_message_hint(chat_with, upstream):
    communicator = await chat_with("fake-model")
    await send(communicator, "Hi", "fake/fake-model")
    start = await receive_start(communicator)
    assert '<p id="chat-hint" hx-swap-oob="delete"></p>' in start
    await receive_until_final(communicator)
    await send(communicator, "Again", "fake/fake-model")
    assert "chat-hint" not in await receive_start(communicator)
    await receive_until_final(communicator)
    await communicator.disconnect()


async def stream_some_then(communicator, chunks: int = 2) -> tuple[int, list[str]]:
    """Send a message to the slow model and read the start fragment and a few deltas."""
    await send(communicator, "Tell me a long story", "fake/slow")
    reply_id = reply_id_in(await receive_start(communicator))
    frames = [await communicator.receive_from(timeout=5) for _ in range(chunks)]
    return reply_id, deltas_of(frames, reply_id)


async def test_stop_keeps_the_partial_reply_meters_it_and_closes_upstream(chat_with, conversation, upstream):
    communicator = await chat_with("slow")
    reply_id, _ = await stream_some_then(communicator)
    await communicator.send_json_to({"action": "stop"})
    frames = await receive_until_final(communicator)
    assert "Stopped — partial reply kept" in frames[-1]
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.STOPPED
    assert reply.content and reply.content.startswith("Hello from")
    assert len(reply.content) < len("".join(REPLY_WORDS * 8))
    records = await sync_to_async(list)(UsageRecord.objects.filter(user_id=conversation.user_id))
    assert len(records) == 1
    assert records[0].status == UsageRecord.Status.STOPPED
    assert records[0].completion_tokens == count_text_tokens(reply.content) > 0
    assert reply.usage_id == records[0].request_id  # the reply finds its figures by its request id
    assert await asyncio.to_thread(upstream.wait_for, lambda f: f.open_streams == 0)
    await communicator.disconnect()


async def test_a_streaming_reply_is_checkpointed_to_the_database_every_second(chat_with, conversation, upstream):
    communicator = await chat_with("slow")
    reply_id, _ = await stream_some_then(communicator, chunks=1)
    started = time.monotonic()
    checkpointed = ""
    while not checkpointed and time.monotonic() - started < 3:
        await communicator.receive_from(timeout=5)  # the next delta
        reply = await Message.objects.aget(pk=reply_id)
        checkpointed = reply.content
    assert checkpointed.startswith("Hello from") and reply.status == Message.Status.STREAMING  # while written
    assert time.monotonic() - started < 2.5  # within about a second (and a delta's interval) of starting
    await communicator.send_json_to({"action": "stop"})
    await receive_until_final(communicator)
    final = await Message.objects.aget(pk=reply_id)
    assert final.status == Message.Status.STOPPED and final.content.startswith(checkpointed)


async def test_a_reply_goes_on_after_its_socket_closes_is_saved_complete_and_metered_once(
    chat_with, conversation, upstream
):
    communicator = await chat_with("steady")
    await send(communicator, "Take your time", "fake/steady")
    reply_id = reply_id_in(await receive_start(communicator))
    await communicator.receive_from(timeout=5)  # a first delta: the reply is under way
    await communicator.disconnect()  # the page is reloaded, closed or left
    assert await eventually(lambda: Message.objects.get(pk=reply_id).status == Message.Status.COMPLETE, timeout=10)
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content == "".join(REPLY_WORDS * 2)
    records = await sync_to_async(list)(UsageRecord.objects.filter(user_id=conversation.user_id))
    assert [r.status for r in records] == [UsageRecord.Status.COMPLETE]
    assert records[0].completion_tokens > 0 and reply.usage_id == records[0].request_id


async def test_a_socket_opened_mid_reply_shows_the_text_so_far_then_the_rest(
    chat_with, connect, conversation, upstream
):
    first = await chat_with("steady")
    await send(first, "Take your time", "fake/steady")
    reply_id = reply_id_in(await receive_start(first))
    await first.receive_from(timeout=5)
    await first.receive_from(timeout=5)
    await first.disconnect()
    reopened, _, _ = await connect(conversation.pk)  # the reloaded page
    snapshot = await reopened.receive_from(timeout=5)
    so_far = re.match(
        rf'^<div class="content streaming" id="reply-{reply_id}" hx-swap-oob="outerHTML">(.*)</div>$', snapshot, re.S
    ).group(1)
    assert len(so_far) >= len("Hello from")
    frames = await receive_until_final(reopened)
    assert so_far + "".join(deltas_of(frames, reply_id)) == "".join(REPLY_WORDS * 2)
    assert "status-complete" in frames[-1]


async def test_two_sockets_on_one_conversation_see_one_stream(chat_with, connect, conversation, upstream):
    first = await chat_with("fake-model")
    second, _, _ = await connect(conversation.pk)  # another tab
    await joined(second)
    await send(first, "Hi both", "fake/fake-model")
    seen = []
    for communicator in (first, second):
        frames = await receive_until_final(communicator)
        start = next(f for f in frames if 'id="messages"' in f)
        assert "Hi both" in start
        seen.append(deltas_of(frames, reply_id_in(start)))
    assert seen[0] == seen[1] and "".join(seen[0]) == "".join(REPLY_WORDS)  # the same fragments on both
    assert await sync_to_async(UsageRecord.objects.filter(user_id=conversation.user_id).count)() == 1


async def test_stop_from_another_socket_stops_the_reply(chat_with, connect, conversation, upstream):
    first = await chat_with("slow")
    reply_id, _ = await stream_some_then(first)
    second, _, _ = await connect(conversation.pk)
    await second.send_json_to({"action": "stop"})
    assert "Stopped — partial reply kept" in (await receive_until_final(second))[-1]
    assert "Stopped — partial reply kept" in (await receive_until_final(first))[-1]
    assert (await Message.objects.aget(pk=reply_id)).status == Message.Status.STOPPED
    assert await asyncio.to_thread(upstream.wait_for, lambda f: f.open_streams == 0)
    assert await sync_to_async(UsageRecord.objects.filter(user_id=conversation.user_id).count)() == 1


async def test_a_second_socket_cannot_send_while_the_first_ones_reply_is_written(
    chat_with, connect, conversation, upstream
):
    first = await chat_with("slow")
    await stream_some_then(first)
    second, _, _ = await connect(conversation.pk)
    await send(second, "Me too", "fake/slow")
    frame = await second.receive_from()
    while 'id="chat-error"' not in frame:
        frame = await second.receive_from()
    assert "A reply is still being written" in frame
    assert not await sync_to_async(Message.objects.filter(content="Me too").exists)()


async def test_deleting_the_conversation_stops_its_reply_and_keeps_the_usage_row(
    chat_with, conversation, upstream, session_cookie, user
):
    communicator = await chat_with("slow")
    reply_id, _ = await stream_some_then(communicator)
    request_id = (await Message.objects.aget(pk=reply_id)).usage_id
    assert await Reservation.objects.filter(user=user).acount() == 1  # the reply holds its reservation
    await communicator.disconnect()
    response = await sync_to_async(session_cookie[0].post)(f"/chat/{conversation.pk}/delete/")
    assert response.status_code == 302
    assert await asyncio.to_thread(upstream.wait_for, lambda f: f.open_streams == 0)
    assert await eventually(lambda: UsageRecord.objects.filter(user=user).exists())
    await asyncio.gather(*replies.running.values())  # the writer is done: nothing more will be written
    records = await sync_to_async(list)(UsageRecord.objects.filter(user=user))
    assert [(r.request_id, r.status) for r in records] == [(request_id, UsageRecord.Status.STOPPED)]
    assert records[0].completion_tokens > 0
    assert not await Reservation.objects.filter(user=user).aexists()  # the user can chat again at once
    assert not await sync_to_async(Conversation.objects.filter(pk=conversation.pk).exists)()


async def test_regenerate_from_a_second_socket_mid_reply_leaves_one_usage_row_and_no_reservation(
    chat_with, connect, conversation, upstream, user
):
    first = await chat_with("steady")
    await send(first, "Take your time", "fake/steady")
    reply_id = reply_id_in(await receive_start(first))
    await first.receive_from(timeout=5)
    second, _, _ = await connect(conversation.pk)  # another tab presses Regenerate meanwhile
    await second.send_json_to({"action": "regenerate", "model": "fake/steady"})
    frame = await second.receive_from()
    while 'id="chat-error"' not in frame:
        frame = await second.receive_from()
    assert "A reply is still being written" in frame
    assert "status-complete" in (await receive_until_final(first))[-1]  # the reply went on, untouched
    await asyncio.gather(*replies.running.values())
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.COMPLETE and reply.content == "".join(REPLY_WORDS * 2)
    records = await sync_to_async(list)(UsageRecord.objects.filter(user=user))
    assert [(r.request_id, r.status) for r in records] == [(reply.usage_id, UsageRecord.Status.COMPLETE)]
    assert not await Reservation.objects.filter(user=user).aexists()


async def test_logging_out_stops_a_reply_no_socket_shows(chat_with, conversation, upstream, session_cookie):
    communicator = await chat_with("slow")
    reply_id, _ = await stream_some_then(communicator)
    await communicator.disconnect()
    await sync_to_async(session_cookie[0].post)("/accounts/logout/")
    assert await asyncio.to_thread(upstream.wait_for, lambda f: f.open_streams == 0)
    assert await eventually(lambda: Message.objects.get(pk=reply_id).status == Message.Status.STOPPED)


async def test_a_reply_no_writer_answers_for_is_shown_as_interrupted(connect, conversation, monkeypatch):
    from chat import consumers

    monkeypatch.setattr(consumers, "SNAPSHOT_TIMEOUT", 0.3)
    orphan = await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming")
    communicator, _, _ = await connect(conversation.pk)  # its process ended mid-reply: nothing answers
    final = await communicator.receive_from(timeout=5)
    assert f'id="message-{orphan.pk}"' in final and "interrupted" in final
    orphan = await Message.objects.aget(pk=orphan.pk)
    assert orphan.status == Message.Status.FAILED
    await send(communicator, "Hello again", "auto")  # the conversation is free again
    assert 'id="composer-ack"' in await communicator.receive_from()


async def test_upstream_failure_mid_stream_keeps_the_partial_reply_and_shows_an_error(
    chat_with, conversation, upstream
):
    communicator = await chat_with("drop-after-2")
    await send(communicator, "Hi", "fake/drop-after-2")
    reply_id = reply_id_in(await receive_start(communicator))
    frames = await receive_until_final(communicator)
    assert deltas_of(frames, reply_id) == REPLY_WORDS[:2]
    assert "The reply failed part-way" in frames[-1]
    assert 'role="alert"' in frames[-1]
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.FAILED
    assert reply.content == "".join(REPLY_WORDS[:2])
    assert reply.error
    record = await UsageRecord.objects.aget(request_id=reply.usage_id)
    assert record.status == UsageRecord.Status.FAILED
    await communicator.disconnect()


async def test_regenerate_keeps_the_previous_reply_as_its_sibling(chat_with, conversation, upstream):
    communicator = await chat_with("fake-model")
    await send(communicator, "Hi", "fake/fake-model")
    first_reply = reply_id_in(await receive_start(communicator))
    await receive_until_final(communicator)
    await communicator.send_json_to({"action": "regenerate", "model": "fake/fake-model"})
    start = await communicator.receive_from()
    assert f'hx-swap-oob="outerHTML:#message-{first_reply}"' in start  # the new version takes its place
    second_reply = reply_id_in(start)
    final = (await receive_until_final(communicator))[-1]
    assert 'aria-label="Version 2 of 2"' in final
    replies = await sync_to_async(list)(
        Message.objects.filter(conversation=conversation, role="assistant").values_list("pk", "status", "on_path")
    )
    assert replies == [(first_reply, Message.Status.COMPLETE, False), (second_reply, Message.Status.COMPLETE, True)]
    assert await sync_to_async(Message.objects.filter(conversation=conversation, role="user").count)() == 1
    await communicator.disconnect()


async def send_while_streaming(communicator) -> str:
    """Start a slow reply, send another message meanwhile; return the error frame that answers it."""
    await stream_some_then(communicator, chunks=1)
    await send(communicator, "And another thing", "fake/slow")
    frame = await communicator.receive_from()
    while 'id="chat-error"' not in frame:
        frame = await communicator.receive_from()
    return frame


async def test_sending_while_a_reply_streams_shows_an_error(chat_with, upstream):
    communicator = await chat_with("slow")
    assert "A reply is still being written" in await send_while_streaming(communicator)
    assert not await sync_to_async(Message.objects.filter(content="And another thing").exists)()
    await communicator.disconnect()


async def test_it_rejects_an_unknown_model_visibly(connect, conversation):
    communicator, _, _ = await connect(conversation.pk)
    await send(communicator, "Hi", "no/such-model")
    frame = await communicator.receive_from()
    assert 'id="chat-error"' in frame and "no/such-model" in frame
    assert not await sync_to_async(Message.objects.filter(conversation=conversation).exists)()
    await communicator.disconnect()


async def test_logging_out_closes_the_users_sockets_and_stops_the_reply(
    chat_with, connect, conversation, upstream, session_cookie
):
    communicator = await chat_with("slow")
    reply_id, _ = await stream_some_then(communicator)
    client = session_cookie[0]
    response = await sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await close_code(communicator) == 4401
    assert await asyncio.to_thread(upstream.wait_for, lambda f: f.open_streams == 0)
    assert (await Message.objects.aget(pk=reply_id)).status == Message.Status.STOPPED
    # The session is gone: a new socket with the old cookie is closed at once.
    again, _, _ = await connect(conversation.pk)
    assert await close_code(again) == 4401


async def test_deleting_the_account_closes_its_sockets_and_no_new_one_opens(connect, conversation, session_cookie):
    communicator, connected, _ = await connect(conversation.pk)
    assert connected
    client = session_cookie[0]
    confirm = {"password": "correct horse battery", "confirmation": "delete my account"}
    response = await sync_to_async(client.post)("/account/delete/", confirm)
    assert response.status_code == 302
    assert await close_code(communicator) == 4401
    again, _, _ = await connect(conversation.pk)
    assert await close_code(again) == 4401


async def test_an_idle_socket_stays_usable(chat_with, upstream):
    # With Redis as the channel layer, a read timeout shorter than its blocking receive killed idle sockets.
    communicator = await chat_with("fake-model")
    await asyncio.sleep(6)
    await send(communicator, "Still there?", "fake/fake-model")
    await receive_start(communicator)
    assert "Hello from the fake upstream." in (await receive_until_final(communicator))[-1]
    await communicator.disconnect()


async def test_a_request_the_plan_refuses_fails_visibly_without_calling_upstream(upstream, free_user):
    conversation = await Conversation.objects.acreate(user=free_user)
    await AIModel.objects.acreate(
        slug="fake/priced",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="fake-model",
        name="Fake priced",
        input_price_per_m=1,
        output_price_per_m=2,
    )
    cookie = await sync_to_async(session_cookie_header)(free_user)
    communicator = WebsocketCommunicator(
        application, f"/ws/chat/{conversation.pk}/", headers=[ORIGIN, (b"cookie", cookie)]
    )
    assert (await communicator.connect())[0]
    await send(communicator, "Hi", "fake/priced")
    reply_id = reply_id_in(await receive_start(communicator))
    final = (await receive_until_final(communicator))[-1]
    assert "The reply failed" in final
    assert 'href="/billing/">See plans</a>' in final
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.FAILED and "Free" in reply.error
    assert upstream.requests == []
    assert not await sync_to_async(UsageRecord.objects.filter(user=free_user).exists)()
    await communicator.disconnect()


async def test_it_refuses_empty_and_oversized_messages_visibly(connect, conversation):
    communicator, _, _ = await connect(conversation.pk)
    await send(communicator, "   \n ", "auto")
    assert "Write a message first." in await communicator.receive_from()
    await send(communicator, "x" * 32_001, "auto")
    assert "That message is too long (32001 characters; the limit is 32000)." in await communicator.receive_from()
    for unreadable in ("not json", "[1, 2]", "42"):
        await communicator.send_to(text_data=unreadable)
        assert "That message could not be read" in await communicator.receive_from()
    assert not await sync_to_async(Message.objects.filter(conversation=conversation).exists)()
    await communicator.disconnect()


async def test_the_first_message_of_a_new_chat_creates_the_conversation(connect, user, upstream):
    await sync_to_async(fake_model)("fake-model")
    communicator, connected, _ = await connect("new")
    assert connected
    assert not await sync_to_async(Conversation.objects.filter(user=user).exists)()
    await communicator.send_json_to({"action": "send", "message": "Plan a trip to Lyon", "model": "fake/fake-model"})
    own = await communicator.receive_from()  # to this socket only, before the exchange starts
    conversation = await Conversation.objects.aget(user=user)
    assert conversation.title == "Plan a trip to Lyon"
    assert f'<input type="hidden" id="active-conversation" name="active" value="{conversation.pk}"' in own
    # Into the sidebar, under its Today heading (chat.sidebar).
    assert f'<ul hx-swap-oob="afterend:#group-today">\n<li id="conversation-{conversation.pk}"' in own
    start = await receive_start(communicator)
    assert '<p id="chat-hint" hx-swap-oob="delete"></p>' in start
    await receive_until_final(communicator)
    # The socket now belongs to that conversation: the next message joins it.
    await send(communicator, "And a day in Annecy?", "fake/fake-model")
    second = await communicator.receive_from()
    assert "conversation-list" not in second
    await receive_until_final(communicator)
    assert await sync_to_async(Conversation.objects.filter(user=user).count)() == 1
    assert await sync_to_async(Message.objects.filter(conversation=conversation).count)() == 4


async def test_a_new_chat_stores_nothing_until_its_first_message(connect, user):
    communicator, _, _ = await connect("new")
    await communicator.send_json_to({"action": "regenerate", "model": "auto"})
    assert "There is no message to answer yet." in await communicator.receive_from()
    await send(communicator, "  ", "auto")
    assert "Write a message first." in await communicator.receive_from()
    await communicator.disconnect()
    assert not await sync_to_async(Conversation.objects.filter(user=user).exists)()


async def test_only_a_stored_message_empties_the_composer(chat_with, upstream):
    communicator = await chat_with("fake-model")
    await communicator.send_json_to({"action": "send", "message": "x" * 32_001, "model": "auto", "draft": "6"})
    refused = await communicator.receive_from()
    assert "too long" in refused and "composer-ack" not in refused
    await communicator.send_json_to({"action": "send", "message": "Hi", "model": "fake/fake-model", "draft": "7"})
    start = await communicator.receive_from()
    assert '<div id="composer-ack" hidden data-draft="7" hx-swap-oob="outerHTML"></div>' in start
    await receive_until_final(communicator)


async def test_the_end_of_a_reply_clears_the_error_banner(chat_with, upstream):
    communicator = await chat_with("slow")
    assert "A reply is still being written" in await send_while_streaming(communicator)
    await communicator.send_json_to({"action": "stop"})
    final = (await receive_until_final(communicator))[-1]
    assert '<div id="chat-error" class="chat-error" role="alert" hx-swap-oob="outerHTML"></div>' in final


async def test_custom_instructions_and_the_system_prompt_reach_the_upstream_first(
    chat_with, conversation, user, upstream
):
    user.custom_instructions = "I am a chemist."
    await user.asave()
    communicator = await chat_with("fake-model")
    await communicator.send_json_to(
        {"action": "send", "message": "Hi", "model": "fake/fake-model", "system_prompt": " Answer in French. "}
    )
    await receive_until_final(communicator)
    messages = upstream.requests[-1]["body"]["messages"]
    assert messages[0] == {"role": "system", "content": "I am a chemist.\n\nAnswer in French."}
    assert messages[1] == {"role": "user", "content": "Hi"}
    assert (await Conversation.objects.aget(pk=conversation.pk)).system_prompt == "Answer in French."
    # The prompt is kept for the next messages; a message without the field leaves it as it is.
    await send(communicator, "Again", "fake/fake-model")
    await receive_until_final(communicator)
    assert upstream.requests[-1]["body"]["messages"][0]["content"].endswith("Answer in French.")


async def test_without_instructions_no_system_message_is_sent(chat_with, upstream):
    communicator = await chat_with("fake-model")
    await send(communicator, "Hi", "fake/fake-model")
    await receive_until_final(communicator)
    assert [m["role"] for m in upstream.requests[-1]["body"]["messages"]] == ["user"]


async def test_an_oversized_system_prompt_is_refused_visibly(chat_with, conversation, upstream):
    communicator = await chat_with("fake-model")
    await communicator.send_json_to({"action": "send", "message": "Hi", "model": "auto", "system_prompt": "x" * 8001})
    assert "That system prompt is too long (8001 characters; the limit is 8000)." in await communicator.receive_from()
    assert not await sync_to_async(Message.objects.filter(conversation=conversation).exists)()


async def test_a_reply_is_asked_for_upstream_before_its_start_is_shown_and_its_text_waits_for_the_start(
    conversation, user, upstream
):
    from channels.layers import get_channel_layer

    from aihub import lanes
    from chat import conversations

    async with lanes.lane():  # as the socket does: the thread's connection given back after
        model = await sync_to_async(fake_model)("steady")
        exchange = await conversations.start_exchange(user=user, conversation=conversation, text="Hi", model=model)
    layer = get_channel_layer()
    watcher = await layer.new_channel()  # a socket of the conversation, as the page's
    await layer.group_add(replies.conversation_group(conversation.pk), watcher)
    shown = asyncio.Event()

    writer = await replies.start(exchange, user=user, shown=shown)
    received = asyncio.create_task(layer.receive(watcher))
    assert await asyncio.to_thread(upstream.wait_for, lambda fake: fake.open_streams == 1)  # admitted and asked
    await asyncio.sleep(0.5)  # words come every 0.2 s
    assert not received.done()  # nothing reaches the sockets before the start does

    shown.set()
    first = await asyncio.wait_for(received, 5)
    assert (first["type"], first["reply_id"], first["offset"]) == ("reply.delta", exchange.reply.pk, 0)
    await asyncio.wait_for(writer, 10)
    async with lanes.lane():
        record = await UsageRecord.objects.aget(request_id=exchange.reply.usage_id)
    assert record.status == UsageRecord.Status.COMPLETE
