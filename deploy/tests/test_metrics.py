"""/metrics in Prometheus' text format, through the project's ASGI application (the HTTP middleware
that counts requests wraps it), with figures from real requests against the fake upstream."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from aihub.asgi import application
from chat.tests.api_fixtures import catalogue, issued  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]


def asgi_client(key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # client= sets the REMOTE_ADDR the app sees
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers)


async def scrape(client: httpx.AsyncClient) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def grown(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


async def test_a_completion_shows_in_requests_latency_ttft_tokens_and_cost(catalogue, issued):
    async with asgi_client(issued[1]) as client:
        before = await scrape(client)
        response = await client.post("/v1/chat/completions", json={"model": "test/fake-model", "messages": HELLO})
        assert response.status_code == 200
        after = await scrape(client)
    model = {"model": "test/fake-model", "provider": "openai_compat"}
    route = {"route": "/v1/chat/completions", "method": "POST"}
    assert grown(before, after, "aihub_http_requests_total", **route, status="200") == 1
    assert grown(before, after, "aihub_http_request_duration_seconds_count", **route) == 1
    assert grown(before, after, "aihub_generations_total", **model, status="complete") == 1
    assert grown(before, after, "aihub_time_to_first_token_seconds_count", **model) == 1
    assert grown(before, after, "aihub_tokens_total", **model, kind="prompt") == 11
    assert grown(before, after, "aihub_tokens_total", **model, kind="completion") == 6
    # 11 x $1.50 + 6 x $2.00 per million tokens
    assert grown(before, after, "aihub_cost_usd_total", **model) == pytest.approx(28.5e-6)


async def test_a_failed_upstream_and_its_fallback_are_counted(catalogue, issued):
    failing = catalogue["fail-500"]
    failing.fallback = catalogue["fake-model"]
    await sync_to_async(failing.save)(update_fields=["fallback"])
    async with asgi_client(issued[1]) as client:
        before = await scrape(client)
        response = await client.post("/v1/chat/completions", json={"model": "test/fail-500", "messages": HELLO})
        assert response.status_code == 200
        after = await scrape(client)
    assert grown(before, after, "aihub_upstream_errors_total", provider="openai_compat", outcome="http_500") >= 1
    fallback = {"from_provider": "openai_compat", "to_provider": "openai_compat"}
    assert grown(before, after, "aihub_fallbacks_total", **fallback) == 1


async def test_a_limit_refusal_is_counted_by_its_code(catalogue, free_user):
    from accounts.api_keys import issue_key

    _, key = await sync_to_async(issue_key)(free_user, "free key")
    async with asgi_client(key) as client:
        before = await scrape(client)
        response = await client.post("/v1/chat/completions", json={"model": "test/fake-model", "messages": HELLO})
        assert response.status_code == 403
        after = await scrape(client)
    assert grown(before, after, "aihub_limit_refusals_total", code="model_not_allowed") == 1


async def test_metrics_are_refused_outside_the_allow_list_without_the_token(settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "scrape-secret"
    async with asgi_client() as client:
        assert (await client.get("/metrics")).status_code == 403
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 403
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert allowed.status_code == 200
        assert "aihub_http_requests_total" in allowed.text
