"""The sidebar's list of conversations: pinned first, then Today / Yesterday / Previous 7 days / Older;
archived ones apart; and search results, each with an excerpt of the message that matched (the link opens
the conversation at it). One query a page, whatever its length."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Exists, F, JSONField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Greatest, JSONObject, Lower, StrIndex, Substr
from django.utils import timezone

from .models import Conversation, Message

# The excerpt of a matching message: this many characters before the match, and in all.
EXCERPT_LEAD = 50
EXCERPT_CHARS = 160

GROUP_LABELS = {
    "pinned": "Pinned",
    "today": "Today",
    "yesterday": "Yesterday",
    "week": "Previous 7 days",
    "older": "Older",
}


def listed(user, *, query: str = "", archived: bool = False) -> QuerySet[Conversation]:
    """The owner's conversations for the sidebar: unarchived (or, with `archived`, archived) ones, pinned first,
    most recent first; with a query, every conversation whose title or a message contains it, most recent
    first, each with `hit` (the first matching message: its id, where the match starts, an excerpt)."""
    rows = Conversation.objects.filter(user=user).only("id", "title", "updated_at", "pinned", "archived")
    if not query:
        return rows.filter(archived=archived).order_by("-pinned", "-updated_at", "-id")
    # The excerpt is of the first match on the branch shown, when there is one (the link opens at it there).
    matching = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query).order_by("-on_path", "id")
    at = StrIndex(Lower("content"), Lower(Value(query)))
    around = Substr("content", Greatest(F("at") - EXCERPT_LEAD, 1), EXCERPT_CHARS)
    hit = matching.annotate(at=at).values(json=JSONObject(id="id", at=F("at"), excerpt=around))
    rows = rows.filter(Q(title__icontains=query) | Exists(matching))
    return rows.annotate(hit=Subquery(hit[:1], output_field=JSONField())).order_by("-updated_at", "-id")


@dataclass
class Excerpt:
    """A matching message's text around the match, the match apart (for <mark>)."""

    before: str
    match: str
    after: str
    message_id: int


def excerpt(hit: dict | None, query: str) -> Excerpt | None:
    if not hit:
        return None
    text = " ".join(str(hit["excerpt"]).split())
    start = text.lower().find(query.lower())
    if start < 0:  # the database's and Python's case folding disagree: show the text without a mark
        return Excerpt(text + "…", "", "", hit["id"])
    before = ("…" if hit["at"] > EXCERPT_LEAD + 1 else "") + text[:start]
    end = start + len(query)
    return Excerpt(before, text[start:end], text[end:] + "…", hit["id"])


def group_of(conversation: Conversation, today: date) -> str:
    if conversation.pinned and not conversation.archived:
        return "pinned"
    day = timezone.localdate(conversation.updated_at)
    if day >= today:
        return "today"
    if day == today - timedelta(days=1):
        return "yesterday"
    if day >= today - timedelta(days=7):
        return "week"
    return "older"


@dataclass
class Entry:
    item: Conversation | None  # None: the Today heading alone (a new conversation goes under it)
    group: str
    heading: str | None  # shown above the first conversation of each group
    hit: Excerpt | None = None


def entries(conversations, *, query: str = "", first_page: bool = True, after_group: str = "") -> list[Entry]:
    """The page's conversations with their group headings (none in search results); `after_group`: the group
    of the previous page's last conversation, whose heading is not repeated. The first page always has the
    Today heading, after the pinned ones: a conversation started in the page is put under it (the page hides
    a heading with nothing under it)."""
    today = timezone.localdate()
    found: list[Entry] = []
    previous = after_group
    for item in conversations:
        if query:
            found.append(Entry(item, "", None, excerpt(getattr(item, "hit", None), query)))
            continue
        group = group_of(item, today)
        if first_page and previous in ("", "pinned") and group not in ("pinned", "today"):
            found.append(Entry(None, "today", GROUP_LABELS["today"]))
        found.append(Entry(item, group, GROUP_LABELS[group] if group != previous else None))
        previous = group
    if first_page and not query and previous in ("", "pinned"):
        found.append(Entry(None, "today", GROUP_LABELS["today"]))
    return found
