"""A page of a conversation's messages: the newest of the path shown (the chat page, the sockets re-showing
it after an edit or a switch of branch), or an older page as the reader scrolls up."""

from __future__ import annotations

from .models import Conversation, Message

# Messages a conversation page starts with; older ones load as the reader scrolls up (views.older_messages).
MESSAGES_PER_PAGE = 50
# A conversation opened at a search's match (chat.sidebar) shows every message from it on, up to this many.
MESSAGES_TO_A_MATCH = 500


def message_page(conversation: Conversation, before: int | None = None, reaching: int | None = None) -> dict:
    """The newest MESSAGES_PER_PAGE messages of the path shown (older than `before`, when given; back to the
    message `reaching`, a search's match, when it is older, up to MESSAGES_TO_A_MATCH), oldest first, each
    with its `version_count` and `version_number` (‹ n/m ›); and where the context marker goes:
    before the oldest message sent with the latest reply, when older ones were left out (chat.context_window)."""
    path = conversation.messages.on_path()
    newest_first = (
        path.with_versions().select_related("model", "usage").prefetch_related("usage__attempts", "attachments")
    )
    newest_first = newest_first.order_by("-id")
    if before is not None:
        newest_first = newest_first.filter(id__lt=before)
    size = MESSAGES_PER_PAGE
    if reaching is not None:
        size = min(max(size, path.filter(id__gte=reaching).count()), MESSAGES_TO_A_MATCH)
    rows = list(newest_first[: size + 1])
    latest_reply = path.filter(role=Message.Role.ASSISTANT).order_by("-id")
    return {
        "conversation": conversation,
        "chat_messages": rows[:size][::-1],
        "has_older": len(rows) > size,
        "first_sent_id": latest_reply.values_list("first_sent_id", flat=True).first(),
    }
