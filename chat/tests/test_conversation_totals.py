"""Conversation totals (the chat header, /api/v1/sessions) are the sum of the conversation's usage rows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from aihub.asgi import application
from aihub.testing import session_cookie_header
from billing.models import UsageRecord
from chat.models import Conversation, Message
from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


async def socket_exchange(user, conversation_id: int, message: str, model: str) -> list[str]:
    """Send a message on the chat socket as `user`; the frames up to the end of the exchange."""
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation_id}/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", await sync_to_async(session_cookie_header)(user))],
    )
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"action": "send", "message": message, "model": model})
    frames = []
    while "conversation-totals" not in "".join(frames):  # the last fragment of an exchange
        frames.append(await communicator.receive_from(timeout=10))
    await communicator.disconnect()
    return frames


async def exchange(api_client, message: str, model: str, session_id: int | None = None) -> dict:
    body = {"message": message, "model": model}
    if session_id is not None:
        body["session_id"] = session_id
    return (await api_client.post("/api/v1/chat/completions", body)).json()


def sums_of_rows(conversation_id: int) -> dict:
    """Summed here, row by row: the usage rows of the conversation's replies (joined by request id)."""
    request_ids = Message.objects.filter(conversation_id=conversation_id).values("usage_id")
    rows = list(UsageRecord.objects.filter(request_id__in=request_ids))
    return {
        "requests": len(rows),
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        "total_tokens": sum(r.total_tokens for r in rows),
        "cost_usd": f"{sum((r.cost for r in rows), Decimal(0)).quantize(Decimal('0.00000001')):f}",
    }


async def test_session_totals_are_the_sum_of_their_usage_rows(api_client, catalogue, user):
    first = (await exchange(api_client, "One", "test/fake-model"))["session_id"]
    await exchange(api_client, "Two", "test/fake-model", first)
    await exchange(api_client, "Three", "test/no-usage", first)  # counted here, not by the upstream
    await exchange(api_client, "Four", "test/fail-500", first)  # failed: a row of its own, no tokens
    other = (await exchange(api_client, "Elsewhere", "test/fake-model"))["session_id"]
    empty = await Conversation.objects.acreate(user=user)

    listed = {s["id"]: s["totals"] for s in (await api_client.get("/api/v1/sessions")).json()["data"]}
    detail = (await api_client.get(f"/api/v1/sessions/{first}")).json()["totals"]

    expected = await sync_to_async(sums_of_rows)(first)
    assert expected["requests"] == 4 and expected["total_tokens"] > 0
    assert listed[first] == detail == expected
    assert listed[other] == await sync_to_async(sums_of_rows)(other)
    assert listed[empty.pk] == {
        "requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cost_usd": "0.00000000",
    }


async def test_the_chat_header_shows_the_totals_and_updates_them_after_a_reply(api_client, catalogue, user, logged_in):
    session = (await exchange(api_client, "One", "test/fake-model"))["session_id"]
    page = (await sync_to_async(logged_in.get)(f"/chat/{session}/")).content.decode()
    assert '<span id="conversation-totals"' in page
    assert "17 tokens · $0.0000285<" in page  # 11 + 6 tokens at $1.50 / $2.00 per 1M

    frames = await socket_exchange(user, session, "Two", "test/fake-model")

    assert "34 tokens · $0.000057" in frames[-1]
