"""The usage pages: quick ranges (7 and 30 days, this and last period), dates in the app's format,
and the activity log of every request (chat page and API) with filters, paging and the dashboard's
totals."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.api_keys import issue_key
from billing.models import Subscription
from billing.subscriptions import add_month, current_subscription

from .conftest import usage_row

pytestmark = pytest.mark.django_db


def test_quick_ranges_pick_the_days_and_show_them_in_the_apps_format(logged_in, user):
    today = timezone.now().date()
    page = logged_in.get("/usage/?range=7d")
    assert (page.context["start"], page.context["end"]) == (today - timedelta(days=6), today)
    assert f"{today - timedelta(days=6):%-d %b %Y} – {today:%-d %b %Y}" in page.content.decode()
    assert 'id="range-7d" class="quick-range active"' in page.content.decode()
    default = logged_in.get("/usage/")
    assert default.context["start"] == today - timedelta(days=29) and default.context["range_key"] == "30d"
    assert f'value="{today:%-d %b %Y}"' in default.content.decode()  # the custom range field, app format too


def test_this_period_and_last_period_follow_the_subscription(logged_in, user):
    subscription = current_subscription(user)
    start = subscription.current_period_start
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_start=start - timedelta(days=10), current_period_end=add_month(start - timedelta(days=10))
    )
    subscription.refresh_from_db()
    before = subscription.current_period_start
    usage_row(user, when=before + timedelta(seconds=1), cost="1")  # this period
    usage_row(user, when=before - timedelta(seconds=1), cost="2")  # last period, the same day
    usage_row(user, when=add_month(before, -1) - timedelta(seconds=1), cost="4")  # before the last period

    this = logged_in.get("/usage/?range=period")
    assert this.context["start"] == before.date() and this.context["totals"]["cost"] == Decimal(1)
    last = logged_in.get("/usage/?range=last-period")
    assert last.context["start"] == add_month(before, -1).date() and last.context["totals"]["cost"] == Decimal(2)
    assert 'id="range-last-period" class="quick-range active"' in last.content.decode()


def test_a_custom_range_in_either_format_and_bad_ranges_are_refused(logged_in, user):
    assert logged_in.get("/usage/?start=9 Nov 2026&end=12 Nov 2026").context["end"].isoformat() == "2026-11-12"
    assert logged_in.get("/usage/?start=2026-11-09&end=2026-11-12").status_code == 200
    unknown = logged_in.get("/usage/?range=forever")
    assert unknown.status_code == 400 and "Choose one of the ranges offered." in unknown.content.decode()
    assert logged_in.get("/usage/activity/?start=2026-11-12&end=2026-11-01").status_code == 400


def test_the_activity_log_filters_and_pages(logged_in, user, other_user):
    key, _ = issue_key(user, "ci")
    now = timezone.now()
    for n in range(60):
        usage_row(user, when=now - timedelta(minutes=n), api_key=key if n % 3 == 0 else None, model=f"m/{n % 2}")
    usage_row(user, when=now - timedelta(hours=2), status="failed", cost="0")
    usage_row(other_user, when=now, model="m/0")  # someone else's

    first = logged_in.get("/usage/activity/")
    assert first.context["page"].paginator.count == 61 and len(first.context["page"].object_list) == 50
    assert 'id="older"' in first.content.decode()
    second = logged_in.get("/usage/activity/?range=30d&page=2")
    assert len(second.context["page"].object_list) == 11 and 'id="newer"' in second.content.decode()

    by_key = logged_in.get(f"/usage/activity/?source={key.pk}")
    assert by_key.context["log_totals"]["requests"] == 20
    assert {r.api_key_id for r in by_key.context["page"]} == {key.pk}
    chat = logged_in.get("/usage/activity/?source=chat&model=m/1")
    assert chat.context["log_totals"]["requests"] == 20  # the odd n that are not multiples of 3
    assert logged_in.get("/usage/activity/?status=failed").context["log_totals"]["requests"] == 1
    bad = logged_in.get("/usage/activity/?status=exploded")
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()


def test_the_activity_log_queries_do_not_grow_with_the_rows(logged_in, user, django_assert_max_num_queries):
    key, _ = issue_key(user, "ci")
    for n in range(40):
        usage_row(user, when=timezone.now() - timedelta(minutes=n), api_key=key)
    with django_assert_max_num_queries(9):
        logged_in.get("/usage/activity/")
