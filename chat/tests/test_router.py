"""The service router: candidates for a model, fallback before the first token, never after it."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from chat.gateway.providers.base import ProviderError
from chat.gateway.router import NoProviderAvailable, RouteTrail, candidates_for, route_complete, route_stream
from chat.models import AIModel, Provider
from chat.tests.fake_upstream import REPLY_WORDS

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Hi"}]
REPLY = "".join(REPLY_WORDS)


@pytest.fixture
def make_model(upstream):
    async def make(
        slug: str,
        provider: str = Provider.OPENROUTER,
        upstream_id: str = "fake-model",
        *,
        fallback: AIModel | None = None,
        price: str = "0",
        **fields,
    ) -> AIModel:
        return await AIModel.objects.acreate(
            slug=slug,
            provider=provider,
            upstream_id=upstream_id,
            name=slug,
            input_price_per_m=Decimal(price),
            output_price_per_m=Decimal(price),
            fallback=fallback,
            **fields,
        )

    return make


@pytest.fixture
async def gemini_backup(make_model):
    return await make_model("gemini/backup", Provider.GEMINI, "gemini-2.0-flash")


async def candidates(model: AIModel | None) -> list[AIModel]:
    """candidates_for from these async tests: it is sync (it may query the catalogue)."""
    return await database_sync_to_async(candidates_for)(model)


async def stream_all(candidates: list[AIModel]) -> tuple[str, RouteTrail]:
    trail = RouteTrail()
    parts = [delta async for delta in route_stream(candidates, MESSAGES, {}, trail)]
    return "".join(parts), trail


async def stream_failure(model: AIModel) -> ProviderError:
    """The error that streaming through the model's candidates ends with (it must end with one)."""
    with pytest.raises(ProviderError) as caught:
        await stream_all(await candidates(model))
    return caught.value


def outcomes(trail: RouteTrail) -> list[tuple[str, str, int | None]]:
    return [(a.provider, a.outcome, a.http_status) for a in trail.attempts]


# Candidates


async def test_it_follows_the_fallback_chain(make_model):
    last = await make_model("compat/last", Provider.OPENAI_COMPAT)
    middle = await make_model("gemini/middle", Provider.GEMINI, fallback=last)
    first = await make_model("or/first", fallback=middle)

    assert [m.slug for m in await candidates(first)] == ["or/first", "gemini/middle", "compat/last"]


async def test_it_skips_unconfigured_providers_and_inactive_models_in_the_chain(make_model, settings):
    last = await make_model("compat/last", Provider.OPENAI_COMPAT)
    retired = await make_model("or/retired", upstream_id="retired", fallback=last, is_active=False)
    middle = await make_model("gemini/middle", Provider.GEMINI, fallback=retired)
    first = await make_model("or/first", fallback=middle)
    settings.GEMINI_API_KEY = ""

    assert [m.slug for m in await candidates(first)] == ["or/first", "compat/last"]


async def test_it_stops_at_a_fallback_cycle(make_model):
    first = await make_model("or/first")
    second = await make_model("gemini/second", Provider.GEMINI, fallback=first)
    first.fallback = second
    await first.asave(update_fields=["fallback"])

    assert [m.slug for m in await candidates(first)] == ["or/first", "gemini/second"]


async def test_auto_offers_active_free_models_of_configured_providers_by_priority_then_chain(make_model, settings):
    await make_model("compat/free", Provider.OPENAI_COMPAT, auto_priority=20)
    await make_model("or/free", upstream_id="free", auto_priority=20)
    await make_model("gemini/free", Provider.GEMINI, auto_priority=10)
    await make_model("or/paid", upstream_id="paid", price="1", auto_priority=1)
    await make_model("or/retired", upstream_id="retired", auto_priority=1, is_active=False)
    await make_model("local/free", Provider.LOCAL, auto_priority=1)
    settings.LOCAL_MODEL_ENABLED = False

    assert [m.slug for m in await candidates(None)] == ["gemini/free", "or/free", "compat/free"]

    settings.PROVIDER_CHAIN = ["openai_compat", "gemini", "openrouter", "local"]
    assert [m.slug for m in await candidates(None)] == ["gemini/free", "compat/free", "or/free"]


async def test_auto_is_empty_when_no_free_model_is_reachable(make_model, settings):
    await make_model("or/paid", price="2")
    settings.LOCAL_MODEL_ENABLED = False

    assert await candidates(None) == []


# Fallback before the first token


@pytest.mark.parametrize(
    ("failure", "outcome", "status"),
    [
        ("fail-500", "http_500", 500),
        ("fail-429", "http_429", 429),
        ("hang", "timeout", None),
    ],
)
async def test_it_falls_back_to_the_next_provider_before_the_first_token(
    make_model, gemini_backup, settings, failure, outcome, status
):
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    primary = await make_model("or/primary", upstream_id=failure, fallback=gemini_backup)

    text, trail = await stream_all(await candidates(primary))

    assert text == REPLY
    assert outcomes(trail) == [("openrouter", outcome, status), ("gemini", "ok", None)]
    assert trail.model == gemini_backup
    assert trail.end.usage.completion_tokens == 6
    assert all(a.latency_ms >= 0 for a in trail.attempts)


async def test_it_records_how_long_a_timed_out_attempt_took(make_model, gemini_backup, settings):
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    primary = await make_model("or/primary", upstream_id="hang", fallback=gemini_backup)

    _, trail = await stream_all(await candidates(primary))

    assert 250 <= trail.attempts[0].latency_ms < 3000
    assert "timed out" in trail.attempts[0].error


async def test_it_falls_back_when_the_connection_is_refused(make_model, gemini_backup, settings, refused_url):
    settings.OPENROUTER_BASE_URL = f"{refused_url}/v1"
    primary = await make_model("or/primary", fallback=gemini_backup)

    text, trail = await stream_all(await candidates(primary))

    assert text == REPLY
    assert outcomes(trail) == [("openrouter", "connect_error", None), ("gemini", "ok", None)]


async def test_it_falls_back_for_a_complete_request_too(make_model, gemini_backup):
    primary = await make_model("or/primary", upstream_id="fail-500", fallback=gemini_backup)
    trail = RouteTrail()

    completion = await route_complete(await candidates(primary), MESSAGES, {}, trail)

    assert completion.text == REPLY
    assert outcomes(trail) == [("openrouter", "http_500", 500), ("gemini", "ok", None)]
    assert trail.model == gemini_backup
    assert trail.end == completion.end


async def test_it_does_not_fall_back_on_a_bad_request(make_model, gemini_backup, upstream):
    primary = await make_model("or/primary", upstream_id="fail-400", fallback=gemini_backup)

    error = await stream_failure(primary)

    assert error.outcome == "http_400"
    assert len(upstream.requests) == 1


async def test_it_does_not_fall_back_once_text_was_delivered(make_model, gemini_backup, upstream):
    primary = await make_model("or/primary", upstream_id="drop-after-2", fallback=gemini_backup)
    trail, delivered = RouteTrail(), []

    with pytest.raises(ProviderError) as caught:
        async for delta in route_stream(await candidates(primary), MESSAGES, {}, trail):
            delivered.append(delta)

    assert caught.value.outcome == "connection_lost"
    assert delivered == REPLY_WORDS[:2]
    assert outcomes(trail) == [("openrouter", "connection_lost", None)]
    assert trail.first_token_at is not None
    assert len(upstream.requests) == 1


async def test_it_falls_back_on_an_overload_error_event_before_the_first_token(make_model, gemini_backup):
    primary = await make_model("or/primary", upstream_id="error502-after-0", fallback=gemini_backup)

    text, trail = await stream_all(await candidates(primary))

    assert text == REPLY
    assert outcomes(trail) == [("openrouter", "http_502", 502), ("gemini", "ok", None)]


async def test_an_overload_error_event_after_the_first_token_is_not_retried(make_model, gemini_backup, upstream):
    primary = await make_model("or/primary", upstream_id="error502-after-2", fallback=gemini_backup)

    error = await stream_failure(primary)

    assert error.outcome == "http_502"
    assert len(upstream.requests) == 1


async def test_a_free_model_never_falls_back_to_a_paid_one(make_model):
    paid = await make_model("gemini/paid", Provider.GEMINI, price="0.10")
    free_backup = await make_model("compat/free", Provider.OPENAI_COMPAT, fallback=paid)
    free = await make_model("or/free:free", fallback=free_backup)

    assert [m.slug for m in await candidates(free)] == ["or/free:free", "compat/free"]


async def test_a_paid_model_may_fall_back_to_a_free_one(make_model):
    free_backup = await make_model("compat/free", Provider.OPENAI_COMPAT)
    paid = await make_model("or/paid", price="1", fallback=free_backup)

    assert [m.slug for m in await candidates(paid)] == ["or/paid", "compat/free"]


async def test_it_gives_up_listing_every_attempt_when_all_fail(make_model):
    backup = await make_model("gemini/backup", Provider.GEMINI, "fail-429")
    primary = await make_model("or/primary", upstream_id="fail-500", fallback=backup)
    trail = RouteTrail()

    with pytest.raises(NoProviderAvailable) as caught:
        async for _ in route_stream(await candidates(primary), MESSAGES, {}, trail):
            pass

    assert str(caught.value) == "all providers failed (or/primary: http_500, gemini/backup: http_429)"
    assert (caught.value.outcome, caught.value.http_status) == ("http_429", 429)
    assert outcomes(trail) == [("openrouter", "http_500", 500), ("gemini", "http_429", 429)]


async def test_it_gives_up_when_no_candidate_is_available():
    with pytest.raises(NoProviderAvailable) as caught:
        await stream_all([])

    assert caught.value.outcome == "no_provider"


async def test_a_complete_request_gives_up_when_all_fail(make_model):
    primary = await make_model("or/primary", upstream_id="fail-500")

    with pytest.raises(NoProviderAvailable):
        await route_complete(await candidates(primary), MESSAGES, {}, RouteTrail())


# Cancellation


async def test_cancelling_the_stream_closes_the_upstream_connection(make_model, upstream):
    slow = await make_model("or/slow", upstream_id="slow")
    trail, first_delta = RouteTrail(), asyncio.Event()

    async def consume():
        async for _ in route_stream(await candidates(slow), MESSAGES, {}, trail):
            first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), 5)
    assert upstream.open_streams == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    closed = await asyncio.to_thread(upstream.wait_for, lambda f: f.open_streams == 0 and f.disconnects == 1, 1.0)
    assert closed, f"upstream still streaming: open={upstream.open_streams} disconnects={upstream.disconnects}"
    assert outcomes(trail) == [("openrouter", "cancelled", None)]
