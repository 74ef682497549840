"""The chat socket: a user sends a message and the reply streams back as HTML fragments (htmx ws)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from accounts.signals import user_group
from billing.limits import LimitExceeded

from . import conversations
from .catalogue.lookup import UnknownModel, active_model
from .conversations import MAX_MESSAGE_CHARS, Exchange
from .gateway.providers.base import ProviderError
from .models import Conversation, Message

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class ChatConsumer(AsyncWebsocketConsumer):
    """The socket of one conversation, or (at /ws/chat/new/) of the one its first message creates."""

    conversation: Conversation | None = None
    reply_task: asyncio.Task | None = None

    async def connect(self):
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
            self.conversation = conversation
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.stop_reply()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def session_logout(self, event):
        await self.stop_reply()  # the user left: the reply is no longer theirs to receive
        await self.close()

    async def receive(self, text_data=None, bytes_data=None):
        try:
            data = json.loads(text_data or "{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            await self.send_error("That message could not be read.")
            return
        action = data.get("action", "send")
        if action == "stop":
            await self.stop_reply()
        elif self.reply_task is not None and not self.reply_task.done():
            await self.send_error("A reply is still being written. Stop it or wait for it to finish.")
        elif action == "send":
            await self.send_message(
                str(data.get("message", "")), str(data.get("model", "")), str(data.get("draft", ""))
            )
        elif action == "regenerate":
            await self.regenerate(str(data.get("model", "")))
        else:
            await self.send_error(f"Unknown action: {action}")

    async def send_message(self, text: str, model_slug: str, draft: str = ""):
        text = text.strip()
        if not text:
            await self.send_error("Write a message first.")
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await self.send_error(
                f"That message is too long ({len(text)} characters; the limit is {MAX_MESSAGE_CHARS})."
            )
            return
        try:
            model = await database_sync_to_async(active_model)(model_slug)
        except UnknownModel as exc:
            await self.send_error(str(exc))
            return
        new_conversation = self.conversation is None
        exchange = await conversations.start_exchange(
            user=self.scope["user"], conversation=self.conversation, text=text, model=model
        )
        self.conversation = exchange.conversation
        fragments = render_to_string(
            "chat/_exchange_start.html",
            {
                "user_message": exchange.user_message,
                "reply": exchange.reply,
                "conversation": self.conversation,
                "title_changed": exchange.title_changed,
                "new_conversation": new_conversation,
            },
        )
        # Only now may the page empty its composer: a refused message stays there to be sent again.
        await self.send(text_data=fragments + render_to_string("chat/_composer_ack.html", {"draft": draft}))
        self.start_reply(exchange)

    async def regenerate(self, model_slug: str):
        if self.conversation is None:
            await self.send_error("There is no message to answer yet.")
            return
        try:
            model = await database_sync_to_async(active_model)(model_slug)
        except UnknownModel as exc:
            await self.send_error(str(exc))
            return
        exchange = await conversations.restart_exchange(
            user=self.scope["user"], conversation=self.conversation, model=model
        )
        if exchange is None:
            await self.send_error("There is no message to answer yet.")
            return
        context = {"replaced_id": exchange.replaced_id, "reply": exchange.reply}
        await self.send(text_data=render_to_string("chat/_regenerate_start.html", context))
        self.start_reply(exchange)

    def start_reply(self, exchange: Exchange):
        self.reply_task = asyncio.create_task(self.stream_reply(exchange))

    async def stop_reply(self):
        task, self.reply_task = self.reply_task, None
        if task is not None and not task.done():
            task.cancel()  # once: cancelling twice can leak the pooled upstream connection
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stream_reply(self, exchange: Exchange):
        reply, generation = exchange.reply, exchange.generation
        delta_prefix = f'<span id="reply-{reply.pk}" hx-swap-oob="beforeend">'
        limit = None
        try:
            await generation.stream(lambda delta: self.send(text_data=delta_prefix + html.escape(delta) + "</span>"))
        except ProviderError:
            pass  # recorded on the reply by the generation; shown by the final fragment below
        except LimitExceeded as exc:  # refused by the plan before any upstream call: the reply says why
            limit = exc
        except Exception:
            logger.exception("reply %s failed", reply.pk)
            await conversations.fail_reply(reply, "something went wrong on our side")
        finally:
            await self.send_final(reply, limit)

    async def send_final(self, reply: Message, limit: LimitExceeded | None = None):
        reply = await Message.objects.select_related("model", "usage").aget(pk=reply.pk)
        context = {"reply": reply, "upgrade_url": limit.upgrade_url if limit else None}
        with contextlib.suppress(Exception):  # the socket may be gone (disconnect): the reply is saved
            await self.send(text_data=render_to_string("chat/_exchange_end.html", context))

    async def send_error(self, text: str):
        await self.send(text_data=render_to_string("chat/_error.html", {"error": text}))
