"""Billing fixtures: Stripe served by a fake, a logged-in browser, usage rows as requests leave them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aihub.testing import logged_in_client
from billing import rollups
from billing.models import UsageRecord

from .fake_stripe import FakeStripe

STRIPE_SECRET = "whsec_test_secret"


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
