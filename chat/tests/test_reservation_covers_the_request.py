"""A request is reserved for every part it sends (system prompt, attached files and images, tool schemas),
with the tokenizer margin where tiktoken stands in for the model's own tokenizer: against a fake OpenRouter
whose tokenizer counts 8% more than cl100k and which reports usage.cost, the charge is the reported usage at
our price, not capped, and equal to what the provider charged."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.models import UsageRecord
from billing.reconciliation import reconcile
from chat.catalogue.models import AIModel, Provider

from .conftest import generation
from .fake_upstream import whole_request_usage

pytestmark = pytest.mark.django_db(transaction=True)

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="  # noqa: E501 (one image)
SYSTEM_PROMPT = "You are a careful assistant for a garden centre. Answer in British English, cite sources. " * 80
DOCUMENT = "Row 12: Alba roses, half shade, pruned in March; climbers along the north wall. " * 60
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"lookup_{name}",
            "description": f"Look up the {name} of a plant in the nursery's catalogue, by its Latin or common name. "
            * 8,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "Where the plant is to grow. " * 6}},
                "required": ["city"],
            },
        },
    }
    for name in ("price", "stock", "care")
]
# Each part sent is larger than the margin's share of the whole: leaving any of them out of the reservation
# would make the upstream's count exceed it.
MESSAGES = [
    {"role": "system", "content": SYSTEM_PROMPT},
    {
        "role": "user",
        "content": [
            {
                "type": "text",
                "text": "Where should these go?\n\n--- Attached file: beds.txt ---\n"
                f"{DOCUMENT}\n--- End of beds.txt ---",
            },
            {"type": "image_url", "image_url": {"url": PNG}},
        ],
    },
]


@pytest.fixture
def model(upstream):
    """On the fake OpenRouter, priced as it charges (0.15 / 0.60 per million); its tokenizer counts 8% more."""
    return AIModel.objects.create(
        slug="openrouter/other-tokenizer",
        provider=Provider.OPENROUTER,
        upstream_id="tokenizer-8",
        name="Another tokenizer",
        input_price_per_m=Decimal("0.15"),
        output_price_per_m=Decimal("0.60"),
        supports_images=True,
        context_length=128_000,
    )


def run(person, model):
    """The request, its output allowance exactly what the reply takes (no slack to hide a short prompt)."""
    reply_tokens = whole_request_usage({"messages": MESSAGES, "tools": TOOLS}, 8)["completion_tokens"]
    worker = generation(person, model, messages=MESSAGES, params={"tools": TOOLS, "max_tokens": reply_tokens})
    async_to_sync(worker.complete)()
    return worker, UsageRecord.objects.get(request_id=worker.request_id)


def test_a_request_is_reserved_for_every_part_it_sends_and_charged_uncapped(
    model, upstream, make_plan, subscriber, settings
):
    assert settings.TOKENIZER_MARGIN == 0.10  # the documented default
    person = subscriber(make_plan(monthly_credit_quota=Decimal("10")))  # a limit: a reservation is held
    worker, record = run(person, model)
    sent = upstream.requests[-1]["body"]
    assert sent["messages"][0]["content"] == SYSTEM_PROMPT and sent["tools"] == TOOLS
    assert sent["messages"][1]["content"][1]["image_url"]["url"] == PNG
    reported = whole_request_usage(sent, 8)
    assert reported["prompt_tokens"] > 3000  # system prompt, document, image and tool schemas
    assert (record.prompt_tokens, record.completion_tokens) == (
        reported["prompt_tokens"],
        reported["completion_tokens"],
    )
    assert record.tokens_source == record.cost_source == UsageRecord.Source.REPORTED
    assert not record.over_reservation
    assert record.cost == model.cost(record.prompt_tokens, record.completion_tokens) == record.reported_cost
    assert worker.admission.reserved_tokens >= record.prompt_tokens + record.completion_tokens
    assert worker.admission.reserved_cost >= record.cost
    assert reconcile(*_today()).over_reservation == []


def test_without_the_tokenizer_margin_the_same_request_outgrows_its_reservation_and_is_flagged(
    model, make_plan, subscriber, settings
):
    settings.TOKENIZER_MARGIN = 0
    person = subscriber(make_plan(monthly_credit_quota=Decimal("10")))
    worker, record = run(person, model)
    assert record.over_reservation
    assert record.cost == worker.admission.reserved_cost < model.cost(record.prompt_tokens, record.completion_tokens)
    assert reconcile(*_today()).over_reservation == [record]


def _today():
    now = timezone.now()
    return now - timedelta(days=1), now + timedelta(days=1)
