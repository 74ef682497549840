"""Sixty exchanges with the real local model through the chat socket: the history outgrows the context
many times over, every reply still completes, the model never gets more than its context, and the page
marks where the history sent starts. Replies are short (a plan capping them) to keep the run cheap."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async

from billing.metering import count_text_tokens
from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.gateway.providers.local import MODEL_ID
from chat.models import AIModel, Message, Provider
from chat.tests.test_consumer import (  # noqa: F401  (fixtures)
    connect,
    conversation,
    receive_until_final,
    send,
    session_cookie,
)

# About 5 CPU-minutes: twice that on a busy machine.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.django_db(transaction=True),
]

EXCHANGES = 60
CONTEXT = 1024
REPLY_TOKENS = 12
TOPICS = ["harbour", "orchard", "glacier", "market", "library", "volcano", "river", "bakery", "comet", "forest"]


def question(n: int) -> str:
    """About 170 tokens, different every turn (so the model's prompt cache cannot cover it)."""
    topic = TOPICS[n % len(TOPICS)]
    return f"Question {n} about the {topic}: " + " ".join(
        f"describe the {topic} at hour {hour} of day {n} in plain words;" for hour in range(12)
    )


@pytest.fixture
def local_model(settings, user):
    settings.LOCAL_MODEL_ENABLED = True
    settings.LOCAL_MODEL_CONTEXT = CONTEXT
    short_replies = Plan.objects.create(slug="short-replies", name="Short replies", max_output_tokens=REPLY_TOKENS)
    start_subscription(user, short_replies)
    return AIModel.objects.create(slug="local/smollm2-1k", provider=Provider.LOCAL, upstream_id=MODEL_ID, name="S")


async def test_sixty_exchanges_past_ten_thousand_tokens_all_complete_within_the_context(
    local_model, connect, conversation, session_cookie
):
    communicator, connected, _ = await connect(conversation.pk)
    assert connected
    started = time.monotonic()
    for n in range(EXCHANGES):
        await send(communicator, question(n), local_model.slug)
        await receive_until_final(communicator, timeout=120)
    took = time.monotonic() - started

    messages = [m async for m in Message.objects.filter(conversation=conversation).order_by("pk")]
    replies = [m for m in messages if m.role == Message.Role.ASSISTANT]
    assert len(replies) == EXCHANGES
    assert [r.status for r in replies] == [Message.Status.COMPLETE] * EXCHANGES, [r.error for r in replies]
    assert sum(count_text_tokens(m.content) for m in messages) > 10_000
    usage = [u async for u in UsageRecord.objects.filter(user_id=conversation.user_id).order_by("pk")]
    assert len(usage) == EXCHANGES
    # As the model itself counted them: no request (prompt and reply) was larger than its context.
    sizes = [u.prompt_tokens + u.completion_tokens for u in usage]
    assert max(sizes) <= CONTEXT, sizes
    assert replies[-1].first_sent_id is not None  # the last request left the oldest history out
    print(f"{EXCHANGES} exchanges on the local model in {took:.1f} s; largest request {max(sizes)} tokens")

    client, _ = session_cookie
    html = (await sync_to_async(client.get)(f"/chat/{conversation.pk}/")).content.decode()
    assert 'id="context-marker"' in html
