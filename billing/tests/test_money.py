"""Money shown and written by one rule: plain decimals everywhere (never 0E-8), sub-cent amounts to
enough places, half-up rounding once; statements list plan fees and invoices beside usage."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing import money
from billing.models import Invoice, Plan, Subscription
from billing.subscriptions import start_subscription

from .conftest import usage_row

pytestmark = pytest.mark.django_db

NOVEMBER = datetime(2026, 11, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount", "shown", "written"),
    [
        ("0", "$0", "0.00000000"),
        ("0E-8", "$0", "0.00000000"),
        ("0.00000012", "$0.00000012", "0.00000012"),
        ("0.000387", "$0.000387", "0.00038700"),
        ("0.00999999", "$0.00999999", "0.00999999"),
        ("0.01", "$0.01", "0.01000000"),
        ("0.12345", "$0.1235", "0.12345000"),  # half up, not to even
        ("0.12335", "$0.1234", "0.12335000"),
        ("1.75", "$1.75", "1.75000000"),
        ("1234.56785", "$1234.5679", "1234.56785000"),
    ],
)
def test_one_rounding_rule_for_pages_and_files(amount, shown, written):
    assert money.usd(Decimal(amount)) == shown
    assert money.plain(Decimal(amount)) == written


def usage(owner, cost: str, *, when=NOVEMBER, model="a/model"):
    return usage_row(owner, cost=cost, when=when, model=model)


def parse(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_admin_csv_and_totals_show_plain_decimals(django_user_model, user):
    from aihub.testing import logged_in_client

    staff = logged_in_client(django_user_model.objects.create_superuser("ops@example.com", "correct horse battery"))
    rows = [usage(user, "0"), usage(user, "0.00000012"), usage(user, "0.0000005")]
    response = staff.post(
        "/admin/billing/usagerecord/", {"action": "export_csv", "_selected_action": [r.pk for r in rows]}
    )
    text = b"".join(response.streaming_content).decode()
    costs = [row["cost_usd"] for row in parse(text)]
    assert costs == ["0.00000000", "0.00000012", "0.00000050"] and "E-" not in text
    assert sum(Decimal(c) for c in costs) == Decimal("0.00000062")

    page = staff.get("/admin/billing/usagerecord/").content.decode()
    assert "3 requests · 45 tokens · $0.00000062" in page  # the total, not $0.0000
    assert "$0.0000005<" in page and "E-" not in page


def test_the_statement_lists_plan_fees_invoices_and_usage_as_a_page_and_csv(browser, free_user, other_user):
    Subscription.objects.filter(user=free_user).update(started_at=NOVEMBER.replace(day=1))
    pro = start_subscription(free_user, Plan.objects.get(slug="pro"), now=NOVEMBER)
    Subscription.objects.filter(pk=pro.pk).update(stripe_customer_id="cus_1", stripe_subscription_id="sub_1")
    Invoice.objects.create(
        user=free_user,
        stripe_invoice_id="in_1",
        number="AIHUB-0001",
        status="paid",
        description="subscription create",
        amount_due=Decimal(99),
        amount_paid=Decimal(99),
        hosted_invoice_url="https://invoice.stripe.test/i/in_1",
        period_start=NOVEMBER,
        period_end=NOVEMBER.replace(month=12),
        created_at=NOVEMBER,
    )
    usage(free_user, "0.5")
    usage(free_user, "0.25")
    usage(free_user, "0.00000012", model="b/model")
    usage(other_user, "9")  # someone else's
    usage(free_user, "7", when=NOVEMBER.replace(month=10), model="c/model")  # another month

    page = browser.get("/billing/statements/2026-11/").content.decode()
    assert "AIHUB-0001" in page and 'href="https://invoice.stripe.test/i/in_1"' in page and "$99.00" in page
    assert "Pro" in page and "Free" in page  # the plans held in November
    assert "<td>$0.00000012</td>" in page and "<th>$0.75</th>" in page and "c/model" not in page

    rows = parse(browser.get("/billing/statements/2026-11.csv").content.decode())
    assert [(r["kind"], r["item"], r["amount_usd"]) for r in rows] == [
        ("plan", "Free (monthly fee)", "0.00"),
        ("plan", "Pro (monthly fee)", "99.00"),
        ("invoice", "AIHUB-0001 (subscription create, paid)", "99.00"),
        ("usage", "a/model", "0.75000000"),
        ("usage", "b/model", "0.00000012"),
        ("usage", "TOTAL", "0.75000012"),
    ]
    assert rows[2]["receipt_url"] == "https://invoice.stripe.test/i/in_1"
    assert all("E" not in r["amount_usd"] and Decimal(r["amount_usd"]) >= 0 for r in rows)
    assert browser.get("/billing/statements/2026-13/").status_code == 404


def test_a_month_with_only_an_invoice_is_listed(browser, free_user):
    Invoice.objects.create(
        user=free_user,
        stripe_invoice_id="in_2",
        status="paid",
        amount_due=Decimal(29),
        amount_paid=Decimal(29),
        created_at=NOVEMBER,
    )
    page = browser.get("/billing/statements/").content.decode()
    assert "November 2026" in page and "/billing/statements/2026-11/" in page
