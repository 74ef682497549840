"""Limits seen from outside: two server processes sharing the database (and Redis), the chat socket
and the API refusing a spent quota, and 50 concurrent requests against a $1 budget."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection, connections
from django.test import AsyncClient

from accounts.api_keys import issue_key
from aihub.asgi import application
from aihub.testing import session_cookie_header, wait_for
from billing import rollups
from billing.limits import LimitExceeded
from billing.models import Reservation, UsageRecord
from chat.models import Conversation, Message

from .conftest import generation

pytestmark = pytest.mark.django_db(transaction=True)

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="several processes or threads need a shared PostgreSQL database"
)


async def fire(urls: list[str], raw_key: str, model_slug: str, count: int) -> list[httpx.Response]:
    """`count` requests at once, spread over the servers."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{urls[n % len(urls)]}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {raw_key}"},
                    json={"model": model_slug, "messages": [{"role": "user", "content": "Say hello"}]},
                )
                for n in range(count)
            )
        )


@needs_postgresql
@pytest.mark.parametrize("limiter", ["database", "redis"])
def test_with_rpm_5_exactly_5_of_20_simultaneous_requests_pass_across_two_processes(
    limiter, servers, make_plan, subscriber, make_model
):
    if limiter == "redis" and not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    person = subscriber(make_plan(requests_per_minute=5))
    model = make_model()
    _, raw_key = issue_key(person, "load test")
    urls = servers(2, settings.REDIS_URL if limiter == "redis" else "")

    responses = async_to_sync(fire)(urls, raw_key, model.slug, 20)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429] * 15
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in refused)
    # A completion's row follows its response, released with its reservation in one transaction.
    assert wait_for(lambda: not Reservation.objects.exists(), 5)
    assert UsageRecord.objects.filter(user=person).count() == 5


@needs_postgresql
def test_a_key_budget_holds_for_20_simultaneous_requests_across_two_processes_and_blocks_only_that_key(
    servers, make_plan, subscriber, make_model
):
    person = subscriber(make_plan())
    # max_tokens=8: each request reserves 18 tokens at $5000/1M = $0.09 (its prompt counted with the tokenizer
    # margin, and 8) and costs the 17 the fake upstream reports, $0.085. $0.36 holds 4 reservations, and once
    # 4 requests are reserved or settled (at least $0.34) a fifth ($0.09) never fits, however they interleave.
    model = make_model(price_in="5000", price_out="5000")
    capped, raw_capped = issue_key(person, "capped", monthly_budget=Decimal("0.36"))
    _, raw_free = issue_key(person, "uncapped")
    urls = servers(2, settings.REDIS_URL)

    async def both():
        async with httpx.AsyncClient(timeout=30) as client:

            def ask(n, key):
                return client.post(
                    f"{urls[n % 2]}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"model": model.slug, "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello"}]},
                )

            capped_answers = await asyncio.gather(*(ask(n, raw_capped) for n in range(20)))
            return capped_answers, await ask(0, raw_free)

    capped_answers, uncapped = async_to_sync(both)()
    assert sorted(r.status_code for r in capped_answers) == [200] * 4 + [429] * 16
    assert {r.json()["error"]["code"] for r in capped_answers if r.status_code == 429} == {"budget_exceeded"}
    assert wait_for(lambda: not Reservation.objects.exists(), 5)  # every row written (they follow the responses)
    assert sum(UsageRecord.objects.filter(api_key=capped).values_list("cost", flat=True)) == Decimal("0.34")
    assert uncapped.status_code == 200


@pytest.fixture
def spent(make_plan, subscriber, make_model):
    """A person whose monthly token quota is used up, with an API key and a conversation."""
    person = subscriber(make_plan(monthly_token_quota=1000))
    model = make_model()
    UsageRecord.objects.create(
        user=person,
        model=model,
        model_slug=model.slug,
        provider=model.provider,
        prompt_tokens=600,
        completion_tokens=400,
        cost=Decimal("0.001"),
        status="complete",
    )
    rollups.rebuild()  # written here, not by metering: its rollups too
    return person, model


async def test_a_spent_quota_blocks_the_chat_page_and_the_api(spent, upstream):
    from channels.db import database_sync_to_async

    person, model = spent
    conversation = await Conversation.objects.acreate(user=person, title="Over quota")
    _, raw_key = await database_sync_to_async(issue_key)(person, "blocked")
    cookie = await database_sync_to_async(session_cookie_header)(person)
    socket_ = WebsocketCommunicator(
        application, f"/ws/chat/{conversation.pk}/", headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
    )
    assert (await socket_.connect())[0]
    await socket_.send_json_to({"action": "send", "message": "Hello?", "model": model.slug})
    frames = []
    while 'class="chat-status"' not in (frames[-1] if frames else ""):
        frames.append(await socket_.receive_from(timeout=10))
    await socket_.disconnect()
    final = frames[-1]
    assert "monthly quota" in final and "/billing/" in final and 'role="alert"' in final
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "failed" and "monthly quota" in reply.error

    response = await AsyncClient().post(
        "/v1/chat/completions",
        {"model": model.slug, "messages": [{"role": "user", "content": "Hello?"}]},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert upstream.requests == []
    assert await UsageRecord.objects.filter(user=person).acount() == 1  # only the seeded row


@needs_postgresql
@pytest.mark.parametrize("limit", ["key budget", "plan credit"])
def test_50_concurrent_requests_never_spend_more_than_a_1_dollar_budget(
    limit, make_plan, subscriber, make_model, make_key
):
    person = subscriber(make_plan(monthly_credit_quota=Decimal("1") if limit == "plan credit" else None))
    api_key = make_key(person, budget="1" if limit == "key budget" else None)
    # The fake upstream reports 11 + 6 tokens; with max_tokens=8 the worst case reserved is the same 17
    # tokens: each request costs exactly $0.085, so $1 pays for 11 of the 50 and not one more.
    model = make_model(price_in="5000", price_out="5000")
    start = threading.Barrier(50)
    outcomes: list[str] = []

    def one_request():
        try:
            start.wait()
            async_to_sync(generation(person, model, api_key=api_key, params={"max_tokens": 8}).complete)()
            outcomes.append("ok")
        except LimitExceeded as exc:
            outcomes.append(exc.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_request) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    spent = sum(UsageRecord.objects.filter(user=person).values_list("cost", flat=True))
    expected_code = "budget_exceeded" if limit == "key budget" else "insufficient_quota"
    assert len(outcomes) == 50 and set(outcomes) == {"ok", expected_code}
    assert spent <= Decimal("1")
    assert outcomes.count("ok") == UsageRecord.objects.filter(user=person).count() == 11
    assert not Reservation.objects.exists()
