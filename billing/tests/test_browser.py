"""Billing and usage in a real browser (headless Chromium): requesting a paid plan and an operator
approving it in the admin, and the usage dashboard drawing its charts from real usage rows."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from aihub.testing import session_key_for
from billing import rollups
from billing.models import UsageRecord

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# How many pixels of a canvas are painted (not transparent): a drawn chart has thousands.
PAINTED_PIXELS = """(id) => {
  const canvas = document.getElementById(id);
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  return painted;
}"""


@pytest.fixture
def customer(django_user_model):
    """A Free user with a week of usage on two models, one of them through an API key."""
    from accounts.api_keys import issue_key

    person = django_user_model.objects.create_user("chart@example.com", "correct horse battery")
    key, _ = issue_key(person, "nightly job")
    now = timezone.now()
    for days_ago in range(7):
        for model, api_key, tokens in [("a/model", None, 1000 + 100 * days_ago), ("b/model", key, 400)]:
            row = UsageRecord.objects.create(
                user=person,
                api_key=api_key,
                model_slug=model,
                provider="openrouter",
                prompt_tokens=tokens,
                completion_tokens=tokens // 2,
                cost=Decimal("0.01") * (days_ago + 1),
                status="complete",
            )
            UsageRecord.objects.filter(pk=row.pk).update(created_at=now - timedelta(days=days_ago))
    rollups.rebuild()  # the rows are written here, not by metering: their rollups too
    return person


@pytest.fixture
def page(logged_in_page, customer):
    return logged_in_page(customer)


def test_without_stripe_an_upgrade_is_requested_and_an_operator_approves_it_in_the_admin(
    logged_in_page, customer, django_user_model
):
    operator = django_user_model.objects.create_superuser("ops@example.com", "correct horse battery")
    operator_session = session_key_for(operator)  # before the browser starts (no ORM calls after)
    page = logged_in_page(customer)
    customer_cookies = page.context.cookies()
    page.goto(f"{page.base}/billing/")
    assert page.text_content("#plan-name") == "Free"
    assert page.locator("#upgrade-developer").count() == 0
    page.click("#request-developer")
    page.wait_for_url("**/billing/change/developer/")
    assert "assigned by our team" in page.text_content("#confirm-change")
    # Posting the change itself (as a hand-made form would) is refused.
    status = page.evaluate("""async () => {
        const body = new FormData();
        body.append("csrfmiddlewaretoken", document.querySelector("[name=csrfmiddlewaretoken]").value);
        return (await fetch("/billing/change/developer/", {method: "POST", body})).status;
    }""")
    assert status == 403
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/billing/")
    assert "Your request for the Developer plan was sent" in page.text_content(".flash")
    assert page.text_content("#plan-name") == "Free" and page.is_visible("#requested-developer")

    page.context.clear_cookies()
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": operator_session, "url": page.base}])
    page.goto(f"{page.base}/admin/billing/planrequest/")
    assert "chart@example.com" in page.text_content("#result_list")
    page.check("#result_list input[name=_selected_action]")
    page.select_option("select[name=action]", "approve")
    page.click("button[name=index]")
    assert "1 request(s) approved" in page.text_content(".messagelist")

    page.context.clear_cookies()
    page.context.add_cookies(customer_cookies)
    page.goto(f"{page.base}/billing/")
    assert page.text_content("#plan-name") == "Developer"
    assert page.locator("#pending-request").count() == 0
    # Only the refused POST (and the admin's missing favicon) went wrong.
    favicon = ("favicon.ico", "status of 404")
    assert [p for p in page.problems if not any(f in p for f in favicon)] == [
        f"403 {page.base}/billing/change/developer/",
        "console: Failed to load resource: the server responded with a status of 403 (Forbidden)",
    ]


def test_the_usage_dashboard_draws_its_charts_with_the_data(page):
    page.goto(f"{page.base}/usage/")
    page.wait_for_function("() => window.Chart && Chart.getChart('tokens-chart') && Chart.getChart('keys-chart')")
    series = page.evaluate("""() => Chart.getChart('tokens-chart').data.datasets.map(
        d => [d.label, d.data.reduce((a, b) => a + b, 0)])""")
    # a/model: sum of 1.5 × (1000 … 1600); b/model: 7 days × 600.
    assert dict(series) == {"a/model": sum(1500 + 150 * n for n in range(7)), "b/model": 4200}
    labels = page.evaluate("() => Chart.getChart('keys-chart').data.labels")
    assert labels[0] == "Chat page" and labels[1].startswith("nightly job (ahk_")
    for canvas in ("tokens-chart", "cost-chart", "keys-chart"):
        assert page.evaluate(PAINTED_PIXELS, canvas) > 2000, f"{canvas} is blank"
    assert page.problems == []


def test_quick_ranges_charts_that_fill_their_cards_and_the_activity_log(page):
    page.goto(f"{page.base}/usage/")
    page.click("#range-7d")
    page.wait_for_url("**/usage/?range=7d")
    page.wait_for_function("() => window.Chart && Chart.getChart('tokens-chart') && Chart.getChart('keys-chart')")
    assert page.get_attribute("#range-7d", "aria-current") == "true"
    shown = page.text_content("#range-shown")
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d{4} – \d{1,2} [A-Z][a-z]{2} \d{4}", shown), shown
    ticks = page.evaluate("() => Chart.getChart('tokens-chart').scales.x.ticks.map(t => t.label)")
    assert len(ticks) == 7 and all(re.fullmatch(r"\d{1,2} [A-Z][a-z]{2}", t) for t in ticks), ticks
    grid = page.locator(".chart-grid").bounding_box()
    for canvas in ("tokens-chart", "cost-chart", "keys-chart"):
        box = page.locator(f"#{canvas}").bounding_box()
        card = page.locator(f".card:has(#{canvas})").bounding_box()
        assert box["width"] > card["width"] - 60, f"{canvas} leaves its card empty"
    wide = page.locator("#tokens-chart").bounding_box()
    assert wide["width"] > grid["width"] - 60  # the daily chart spans the grid; no empty cell beside it

    page.click("#activity-link")
    page.wait_for_url("**/usage/activity/?range=7d")
    rows = page.locator("#activity-log tbody tr")
    assert rows.count() == 14
    assert "API · nightly job" in page.text_content("#activity-log") and "Chat page" in page.text_content(
        "#activity-log"
    )
    page.select_option("#id_source", "chat")
    page.click("#log-filters button[type=submit]")
    page.wait_for_url("**source=chat**")
    assert rows.count() == 7 and "API ·" not in page.text_content("#activity-log tbody")
    assert page.text_content("#log-totals").startswith("7 requests")
    assert page.problems == []
