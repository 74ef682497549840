"""Providers that fail gracefully: retries on the same model before the first token (jittered backoff,
a bounded budget, a short Retry-After honoured and a long one not), then fallback; circuit breakers
that skip a failing model for a cooldown, probe it once half-open, and close on success."""

from __future__ import annotations

import asyncio
import os
import re
import time
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from aihub.testing import app_env, logged_in_client, start_daphne, stop_process, wait_until_healthy
from billing.models import UpstreamAttempt, UsageRecord
from chat.catalogue.models import AIModel, Provider
from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def retrying(settings, upstream):
    settings.UPSTREAM_RETRIES = 2
    settings.UPSTREAM_RETRY_BUDGET = 3.0
    settings.UPSTREAM_RETRY_BACKOFF = 0.05
    return settings


@pytest.fixture
def model_on(catalogue):
    """A model on the fake upstream behaving as `upstream_id`, falling back to test/fake-model."""

    def make(upstream_id: str) -> AIModel:
        return AIModel.objects.create(
            slug=f"test/{upstream_id}",
            provider=Provider.OPENAI_COMPAT,
            upstream_id=upstream_id,
            name=upstream_id,
            input_price_per_m=Decimal("1.50"),
            output_price_per_m=Decimal("2.00"),
            fallback=catalogue["fake-model"],
        )

    return sync_to_async(make)


async def ask(api_client, slug: str, stream: bool = False):
    response = await api_client.post("/v1/chat/completions", {"model": slug, "messages": HELLO, "stream": stream})
    if stream:
        b"".join([chunk async for chunk in response.streaming_content])
    return response


def seen(upstream) -> list[str]:
    return [r["body"]["model"] for r in upstream.requests]


async def outcomes() -> list[str]:
    record = await UsageRecord.objects.alatest("created_at")
    return [a.outcome async for a in UpstreamAttempt.objects.filter(usage=record).order_by("id")]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_flaky_model_is_retried_until_it_answers(retrying, upstream, model_on, api_client, stream):
    await model_on("flaky-2")
    response = await ask(api_client, "test/flaky-2", stream)
    assert response.status_code == 200
    assert seen(upstream) == ["flaky-2"] * 3  # two 503s, then the reply: no fallback needed
    assert await outcomes() == ["http_503", "http_503", "ok"]


async def test_retries_stop_at_their_count_then_the_request_falls_back(retrying, upstream, model_on, api_client):
    await model_on("flaky-5")
    response = await ask(api_client, "test/flaky-5")
    assert response.status_code == 200
    assert seen(upstream) == ["flaky-5"] * 3 + ["fake-model"]


async def test_a_short_retry_after_is_waited_for(retrying, upstream, model_on, api_client):
    await model_on("ratelimited-1")
    started = time.monotonic()
    response = await ask(api_client, "test/ratelimited-1")
    assert response.status_code == 200
    assert seen(upstream) == ["ratelimited-1"] * 3 + ["fake-model"]
    assert time.monotonic() - started >= 2  # twice Retry-After: 1


async def test_a_long_retry_after_falls_back_at_once(retrying, upstream, model_on, api_client):
    await model_on("ratelimited-60")
    started = time.monotonic()
    response = await ask(api_client, "test/ratelimited-60")
    assert response.status_code == 200
    assert seen(upstream) == ["ratelimited-60", "fake-model"]
    assert time.monotonic() - started < 2


async def test_retries_stay_within_their_time_budget(retrying, upstream, catalogue, api_client):
    retrying.UPSTREAM_RETRIES = 50
    retrying.UPSTREAM_RETRY_BUDGET = 1.0
    retrying.UPSTREAM_RETRY_BACKOFF = 0.2
    started = time.monotonic()
    response = await ask(api_client, "test/fail-500")
    assert response.status_code == 502
    assert time.monotonic() - started < 2
    assert 2 <= len(seen(upstream)) < 50


async def test_a_caller_error_is_not_retried(retrying, upstream, catalogue, api_client):
    response = await ask(api_client, "test/fail-400")
    assert seen(upstream) == ["fail-400"]
    assert response.status_code == 502


async def test_nothing_is_retried_after_the_first_token(retrying, upstream, catalogue, api_client):
    await ask(api_client, "test/error-after-2", stream=True)
    assert seen(upstream) == ["error-after-2"]


@pytest.fixture
def breakers(settings, upstream):
    settings.BREAKER_FAILURES = 2
    settings.BREAKER_COOLDOWN = 0.5
    return settings


async def test_a_breaker_opens_after_k_failures_probes_once_half_open_and_closes_on_success(
    breakers, upstream, model_on, api_client
):
    await model_on("outage")
    upstream.outage = True
    for _ in range(2):
        assert (await ask(api_client, "test/outage")).status_code == 200  # fell back
    assert seen(upstream) == ["outage", "fake-model"] * 2

    # Open: skipped without a request upstream; the usage row says why.
    upstream.reset()
    upstream.outage = True
    assert (await ask(api_client, "test/outage")).status_code == 200
    assert seen(upstream) == ["fake-model"]
    assert await outcomes() == ["breaker_open", "ok"]

    # Half-open after the cooldown: one probe, which fails and opens the breaker again at once.
    await asyncio.sleep(0.6)
    upstream.reset()
    upstream.outage = True
    assert (await ask(api_client, "test/outage")).status_code == 200
    assert (await ask(api_client, "test/outage")).status_code == 200
    assert seen(upstream) == ["outage", "fake-model", "fake-model"]

    # Half-open again, the upstream is back: the probe succeeds and the breaker closes.
    await asyncio.sleep(0.6)
    upstream.reset()
    assert (await ask(api_client, "test/outage")).status_code == 200
    assert (await ask(api_client, "test/outage")).status_code == 200
    assert seen(upstream) == ["outage", "outage"]


async def test_every_candidate_open_fails_fast_with_a_clear_error(breakers, upstream, catalogue, api_client):
    for _ in range(2):
        assert (await ask(api_client, "test/fail-500")).status_code == 502
    upstream.reset()
    response = await ask(api_client, "test/fail-500")
    assert response.status_code == 502
    assert seen(upstream) == []
    assert "breaker_open" in response.json()["error"]["message"]


@pytest.fixture
def two_processes(upstream, catalogue):
    """Two daphne processes sharing the test database and Redis, with a breaker that opens after 2
    failures for 2 seconds."""
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("two processes need the shared PostgreSQL database and Redis")
    env = app_env(upstream.url, UPSTREAM_RETRIES="0", BREAKER_FAILURES="2", BREAKER_COOLDOWN="2")
    started = [start_daphne(env) for _ in range(2)]
    for process, url in started:
        wait_until_healthy(url, process)
    yield [url for _, url in started]
    for process, _ in started:
        stop_process(process)


def breaker_state(url: str, slug: str) -> float | None:
    """The value of aihub_provider_breaker_state for that model in this process's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "aihub_provider_breaker_state" and sample.labels["model"] == slug:
                return sample.value
    return None


def test_breakers_are_shared_by_every_process(two_processes, upstream, model_on, issued):
    asyncio.run(model_on("outage"))  # a coroutine function, run here outside any event loop
    a, b = two_processes
    headers = {"Authorization": f"Bearer {issued[1]}"}

    def ask_on(url: str) -> None:
        body = {"model": "test/outage", "messages": HELLO}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text

    ask_on(b)  # b has read the breakers: closed
    upstream.outage = True
    ask_on(a)
    ask_on(a)  # the second consecutive failure: open, in Redis
    assert breaker_state(b, "test/outage") == 2  # open, as the other process sees it
    upstream.reset()
    upstream.outage = True
    ask_on(b)
    assert seen(upstream) == ["fake-model"]  # process b skipped it

    time.sleep(2.1)
    assert breaker_state(a, "test/outage") == 1  # half-open
    upstream.reset()
    upstream.outage = True
    ask_on(b)  # the probe fails: open again, for both
    ask_on(a)
    assert seen(upstream) == ["outage", "fake-model", "fake-model"]
    assert breaker_state(a, "test/outage") == 2

    time.sleep(2.1)
    upstream.reset()  # the outage is over
    ask_on(a)  # the probe succeeds: closed
    ask_on(b)
    assert seen(upstream) == ["outage", "outage"]
    assert breaker_state(b, "test/outage") is None  # closed models are not listed
    assert breaker_state(a, "") == 0  # the provider as a whole: always listed, closed


def test_while_no_breaker_changes_admission_reads_none_of_them(breakers, catalogue, monkeypatch):
    from types import SimpleNamespace

    from django.conf import settings
    from django.core.cache.backends.redis import RedisCache

    from chat.gateway import breaker

    if not settings.REDIS_URL:
        pytest.skip("without Redis each process reads its own memory: no copy kept")
    breaker.reset_all()
    models = [catalogue["fake-model"], catalogue["fail-500"]]
    reads = []
    get_many = RedisCache.get_many
    monkeypatch.setattr(RedisCache, "get_many", lambda cache, keys, **kw: reads.append(keys) or get_many(cache, keys))

    for _ in range(3):
        assert breaker.admit(models).allowed == models
    assert len(reads) == 1

    failure = SimpleNamespace(model_slug="test/fail-500", outcome="http_500", retryable=True)
    for _ in range(2):  # as another process would record them: the shared version moves on
        breaker.record([failure], {"test/fail-500": catalogue["fail-500"]}, frozenset())
    assert breaker.admit(models).skipped == [catalogue["fail-500"]]
    assert len(reads) == 2


async def test_the_ops_page_shows_an_open_breaker(breakers, upstream, catalogue, api_client, user):
    for _ in range(2):
        await ask(api_client, "test/fail-500")
    user.is_staff = True
    await user.asave(update_fields=["is_staff"])
    client = await sync_to_async(logged_in_client)(user)
    page = (await sync_to_async(client.get)("/ops/")).content.decode()
    row = re.search(r'<tr class="breaker-open">(.*?)</tr>', page, re.S)
    assert row and "test/fail-500" in row.group(1) and "OpenAI-compatible" in row.group(1)
    assert '<tr class="breaker-closed"><td>OpenAI-compatible</td><td>(all models)</td>' in page
