"""The cost of a message before it is sent: POST /api/v1/estimate and the composer's estimate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import UsageRecord
from chat.models import AIModel, Provider
from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

QUESTION = "Tell me about the harbour lights, and why the old keeper painted them red and green. " * 5


@pytest.fixture
def counting(upstream):
    """A paid model whose upstream counts the prompt with its own tokenizer, as a real one does."""
    return AIModel.objects.create(
        slug="test/counting",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="counting",
        name="Counting",
        context_length=4096,
        input_price_per_m=Decimal("3.00"),
        output_price_per_m=Decimal("15.00"),
    )


async def test_the_price_range_contains_the_cost_of_the_reply_that_follows(api_client, counting):
    session_id = None
    for n in range(4):  # a session with history: the estimate counts it as it will be sent
        body = {"message": f"{n}: {QUESTION}", "model": counting.slug, "max_tokens": 300}
        if session_id is not None:
            body["session_id"] = session_id
        estimate = await api_client.post("/api/v1/estimate", body)
        assert estimate.status_code == 200, estimate.content
        figures = estimate.json()

        sent = await api_client.post("/api/v1/chat/completions", body)
        session_id = sent.json()["session_id"]

        record = await UsageRecord.objects.order_by("-id").afirst()
        low, high = Decimal(figures["cost_usd"]["min"]), Decimal(figures["cost_usd"]["max"])
        assert record.cost > 0
        assert low <= record.cost <= high, (low, record.cost, high)
        assert figures["max_output_tokens"] == 300
        assert figures["messages_sent"] == 2 * n + 1 and figures["messages_dropped"] == 0
        # The estimate's count is the prompt the upstream was given, within the tokenizer margin.
        assert abs(figures["prompt_tokens"] - record.prompt_tokens) <= figures["prompt_tokens"] * 0.1


async def test_it_stores_nothing_and_answers_bad_input_with_openai_shaped_errors(api_client, counting):
    missing = await api_client.post("/api/v1/estimate", {"model": counting.slug})
    unknown = await api_client.post("/api/v1/estimate", {"message": "Hi", "model": "nope/nope"})
    foreign = await api_client.post("/api/v1/estimate", {"message": "Hi", "session_id": 999999})
    too_long = await api_client.post("/api/v1/estimate", {"message": "word " * 5000, "model": counting.slug})

    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "message")
    assert unknown.status_code == 404
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "session_not_found")
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "context_length_exceeded")
    assert await UsageRecord.objects.acount() == 0


async def test_a_free_model_is_estimated_at_zero(api_client, catalogue):
    figures = (await api_client.post("/api/v1/estimate", {"message": "Hi", "model": "test/free"})).json()

    assert figures["cost_usd"] == {"min": "0.00000000", "max": "0.00000000"}
    assert figures["prompt_tokens"] > 0
