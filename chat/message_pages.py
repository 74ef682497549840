"""A page of a conversation's messages: the newest of the path shown (the chat page, the sockets re-showing
it after an edit or a switch of branch), or an older page as the reader scrolls up."""

from __future__ import annotations

from .models import Conversation, Message

# Messages a conversation page starts with; older ones load as the reader scrolls up (views.older_messages).
MESSAGES_PER_PAGE = 50


def message_page(conversation: Conversation, before: int | None = None) -> dict:
    """The newest MESSAGES_PER_PAGE messages of the path shown (older than `before`, when given), oldest
    first, each with its `version_count` and `version_number` (‹ n/m ›); and where the context marker goes:
    before the oldest message sent with the latest reply, when older ones were left out (chat.context_window)."""
    path = conversation.messages.on_path()
    newest_first = (
        path.with_versions().select_related("model", "usage").prefetch_related("usage__attempts", "attachments")
    )
    newest_first = newest_first.order_by("-id")
    if before is not None:
        newest_first = newest_first.filter(id__lt=before)
    rows = list(newest_first[: MESSAGES_PER_PAGE + 1])
    latest_reply = path.filter(role=Message.Role.ASSISTANT).order_by("-id")
    return {
        "conversation": conversation,
        "chat_messages": rows[:MESSAGES_PER_PAGE][::-1],
        "has_older": len(rows) > MESSAGES_PER_PAGE,
        "first_sent_id": latest_reply.values_list("first_sent_id", flat=True).first(),
    }
