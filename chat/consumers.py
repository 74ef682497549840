"""The chat socket: a user sends a message and the reply streams back as HTML fragments (htmx ws).

The socket only shows a reply: the reply is written detached from it (chat.replies) and reaches every
socket on the conversation, in any process, through the channel layer. A socket that opens while a
reply is being written asks its writer for the text so far, then follows the stream.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from accounts.signals import user_group
from aihub import lanes
from aihub.inputs import BadJson, parse_json, whole_number

from . import attachments, conversations, replies
from .catalogue.lookup import UnknownModel, active_model
from .conversations import MAX_MESSAGE_CHARS, Exchange
from .message_pages import message_page
from .models import Conversation

logger = logging.getLogger(__name__)

# How long a socket waits for the writer of a reply marked as being written before it takes the reply
# for abandoned (its process ended mid-reply).
SNAPSHOT_TIMEOUT = 5.0

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


def _id_list(value) -> list[str]:
    """Attachment ids as the composer sends them: one, several, or none."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class ChatConsumer(AsyncWebsocketConsumer):
    """The socket of one conversation, or (at /ws/chat/new/) of the one its first message creates."""

    conversation: Conversation | None = None

    async def dispatch(self, message):
        # Channels gives the process's shared thread's database connection back before every event, a thread
        # hop each: 50 per reply for its pieces of text alone. These events only send to the socket, and the
        # others run their database calls in a lane, which gives its connection back itself (aihub.lanes).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        async with lanes.lane():  # this socket's database calls in a thread not shared by every socket's
            await self.open()

    async def open(self):
        # Accepted before any refusal: a socket closed before its handshake reaches the browser as a
        # bare failure (1006), never as our close code, and the page would keep reconnecting.
        await self.accept()
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation_id = self.scope["url_route"]["kwargs"].get("conversation_id")
        if conversation_id is not None:
            conversation = await Conversation.objects.filter(pk=conversation_id, user=user).afirst()
            if conversation is None:  # someone else's, or gone: indistinguishable on purpose
                await self.close(code=CLOSE_NOT_FOUND)
                return
        # Per reply: how much of its text this page shows, and deltas held back until the snapshot comes.
        self.shown: dict[int, int] = {}
        self.held: dict[int, list[dict]] = {}
        self.watchdogs: list[asyncio.Task] = []
        self.groups_joined = [user_group(user.pk)]
        await self.channel_layer.group_add(self.groups_joined[0], self.channel_name)
        if conversation_id is not None:
            await self.follow(conversation)
            await self.catch_up()

    async def follow(self, conversation: Conversation):
        self.conversation = conversation
        group = replies.conversation_group(conversation.pk)
        self.groups_joined.append(group)
        await self.channel_layer.group_add(group, self.channel_name)

    async def catch_up(self):
        """Replies being written now: ask their writers for the text so far."""
        for reply_id in await database_sync_to_async(conversations.streaming_reply_ids)(self.conversation):
            self.held[reply_id] = []
            await self.channel_layer.group_send(
                replies.control_group(self.conversation.pk),
                {"type": "reply.sync", "reply_id": reply_id, "reply_to": self.channel_name},
            )
            self.watchdogs.append(asyncio.create_task(self.give_up_unless_answered(self.conversation.pk, reply_id)))

    async def give_up_unless_answered(self, conversation_id: int, reply_id: int):
        await asyncio.sleep(SNAPSHOT_TIMEOUT)
        if reply_id in self.held:
            logger.warning("reply %s: no writer answered; taken for abandoned", reply_id)
            async with lanes.lane():  # the lane of the connect that started this has been given back
                await replies.give_up_on(conversation_id, reply_id)

    async def disconnect(self, code):
        # The reply goes on without this socket.
        for watchdog in getattr(self, "watchdogs", []):
            watchdog.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def session_logout(self, event):
        await self.close(code=CLOSE_UNAUTHENTICATED)  # the user left (their replies are stopped by the same event)

    # Events from the channel layer (chat.replies).

    async def reply_started(self, event):
        self.shown[event["reply_id"]] = 0
        await self.send(text_data=event["html"])

    async def reply_delta(self, event):
        reply_id = event["reply_id"]
        if reply_id in self.held:
            self.held[reply_id].append(event)
            return
        shown = self.shown.get(reply_id)
        text = event["text"]
        if shown is not None:  # text this page already has (from the snapshot) is not shown twice
            text = text[max(0, shown - event["offset"]) :]
            self.shown[reply_id] = max(shown, event["offset"] + len(event["text"]))
        if text:
            await self.send(text_data=f'<span id="reply-{reply_id}" hx-swap-oob="beforeend">{html.escape(text)}</span>')

    async def reply_snapshot(self, event):
        reply_id = event["reply_id"]
        held = self.held.pop(reply_id, None)
        if held is None:
            return  # answered after this socket gave up on it, or asked twice
        self.shown[reply_id] = len(event["text"])
        await self.send(
            text_data=f'<div class="content streaming" id="reply-{reply_id}" hx-swap-oob="outerHTML">'
            f"{html.escape(event['text'])}</div>"
        )
        for delta in held:
            await self.reply_delta(delta)

    async def path_shown(self, event):
        await self.send(text_data=event["html"])

    async def reply_ended(self, event):
        self.shown.pop(event["reply_id"], None)
        self.held.pop(event["reply_id"], None)
        await self.send(text_data=event["html"])

    async def conversation_titled(self, event):
        await self.send(text_data=event["html"])  # a title written after the first reply (chat.titles)

    # What the page sends.

    async def receive(self, text_data=None, bytes_data=None):
        async with lanes.lane():
            await self.take(text_data)

    async def take(self, text_data: str | None) -> None:
        if not hasattr(self, "groups_joined"):
            return  # refused at connect: the close is on its way
        try:
            data = parse_json(text_data) if text_data is not None else None
        except BadJson:
            data = None
        if not isinstance(data, dict):
            await self.send_error("That message could not be read: send a JSON object as a text frame.")
            return
        action = data.get("action", "send")
        if action == "stop":
            if self.conversation is not None:
                await replies.stop(self.conversation.pk)
        elif not all(isinstance(data.get(name, ""), str) for name in ("message", "model")):
            await self.send_error("That message could not be read: 'message' and 'model' must be text.")
        elif action == "send":
            await self.send_message(
                data.get("message", ""),
                data.get("model", ""),
                str(data.get("draft", "")),
                web_search=str(data.get("web_search", "")) in ("on", "true", "1"),
                attachment_ids=_id_list(data.get("attachments")),
                system_prompt=str(data["system_prompt"]).strip() if "system_prompt" in data else None,
            )
        elif action == "regenerate":
            await self.regenerate(data.get("model", ""))
        elif action == "edit":
            message_id = whole_number(str(data.get("message_id", "")))
            if message_id is None:
                await self.send_error("Which message? 'message_id' must be the id of one of your messages.")
                return
            await self.send_message(data.get("message", ""), data.get("model", ""), edit_of=message_id)
        else:
            await self.send_error("Unknown action: use send, stop, regenerate or edit.")

    async def send_message(
        self,
        text: str,
        model_slug: str,
        draft: str = "",
        *,
        web_search: bool = False,
        attachment_ids=(),
        system_prompt: str | None = None,
        edit_of: int | None = None,
    ):
        """A new message; with `edit_of`, a new version of that message of the path (a new branch)."""
        text = text.strip()
        if not text:
            await self.send_error("Write a message first.")
            return
        if system_prompt is not None and len(system_prompt) > conversations.MAX_SYSTEM_PROMPT_CHARS:
            await self.send_error(
                f"That system prompt is too long ({len(system_prompt)} characters; "
                f"the limit is {conversations.MAX_SYSTEM_PROMPT_CHARS})."
            )
            return
        if "\x00" in text or "\x00" in (system_prompt or ""):  # PostgreSQL text cannot hold it
            await self.send_error("That message holds a NUL character (\\u0000): remove it and send again.")
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await self.send_error(
                f"That message is too long ({len(text)} characters; the limit is {MAX_MESSAGE_CHARS})."
            )
            return
        try:
            model, files = await database_sync_to_async(self.model_and_files)(model_slug, attachment_ids)
        except (UnknownModel, attachments.UploadRefused) as exc:  # nothing stored: the message stays in the composer
            await self.send_error(str(exc))
            return
        new_conversation = self.conversation is None
        try:
            exchange = await conversations.start_exchange(
                user=self.scope["user"],
                conversation=self.conversation,
                text=text,
                model=model,
                files=files,
                system_prompt=system_prompt,
                edit_of=edit_of,
            )
        except (conversations.ReplyInProgress, conversations.NotOnPath) as exc:
            await self.send_error(str(exc))
            return
        if exchange.branched:  # the path changed above the new message: the messages area shows the new one
            await self.start_reply(exchange, database_sync_to_async(self.render_path)(exchange))
            return
        if new_conversation:
            await self.follow(exchange.conversation)
        await self.start_reply(
            exchange, self.acknowledge(exchange, draft, new_conversation), search_query=text if web_search else None
        )

    async def acknowledge(self, exchange: Exchange, draft: str, new_conversation: bool) -> str:
        """Empty the page's composer (only now: a refused message stays there to be sent again); returns the
        exchange's start, for every socket of the conversation."""
        own = render_to_string("chat/_composer_ack.html", {"draft": draft})
        if new_conversation:
            own += render_to_string("chat/_conversation_created.html", {"conversation": self.conversation})
        await self.send(text_data=own)
        context = {
            "user_message": exchange.user_message,
            "reply": exchange.reply,
            "conversation": self.conversation,
            "title_changed": exchange.title_changed,
        }
        # In a worker thread: the user's message lists its attachments (a query).
        return await database_sync_to_async(render_to_string)("chat/_exchange_start.html", context)

    async def regenerate(self, model_slug: str):
        if self.conversation is None:
            await self.send_error("There is no message to answer yet.")
            return
        try:
            model = await database_sync_to_async(active_model)(model_slug)
            exchange = await conversations.restart_exchange(
                user=self.scope["user"], conversation=self.conversation, model=model
            )
        except (UnknownModel, conversations.ReplyInProgress) as exc:
            await self.send_error(str(exc))
            return
        if exchange is None:
            await self.send_error("There is no message to answer yet.")
            return
        context = {"previous_version": exchange.previous_version, "reply": exchange.reply}
        await self.start_reply(exchange, render_to_string("chat/_regenerate_start.html", context))

    def model_and_files(self, model_slug: str, attachment_ids) -> tuple:
        """The model asked for and the files to send with the message, in one thread hop. Sync (ORM)."""
        model = active_model(model_slug)
        return model, attachments.to_send(self.scope["user"], attachment_ids, model)

    @staticmethod
    def render_path(exchange: Exchange) -> str:
        """The messages area showing the path as it now is, its reply being written. Sync (ORM)."""
        page = render_to_string("chat/_path_shown.html", message_page(exchange.conversation))
        return page + render_to_string("chat/_chat_status.html", {"busy": True})

    async def start_reply(
        self, exchange: Exchange, start_html: str | Awaitable[str], search_query: str | None = None
    ) -> None:
        """Have the reply written detached (its writer already listening for Stop), and show its start on every
        socket of the conversation. The writer starts first: its admission and upstream call overlap the
        start's making (`start_html` awaited), and its text and end wait for the start to be shown."""
        shown = asyncio.Event()
        await replies.start(exchange, user=self.scope["user"], search_query=search_query, shown=shown)
        try:
            html = start_html if isinstance(start_html, str) else await start_html
            await replies.broadcast(
                exchange.conversation.pk, {"type": "reply.started", "reply_id": exchange.reply.pk, "html": html}
            )
        finally:
            shown.set()  # whatever happened here: the reply is not held up for good

    async def send_error(self, text: str):
        await self.send(text_data=render_to_string("chat/_error.html", {"error": text}))
