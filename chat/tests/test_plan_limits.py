"""Each limit of a plan, enforced by admission before any upstream call (through Generation)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing import rollups
from billing.limits import LimitExceeded
from billing.metering import count_prompt_tokens, reserved_prompt_tokens
from billing.models import Plan, Reservation, UsageRecord
from billing.subscriptions import current_subscription
from chat.gateway.providers.base import ProviderError

from .conftest import SAY_HELLO, generation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["database", "redis"])
def limiter(request, settings):
    """Rate limits kept in database rows, and (when REDIS_URL is set) in Redis."""
    if request.param == "database":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    return request.param


def ask(owner, model, **kwargs) -> str:
    return async_to_sync(generation(owner, model, **kwargs).complete)()


def refusal(owner, model, **kwargs) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        ask(owner, model, **kwargs)
    return caught.value


def test_it_refuses_a_paid_model_on_the_free_plan_before_calling_upstream(subscriber, make_model, upstream):
    person = subscriber(Plan.objects.get(slug="free"))
    exc = refusal(person, make_model(price_in="0.15"))
    assert (exc.code, exc.http_status, exc.retry_after) == ("model_not_allowed", 403, None)
    assert "free models only" in str(exc) and "/billing/" in str(exc)
    assert upstream.requests == []
    assert not UsageRecord.objects.exists() and not Reservation.objects.exists()


def test_a_free_model_on_the_free_plan_never_falls_back_to_a_paid_one(subscriber, make_model, upstream):
    person = subscriber(Plan.objects.get(slug="free"))
    free = make_model("fail-500", price_in="0", price_out="0", fallback=make_model("fake-model"))
    with pytest.raises(ProviderError):
        ask(person, free)
    assert [r["body"]["model"] for r in upstream.requests] == ["fail-500"]


def test_it_clamps_max_tokens_to_the_plan_cap_and_sends_the_cap_when_none_is_asked(
    make_plan, subscriber, make_model, upstream
):
    person = subscriber(make_plan(max_output_tokens=100))
    model = make_model()
    ask(person, model, params={"max_tokens": 5000})
    ask(person, model)
    ask(person, model, params={"max_tokens": 40})
    assert [r["body"]["max_tokens"] for r in upstream.requests] == [100, 100, 40]


def test_requests_per_minute_hold_and_refusals_use_up_nothing(limiter, make_plan, subscriber, make_model, upstream):
    person = subscriber(make_plan(requests_per_minute=3))
    model = make_model()
    for _ in range(3):
        ask(person, model)
    exc = refusal(person, model)
    assert (exc.code, exc.http_status) == ("rate_limit_exceeded", 429)
    assert 1 <= exc.retry_after <= 20  # one request frees up every 60/3 seconds
    assert f"Try again in {exc.retry_after} second" in str(exc)
    assert len(upstream.requests) == 3
    assert UsageRecord.objects.filter(user=person).count() == 3
    assert not Reservation.objects.exists()


def test_tokens_per_minute_count_the_worst_case_of_each_request(limiter, make_plan, subscriber, make_model):
    prompt = reserved_prompt_tokens(count_prompt_tokens(SAY_HELLO))  # the tokenizer margin included
    worst, small = prompt + 50, prompt + 1
    person = subscriber(make_plan(tokens_per_minute=worst * 2 + small))
    model = make_model()
    ask(person, model, params={"max_tokens": 50})
    ask(person, model, params={"max_tokens": 50})
    exc = refusal(person, model, params={"max_tokens": 50})
    assert exc.code == "rate_limit_exceeded" and exc.retry_after >= 1
    ask(person, model, params={"max_tokens": 1})  # a smaller request still fits what is left


def test_a_request_larger_than_the_tokens_per_minute_is_refused_for_good(make_plan, subscriber, make_model, upstream):
    person = subscriber(make_plan(tokens_per_minute=100))
    exc = refusal(person, make_model(), params={"max_tokens": 500})
    assert exc.code == "rate_limit_exceeded" and exc.retry_after is None
    assert "lower max_tokens" in str(exc)
    assert upstream.requests == []


def test_rate_limits_of_one_user_do_not_touch_another(limiter, make_plan, subscriber, make_model):
    plan = make_plan(requests_per_minute=1)
    first, second = subscriber(plan), subscriber(plan)
    model = make_model()
    ask(first, model)
    assert refusal(first, model).code == "rate_limit_exceeded"
    ask(second, model)


def test_each_api_key_and_the_account_have_their_own_rate_limit(limiter, make_plan, subscriber, make_model, make_key):
    person = subscriber(make_plan(requests_per_minute=2))
    model = make_model()
    ask(person, model, api_key=make_key(person))
    ask(person, model)  # the chat page: the same account
    exc = refusal(person, model, api_key=make_key(person))
    assert exc.code == "rate_limit_exceeded"  # the account's two requests are used, whichever key


async def test_concurrent_streams_are_limited_and_a_finished_stream_frees_its_slot(
    make_plan, subscriber, make_model, upstream
):
    from channels.db import database_sync_to_async

    person = await database_sync_to_async(subscriber)(await database_sync_to_async(make_plan)(max_concurrent_streams=1))
    slow, quick = await database_sync_to_async(make_model)("slow"), await database_sync_to_async(make_model)()
    first_delta = asyncio.Event()

    async def on_delta(delta):
        first_delta.set()

    streaming = asyncio.create_task(generation(person, slow).stream(on_delta))
    await asyncio.wait_for(first_delta.wait(), 5)
    with pytest.raises(LimitExceeded) as caught:
        await generation(person, quick).complete()
    assert (caught.value.code, caught.value.http_status) == ("too_many_streams", 429)
    streaming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await streaming
    assert await generation(person, quick).complete()
    assert await Reservation.objects.acount() == 0
    statuses = sorted([s async for s in UsageRecord.objects.values_list("status", flat=True)])
    assert statuses == ["complete", "stopped"]  # the refused request left no row


def test_the_monthly_token_quota_blocks_once_the_next_worst_case_does_not_fit(
    make_plan, subscriber, make_model, upstream
):
    worst = reserved_prompt_tokens(count_prompt_tokens(SAY_HELLO)) + 50  # the tokenizer margin included
    person = subscriber(make_plan(monthly_token_quota=worst + 10, max_output_tokens=50))
    model = make_model()
    ask(person, model)  # the fake upstream reports 11 + 6 tokens
    exc = refusal(person, model)
    assert (exc.code, exc.http_status, exc.retry_after) == ("insufficient_quota", 429, None)
    assert "monthly quota" in str(exc) and "/billing/" in str(exc)
    assert "renews on" in str(exc)
    assert len(upstream.requests) == 1 and UsageRecord.objects.count() == 1


def test_the_monthly_credit_is_never_overspent(make_plan, subscriber, make_model):
    person = subscriber(make_plan(monthly_credit_quota=Decimal("0.10"), max_output_tokens=50))
    model = make_model(price_in="1000", price_out="1000")
    with pytest.raises(LimitExceeded) as caught:
        for _ in range(20):
            ask(person, model)
    assert caught.value.code == "insufficient_quota"
    spent = sum(UsageRecord.objects.values_list("cost", flat=True))
    assert Decimal("0.05") < spent <= Decimal("0.10")


def test_a_key_budget_blocks_only_that_key(make_plan, subscriber, make_model, make_key):
    person = subscriber(make_plan())
    model = make_model(price_in="1000", price_out="1000")
    capped, other = make_key(person, budget="0.05"), make_key(person)
    with pytest.raises(LimitExceeded) as caught:
        for _ in range(20):
            ask(person, model, api_key=capped, params={"max_tokens": 10})
    assert caught.value.code == "budget_exceeded" and caught.value.http_status == 429
    assert capped.name in str(caught.value)
    assert sum(UsageRecord.objects.filter(api_key=capped).values_list("cost", flat=True)) <= Decimal("0.05")
    ask(person, model, api_key=other, params={"max_tokens": 10})
    ask(person, model, params={"max_tokens": 10})  # the chat page has no key budget


def test_a_charge_never_exceeds_the_worst_case_reserved_for_it(make_plan, subscriber, make_model):
    person = subscriber(make_plan())
    model = make_model(price_in="1000", price_out="1000")
    worker = generation(person, model, params={"max_tokens": 1})
    async_to_sync(worker.complete)()
    record = UsageRecord.objects.get()
    # The fake upstream reports 11 + 6 tokens although max_tokens was 1: the charge stops at the reservation.
    assert (record.prompt_tokens, record.completion_tokens) == (11, 6)
    reserved = reserved_prompt_tokens(count_prompt_tokens(SAY_HELLO))  # with the tokenizer margin
    assert record.cost == worker.admission.reserved_cost == model.cost(reserved, 1)


def test_a_failed_request_releases_its_reservation_and_charges_nothing(make_plan, subscriber, make_model):
    person = subscriber(make_plan(max_concurrent_streams=1))
    model = make_model("fail-400")
    with pytest.raises(ProviderError):
        ask(person, model)
    record = UsageRecord.objects.get()
    assert (record.status, record.cost, record.prompt_tokens) == ("failed", 0, 0)
    assert not Reservation.objects.exists()
    with pytest.raises(ProviderError):  # the stream slot is free again
        ask(person, model)


def test_a_reservation_left_by_a_dead_process_stops_counting_when_it_expires(make_plan, subscriber, make_model):
    person = subscriber(make_plan(max_concurrent_streams=1))
    model = make_model()
    Reservation.objects.create(user=person, tokens=10, cost=0, expires_at=timezone.now() + timedelta(minutes=5))
    assert refusal(person, model).code == "too_many_streams"
    Reservation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    ask(person, model)
    assert not Reservation.objects.exists()


def test_admission_starts_free_for_a_new_user_and_rolls_an_ended_period(
    django_user_model, make_plan, subscriber, make_model, upstream
):
    model = make_model(price_in="0.15")
    newcomer = django_user_model.objects.create_user("newcomer@example.com", "correct horse battery")
    assert refusal(newcomer, model).code == "model_not_allowed"  # on Free, started on the way
    assert newcomer.subscriptions.get(is_active=True).plan.slug == "free"
    person = subscriber(make_plan(monthly_token_quota=80, max_output_tokens=50))
    ask(person, model)
    ask(person, model)
    assert refusal(person, model).code == "insufficient_quota"
    subscription = person.subscriptions.get(is_active=True)
    ended = subscription.current_period_end = timezone.now() - timedelta(minutes=1)
    subscription.save(update_fields=["current_period_end"])
    UsageRecord.objects.update(created_at=timezone.now() - timedelta(hours=1))
    rollups.rebuild()  # the rows moved in time: their rollups too
    ask(person, model)  # admission rolled the period: the old usage no longer counts
    subscription.refresh_from_db()
    assert subscription.current_period_start == ended and subscription.current_period_end > timezone.now()


def test_usage_of_the_previous_period_does_not_count(make_plan, subscriber, make_model):
    person = subscriber(make_plan(monthly_token_quota=80, max_output_tokens=50))
    model = make_model()
    ask(person, model)
    ask(person, model)
    assert refusal(person, model).code == "insufficient_quota"
    subscription = current_subscription(person)
    UsageRecord.objects.update(created_at=subscription.current_period_start - timedelta(seconds=1))
    rollups.rebuild()  # the rows moved in time: their rollups too
    ask(person, model)
