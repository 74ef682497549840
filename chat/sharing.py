"""A conversation leaving the app: exports (Markdown, JSON, one ZIP of them all) and the snapshot a
read-only share link shows. An export holds what the owner sees; a share snapshot holds nothing about
the owner (no email, no ids), only the title and the messages as they were when it was shared."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from collections.abc import Iterator

from django.db.models import Prefetch
from django.utils import timezone
from django.utils.text import slugify

from .models import Conversation, Message

EXPORT_FORMAT = "aihub.conversation.v1"
ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


def new_share_token() -> str:
    """256 random bits, URL-safe: the only key to a shared conversation, so it must not be guessable."""
    return secrets.token_urlsafe(32)


def _messages(conversation: Conversation):
    return conversation.messages.on_path().select_related("model").prefetch_related("attachments")


def message_record(message: Message) -> dict:
    return {
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model.slug if message.model else None,
        "model_name": message.model.name if message.model else None,
        "created_at": message.created_at.isoformat(),
        "sources": message.sources,
        "attachments": [{"id": a.pk, "name": a.name, "kind": a.kind} for a in message.attachments.all()],
        "on_path": message.on_path,  # false: an earlier version (edited or regenerated), off the branch shown
    }


def conversation_record(conversation: Conversation, messages=None) -> dict:
    """The conversation as the JSON export holds it (`messages`: already fetched ones, else queried)."""
    messages = _messages(conversation) if messages is None else messages
    return {
        "format": EXPORT_FORMAT,
        "id": conversation.pk,
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": [message_record(m) for m in messages],
    }


def share_snapshot(conversation: Conversation) -> list[dict]:
    """The messages a share link shows: role, text, model name and time; nothing about the owner."""
    return [
        {
            "role": m["role"],
            "content": m["content"],
            "status": m["status"],
            "model_name": m["model_name"],
            "created_at": m["created_at"],
            "sources": m["sources"],
            "attachments": m["attachments"],
        }
        for m in conversation_record(conversation)["messages"]
    ]


def to_markdown(record: dict) -> str:
    """A conversation record as Markdown: the title, then one '## ' section per message."""
    lines = [f"# {record['title']}", "", f"Exported from AI Hub on {timezone.now():%Y-%m-%d %H:%M} UTC.", ""]
    for message in record["messages"]:
        heading = ROLE_HEADINGS.get(message["role"], message["role"])
        if message["role"] == "assistant" and message.get("model_name"):
            heading += f" ({message['model_name']})"
        if message.get("on_path") is False:
            heading += " (an earlier version, not on the branch shown)"
        lines += [f"## {heading}", "", f"*{message['created_at']}*", "", message["content"], ""]
        if message.get("attachments"):
            lines += ["Attached: " + ", ".join(a["name"] for a in message["attachments"]), ""]
        if message.get("sources"):
            lines += ["Sources:", ""]
            lines += [f"{n}. [{s['title']}]({s['url']})" for n, s in enumerate(message["sources"], 1)] + [""]
        if message.get("status") in ("stopped", "failed"):
            lines += [f"*(reply {message['status']})*", ""]
    return "\n".join(lines)


def shared_attachment_ids(link) -> set[int]:
    """The attachments a share link shows (those of its snapshot's messages)."""
    return {a["id"] for m in link.snapshot for a in m.get("attachments", [])}


def export_filename(conversation: Conversation, extension: str) -> str:
    return f"{conversation.pk}-{slugify(conversation.title)[:50] or 'chat'}.{extension}"


def conversation_files(user) -> Iterator[tuple[str, str]]:
    """Each of a user's conversations as Markdown and as JSON: (path, text) pairs, in a few queries. Every
    message is there, those of the branches not shown too (marked), unlike the export of one conversation."""
    conversations = Conversation.objects.filter(user=user).prefetch_related(
        Prefetch("messages", queryset=Message.objects.select_related("model").prefetch_related("attachments"))
    )
    for conversation in conversations:
        record = conversation_record(conversation, conversation.messages.all())
        yield f"markdown/{export_filename(conversation, 'md')}", to_markdown(record)
        yield f"json/{export_filename(conversation, 'json')}", json.dumps(record, indent=2)


def user_archive(user) -> bytes:
    """All of a user's conversations as one ZIP."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in conversation_files(user):
            archive.writestr(path, text)
    return buffer.getvalue()
