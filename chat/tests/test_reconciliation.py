"""What providers report they charged, kept beside our cost, and the reconciliation of the two (command and
/ops/), against a fake OpenRouter on 127.0.0.1 that returns usage.cost."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from aihub.testing import logged_in_client
from billing.models import UsageRecord
from billing.reconciliation import month_bounds, reconcile
from chat.catalogue.models import AIModel, Provider

from .conftest import generation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def openrouter_model(upstream):
    """A model on the fake OpenRouter, priced as the fake charges by default (0.15 / 0.60 per million)."""
    return AIModel.objects.create(
        slug="openrouter/fake-model",
        provider=Provider.OPENROUTER,
        upstream_id="fake-model",
        name="Fake on OpenRouter",
        input_price_per_m=Decimal("0.15"),
        output_price_per_m=Decimal("0.60"),
    )


@pytest.fixture
def staff(django_user_model):
    return logged_in_client(
        django_user_model.objects.create_user("ops@example.com", "correct horse battery", is_staff=True)
    )


def run(owner, model) -> UsageRecord:
    worker = generation(owner, model)

    async def go():
        await worker.stream(_ignore)

    async_to_sync(go)()
    return UsageRecord.objects.get(request_id=worker.request_id)


async def _ignore(delta) -> None:
    return None


def this_month() -> str:
    return timezone.now().strftime("%Y-%m")


def test_openrouter_is_asked_for_its_usage_accounting_and_its_cost_is_stored_as_reported(
    user, upstream, openrouter_model
):
    record = run(user, openrouter_model)
    assert upstream.requests[-1]["body"]["usage"] == {"include": True}
    assert (record.prompt_tokens, record.completion_tokens) == (11, 6)
    assert record.tokens_source == record.cost_source == UsageRecord.Source.REPORTED
    assert record.reported_cost == record.cost == Decimal("0.00000525")  # 11 x 0.15 + 6 x 0.60, per million
    assert (record.input_price_per_m, record.output_price_per_m) == (Decimal("0.15"), Decimal("0.60"))
    assert not record.over_reservation


def test_a_provider_without_a_cost_report_leaves_the_cost_estimated(user, upstream):
    model = AIModel.objects.create(
        slug="compat/fake",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="no-usage",
        name="compat",
        input_price_per_m=Decimal("1"),
        output_price_per_m=Decimal("2"),
    )
    record = run(user, model)
    assert "usage" not in upstream.requests[-1]["body"]
    assert record.reported_cost is None
    assert record.tokens_source == record.cost_source == UsageRecord.Source.ESTIMATED  # counted with tiktoken
    assert (record.input_price_per_m, record.output_price_per_m) == (Decimal("1"), Decimal("2"))


def test_reconciliation_shows_no_difference_when_prices_match_and_lists_the_request_when_not(
    user, upstream, openrouter_model, staff
):
    matching = run(user, openrouter_model)
    result = reconcile(*month_bounds(this_month()))
    assert [(r["provider"], r["requests"], r["difference"], r["unreported"]) for r in result.per_model] == [
        ("openrouter", 1, Decimal(0), 0)
    ]
    assert result.differing == []

    upstream.charged_per_m = ("0.30", "0.60")  # the provider changed its price; our catalogue did not follow
    differing = run(user, openrouter_model)
    assert differing.reported_cost == Decimal("0.0000069") != differing.cost
    result = reconcile(*month_bounds(this_month()))
    assert [r.request_id for r in result.differing] == [differing.request_id]
    assert result.per_model[0]["difference"] == differing.cost - differing.reported_cost

    out = StringIO()
    call_command("reconcile", "--month", this_month(), stdout=out)
    assert str(differing.request_id) in out.getvalue() and str(matching.request_id) not in out.getvalue()
    assert "1 request(s) differing" in out.getvalue()

    page = staff.get("/ops/").content.decode()
    assert 'id="reconciliation"' in page and str(differing.request_id) in page
    assert str(matching.request_id) not in page


def test_the_command_refuses_a_month_it_cannot_read():
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("reconcile", "--month", "March")


def test_month_bounds_cover_the_month_in_utc():
    start, end = month_bounds("2026-12")
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
