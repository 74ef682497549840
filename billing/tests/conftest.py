"""Billing fixtures: plans with chosen limits, users on them, priced models on the fake upstream."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from accounts.api_keys import issue_key
from aihub.testing import logged_in_client
from billing import rollups
from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.catalogue.models import AIModel, Provider
from chat.gateway.generation import Generation

from .fake_stripe import FakeStripe

SAY_HELLO = [{"role": "user", "content": "Say hello"}]
STRIPE_SECRET = "whsec_test_secret"
_numbers = itertools.count(1)


@pytest.fixture
def make_plan():
    """A plan with no limits but the ones given."""

    def make(**limits) -> Plan:
        number = next(_numbers)
        fields = dict(
            monthly_price=Decimal("10"),
            monthly_token_quota=None,
            monthly_credit_quota=None,
            requests_per_minute=None,
            tokens_per_minute=None,
            max_concurrent_streams=None,
            max_api_keys=None,
            max_output_tokens=None,
            free_models_only=False,
            sort_order=10 + number,
        )
        fields.update(limits)
        return Plan.objects.create(slug=f"test-{number}", name=f"Test {number}", **fields)

    return make


@pytest.fixture
def stripe(settings):
    """Stripe set up, its API served by a fake on 127.0.0.1 (which records the calls it gets)."""
    fake = FakeStripe(STRIPE_SECRET)
    settings.STRIPE_SECRET_KEY = "sk_test_123"
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.STRIPE_API_BASE = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def browser(free_user):
    """A test client logged in as free_user."""
    return logged_in_client(free_user)


@pytest.fixture
def subscriber(django_user_model):
    """A new user on the given plan."""

    def make(plan: Plan):
        person = django_user_model.objects.create_user(f"person{next(_numbers)}@example.com", "correct horse battery")
        start_subscription(person, plan)
        return person

    return make


@pytest.fixture
def make_model(upstream):
    """A catalogue model served by the fake upstream (its upstream id picks the behaviour)."""

    def make(
        upstream_id: str = "fake-model", *, price_in: str = "1", price_out: str = "2", fallback: AIModel | None = None
    ) -> AIModel:
        return AIModel.objects.create(
            slug=f"test/{upstream_id}-{next(_numbers)}",
            provider=Provider.OPENAI_COMPAT,
            upstream_id=upstream_id,
            name=upstream_id,
            input_price_per_m=Decimal(price_in),
            output_price_per_m=Decimal(price_out),
            fallback=fallback,
            context_length=8192,
        )

    return make


@pytest.fixture
def make_key():
    def make(owner, *, budget: str | None = None):
        api_key, _ = issue_key(owner, f"key {next(_numbers)}", monthly_budget=Decimal(budget) if budget else None)
        return api_key

    return make


def usage_row(
    owner,
    *,
    when=None,
    model="a/model",
    provider="openrouter",
    tokens=(10, 5),
    cost="0.01",
    api_key=None,
    status="complete",
) -> UsageRecord:
    """A usage row as a finished request leaves it, dated `when` (now if not given)."""
    row = UsageRecord.objects.create(
        user=owner,
        api_key=api_key,
        model_slug=model,
        provider=provider,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        cost=Decimal(cost),
        status=status,
    )
    if when is not None:
        UsageRecord.objects.filter(pk=row.pk).update(created_at=when)
    rollups.rebuild()  # written here, not by metering: its rollups too
    return row


def generation(owner, model, *, api_key=None, params=None, messages=SAY_HELLO) -> Generation:
    return Generation(user=owner, model=model, messages=messages, params=params or {}, api_key=api_key)
