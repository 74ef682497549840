"""Replies that outlive the socket. A reply is written by a task of its own in the process that took the
message, not by the socket that asked for it: it keeps going when the page is reloaded, closed or left,
and is saved as it completes (the Generation's metering). Everything about it travels through the
channel layer, so that it reaches every process:

- to the sockets showing the conversation (group `conversation_group`): reply.started, reply.delta
  (each piece of text with its offset in the reply), reply.ended (the finished reply's HTML);
- to the writer (its own channel, in `control_group` and the user's group): reply.stop, session.logout
  (both stop it), reply.sync (answered with reply.snapshot, the text so far, to the socket that asked).
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.template.loader import render_to_string

from accounts.signals import user_group
from aihub import lanes
from billing.limits import LimitExceeded
from billing.models import UsageRecord

from . import conversations, figures, titles
from .conversations import Exchange
from .gateway.generation import Generation
from .gateway.providers.base import ProviderError, ToolCallDelta
from .models import Message
from .web_sources import add_web_sources

logger = logging.getLogger(__name__)

STOP_EVENTS = {"reply.stop", "session.logout"}

# Why a reply ended when the process writing it did (found by a page's socket, or by the sweeper: chat.upkeep).
INTERRUPTED = "interrupted: the server stopped"

# How long a piece of a reply's text may wait for the next to go to the sockets with it (Pieces).
PIECES_SECONDS = 0.05

# The replies this process writes, by reply id (tests wait for them; nothing else should need to).
running: dict[int, asyncio.Task] = {}


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def control_group(conversation_id: int) -> str:
    return f"reply-control-{conversation_id}"


async def broadcast(conversation_id: int, event: dict) -> None:
    await get_channel_layer().group_send(conversation_group(conversation_id), event)


async def stop(conversation_id: int) -> None:
    """Stop the reply being written in that conversation, in whichever process writes it."""
    await get_channel_layer().group_send(control_group(conversation_id), {"type": "reply.stop"})


async def start(exchange: Exchange, *, user, shown: asyncio.Event, search_query: str | None = None) -> asyncio.Task:
    """Write the exchange's reply in a task of its own, detached from the caller (a socket that may close);
    with a search query, the web is searched first and the results given to the model (web_sources.py).
    The writer listens for Stop before this returns: a Stop sent as soon as the reply shows is not lost.
    `shown`: set once the caller has shown the reply's start; its text and end are sent after that."""
    reply = exchange.reply
    layer = get_channel_layer()
    control = await layer.new_channel()
    groups = (control_group(exchange.conversation.pk), user_group(user.pk))
    for group in groups:
        await layer.group_add(group, control)
    task = asyncio.create_task(_write(exchange, control, groups, search_query, shown), name=f"reply-{reply.pk}")
    running[reply.pk] = task
    task.add_done_callback(lambda _: running.pop(reply.pk, None))
    return task


async def _write(
    exchange: Exchange, control: str, groups: tuple[str, ...], search_query: str | None, shown: asyncio.Event
) -> None:
    async with lanes.lane():  # the reply's database calls in a thread of their own, not behind other replies'
        await _write_in_lane(exchange, control, groups, search_query, shown)


async def _write_in_lane(
    exchange: Exchange, control: str, groups: tuple[str, ...], search_query: str | None, shown: asyncio.Event
) -> None:
    layer = get_channel_layer()
    conversation_id, reply, generation = exchange.conversation.pk, exchange.reply, exchange.generation
    generating = asyncio.create_task(_generate(generation, conversation_id, reply, search_query, shown))
    listening = asyncio.create_task(_listen(control, generating, generation, reply))
    limit = None
    try:
        limit = await generating
    finally:
        listening.cancel()
        for group in groups:
            await layer.group_discard(group, control)
        await shown.wait()
        await announce_end(conversation_id, reply.pk, limit)
    if exchange.title_changed and titles.enabled():
        await write_title(exchange)  # the reply is over and shown: the title costs it no wait


async def _generate(
    generation: Generation, conversation_id: int, reply: Message, search_query: str | None, shown: asyncio.Event
) -> LimitExceeded | None:
    """Stream the reply to the conversation's sockets. Returns the plan's refusal, if that is how it ended."""
    pieces = Pieces(conversation_id, reply.pk, shown)  # the text so far is checkpointed by the generation

    async def on_delta(delta: str | ToolCallDelta) -> None:
        assert isinstance(delta, str)  # the chat offers no tools: its replies are text
        await pieces.add(delta)

    try:
        if search_query:
            generation.messages = await add_web_sources(
                user=generation.user, reply=reply, query=search_query, history=generation.messages
            )
        await generation.stream(on_delta)
    except asyncio.CancelledError:
        pass  # stopped: the generation recorded it as such
    except ProviderError:
        pass  # recorded on the reply by the generation; shown by the final fragment
    except LimitExceeded as exc:  # refused by the plan before any upstream call: the reply says why
        return exc
    except Exception:
        logger.exception("reply %s failed", reply.pk)
        await conversations.fail_reply(reply, "something went wrong on our side")
    finally:
        await pieces.flush()  # before the end fragment
    return None


class Pieces:
    """A reply's text on its way to the sockets as reply.delta events: the first piece at once, then what
    arrives within PIECES_SECONDS of the first one waiting in one event (a model sends a piece every 10-30 ms;
    each event is a group send and a frame on every socket). None leaves before the reply's start is `shown`."""

    def __init__(self, conversation_id: int, reply_id: int, shown: asyncio.Event):
        self.conversation_id, self.reply_id, self.shown = conversation_id, reply_id, shown
        self.waiting: list[str] = []
        self.offset = 0  # of the first waiting piece in the reply
        self.sending = asyncio.Lock()  # events leave in order
        self.timer: asyncio.Task | None = None

    async def add(self, text: str) -> None:
        self.waiting.append(text)
        if self.offset == 0 and len(self.waiting) == 1:
            await self.flush()  # the first piece: the time to first token waits for nothing
        elif self.timer is None:
            self.timer = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(PIECES_SECONDS)
        self.timer = None
        await self.flush()

    async def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        text, self.waiting = "".join(self.waiting), []
        if not text:
            return
        event = {"type": "reply.delta", "reply_id": self.reply_id, "offset": self.offset, "text": text}
        self.offset += len(text)
        async with self.sending:
            await self.shown.wait()
            await broadcast(self.conversation_id, event)


async def _listen(control: str, generating: asyncio.Task, generation: Generation, reply: Message) -> None:
    layer = get_channel_layer()
    stopped = False
    while True:
        event = await layer.receive(control)
        if event["type"] in STOP_EVENTS and not stopped:
            stopped = True  # cancelled once: cancelling twice can leak the pooled upstream connection
            generating.cancel()
        elif event["type"] == "reply.sync" and event.get("reply_id") == reply.pk:
            snapshot = {"type": "reply.snapshot", "reply_id": reply.pk, "text": generation.text}
            await layer.send(event["reply_to"], snapshot)


async def announce_end(conversation_id: int, reply_id: int, limit: LimitExceeded | None = None) -> None:
    """Send the finished reply (as stored) to every socket showing the conversation."""
    context = await database_sync_to_async(figures.exchange_end)(reply_id)
    if context is None:  # deleted with its conversation
        return
    context["upgrade_url"] = limit.upgrade_url if limit else None
    await broadcast(
        conversation_id,
        {"type": "reply.ended", "reply_id": reply_id, "html": render_to_string("chat/_exchange_end.html", context)},
    )


async def write_title(exchange: Exchange) -> None:
    """After a new conversation's first complete reply: a free model's title, shown on every page open on
    it (chat.titles; the cut first message stays when none is written)."""
    generation, user_message = exchange.generation, exchange.user_message
    if generation.status != UsageRecord.Status.COMPLETE or not generation.text.strip() or user_message is None:
        return
    conversation = exchange.conversation
    title = await titles.write_title(
        conversation.pk,
        user=generation.user,
        message=user_message.content,
        reply=generation.text,
        cut_title=conversation.title,
    )
    if title is not None:
        conversation.title = title
        html = render_to_string("chat/_conversation_titled.html", {"conversation": conversation})
        await broadcast(conversation.pk, {"type": "conversation.titled", "html": html})


async def give_up_on(conversation_id: int, reply_id: int) -> None:
    """A reply no process answers for (its process ended while writing it): failed, and said so."""
    await conversations.fail_reply(Message(pk=reply_id), INTERRUPTED)
    await announce_end(conversation_id, reply_id)
