"""Conversation titles written by a free model. A new conversation is first titled with its first message
cut short (conversations.title_from); once its first reply is complete, a free model ('auto', as the
catalogue picks it, or settings.CHAT_TITLE_MODEL) is asked for a short title, in the background of the
reply's writer. That request is metered and limited like any other (its usage row says purpose=title);
when the plan refuses it or no model answers, the cut first message stays."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from django.conf import settings

from billing.limits import LimitExceeded
from billing.models import UsageRecord

from .catalogue.lookup import UnknownModel, active_model
from .gateway.generation import Generation
from .gateway.providers.base import ProviderError
from .models import Conversation

logger = logging.getLogger(__name__)

INSTRUCTION = (
    "Write a title of at most six words for the conversation below. Answer with the title only: "
    "no quotes, no full stop, no preamble."
)
# What of the conversation the title model reads (characters of the message and of the reply).
MESSAGE_CHARS = 1500
REPLY_CHARS = 500
MAX_TITLE_TOKENS = 24
MAX_TITLE_CHARS = 80


def title_request(message: str, reply: str) -> list[dict]:
    return [
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": f"Message: {message[:MESSAGE_CHARS]}\n\nReply: {reply[:REPLY_CHARS]}"},
    ]


def clean_title(text: str) -> str:
    """The model's answer as a title: its first non-empty line, without quotes, a 'Title:' label, Markdown
    emphasis or a final full stop; cut at a word when too long. Empty when nothing is left."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = " ".join(line.replace("*", "").replace("#", "").split())
    if line.lower().startswith("title:"):
        line = line[len("title:") :].strip()
    line = line.strip("\"'“”‘’` ").rstrip(".").strip()
    if len(line) > MAX_TITLE_CHARS:
        line = line[:MAX_TITLE_CHARS].rsplit(" ", 1)[0] + "…"
    return line


def enabled() -> bool:
    return bool(settings.CHAT_TITLE_MODEL)


async def write_title(conversation_id: int, *, user, message: str, reply: str, cut_title: str) -> str | None:
    """Ask a free model for the conversation's title and store it, unless the owner renamed the conversation
    meanwhile. Returns the title, or None when the cut first message stays (refused, failed, empty answer,
    renamed)."""
    try:
        model = await database_sync_to_async(active_model)(settings.CHAT_TITLE_MODEL)
    except UnknownModel:
        logger.warning("CHAT_TITLE_MODEL %r is not in the catalogue: 'auto' writes titles", settings.CHAT_TITLE_MODEL)
        model = None
    if model is not None and not model.is_free:
        model = None  # titles are never charged for: a priced model set by mistake is replaced by 'auto'
    generation = Generation(
        user=user,
        model=model,
        messages=title_request(message, reply),
        params={"max_tokens": MAX_TITLE_TOKENS, "temperature": 0.3},
        purpose=UsageRecord.Purpose.TITLE,
    )
    try:
        title = clean_title(await generation.complete())
    except (LimitExceeded, ProviderError) as exc:
        logger.info("conversation %s: no title written (%s); the first message stays", conversation_id, exc)
        return None
    if not title:
        return None
    # Only over the cut first message: a rename made while the title was being written wins.
    stored = await Conversation.objects.filter(pk=conversation_id, title=cut_title).aupdate(title=title)
    return title if stored else None
