"""A reply with "Search the web" on: the user's message is searched, the results go to the model as
numbered sources (a system message before that message) and are stored with the reply. A search that
is refused, fails or times out leaves a note on the reply, and the reply goes on without it."""

from __future__ import annotations

import asyncio

from billing.limits import LimitExceeded

from .gateway import search
from .models import Message


async def add_web_sources(*, user, reply: Message, query: str, history: list[dict]) -> list[dict]:
    """The history with the sources inserted before the last user message; sources and note stored."""
    sources, note = [], ""
    try:
        results = await search.web_search(user=user, query=query)
    except LimitExceeded as exc:
        note = f"Web search skipped: {exc} This reply was written without it."
    except asyncio.CancelledError:  # stopped while searching: the generation never ran to record it
        await Message.objects.filter(pk=reply.pk, status=Message.Status.STREAMING).aupdate(
            status=Message.Status.STOPPED
        )
        raise
    except (search.SearchFailed, search.SearchUnavailable) as exc:
        note = f"Web search failed ({exc}); this reply was written without it."
    else:
        sources = [result.as_dict() for result in results]
        if not sources:
            note = "Web search found nothing for this message."
    reply.sources, reply.search_note = sources, note
    await Message.objects.filter(pk=reply.pk).aupdate(sources=sources, search_note=note)
    if not sources:
        return history
    last_user = max((i for i, m in enumerate(history) if m["role"] == "user"), default=len(history))
    prompt = {"role": "system", "content": search.sources_prompt(sources)}
    return [*history[:last_user], prompt, *history[last_user:]]
