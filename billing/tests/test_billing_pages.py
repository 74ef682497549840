"""The billing page: plan, period, usage against quota, and changing plans without Stripe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from billing import rollups
from billing.models import EnterpriseInquiry, Plan, Subscription, UsageRecord
from billing.subscriptions import current_subscription, start_subscription

pytestmark = pytest.mark.django_db


def test_it_shows_the_plan_period_and_usage_against_the_quota(browser, free_user):
    UsageRecord.objects.create(
        user=free_user, model_slug="m", prompt_tokens=30_000, completion_tokens=20_000, status="complete"
    )
    rollups.rebuild()  # written here, not by metering: its rollups too
    page = browser.get("/billing/").content.decode()
    subscription = current_subscription(free_user)
    assert 'id="plan-name">Free<' in page
    assert subscription.current_period_end.strftime("%-d %b %Y") in page
    assert 'id="token-meter" max="100" value="25"' in page  # 50,000 of 200,000
    assert "50,000 of 200,000 (25%)" in page
    assert 'id="operator-note"' in page  # no Stripe keys: an operator assigns plans
    for name in ("Developer", "Pro", "Enterprise"):
        assert f'<th class="">{name}</th>' in page
    assert 'id="request-pro"' in page and "Contact us" in page  # no payment provider: paid plans on request


def test_on_a_demo_server_an_upgrade_asks_for_confirmation_then_takes_effect_at_once(settings, browser, free_user):
    settings.BILLING_SELF_SERVICE_UPGRADES = True
    confirm = browser.get("/billing/change/pro/")
    assert confirm.status_code == 200 and "right away" in confirm.content.decode()
    assert current_subscription(free_user).plan.slug == "free"  # a GET changes nothing
    response = browser.post("/billing/change/pro/", follow=True)
    assert current_subscription(free_user).plan.slug == "pro"
    assert "You are now on the Pro plan." in response.content.decode()
    history = list(
        Subscription.objects.filter(user=free_user).order_by("started_at").values_list("plan__slug", "is_active")
    )
    assert history == [("free", False), ("pro", True)]


def test_a_downgrade_is_scheduled_for_the_end_of_the_period_and_applied_then(browser, free_user):
    start_subscription(free_user, Plan.objects.get(slug="pro"))
    confirm = browser.get("/billing/change/developer/").content.decode()
    assert "until" in confirm and "then changes to <strong>Developer</strong>" in confirm
    browser.post("/billing/change/developer/")
    subscription = current_subscription(free_user)
    assert (subscription.plan.slug, subscription.scheduled_plan.slug) == ("pro", "developer")
    assert 'id="scheduled-change"' in browser.get("/billing/").content.decode()

    period_end = timezone.now() - timedelta(days=1)
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_end=period_end, current_period_start=period_end - timedelta(days=30)
    )
    rolled = current_subscription(free_user)
    assert rolled.plan.slug == "developer" and rolled.current_period_start == period_end
    assert rolled.current_period_end > timezone.now()
    old = Subscription.objects.get(pk=subscription.pk)
    assert (old.is_active, old.ended_at) == (False, period_end)


def test_a_period_without_a_scheduled_change_just_rolls_forward(free_user):
    subscription = current_subscription(free_user)
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_start=subscription.current_period_start - timedelta(days=70),
        current_period_end=subscription.current_period_end - timedelta(days=70),
    )
    rolled = current_subscription(free_user)
    assert rolled.pk == subscription.pk and rolled.current_period_start <= timezone.now() < rolled.current_period_end


def test_cancel_moves_to_free_at_period_end_and_keep_undoes_it(browser, free_user):
    start_subscription(free_user, Plan.objects.get(slug="developer"))
    assert "Cancel at period end" in browser.get("/billing/cancel/").content.decode()
    browser.post("/billing/cancel/")
    assert current_subscription(free_user).scheduled_plan.slug == "free"
    browser.post("/billing/keep/")
    assert current_subscription(free_user).scheduled_plan is None


def test_it_refuses_changes_it_cannot_make(browser, free_user):
    assert "already on the Free plan" in browser.get("/billing/change/free/", follow=True).content.decode()
    assert "contact form" in browser.get("/billing/change/enterprise/", follow=True).content.decode()
    assert browser.get("/billing/change/no-such-plan/").status_code == 404
    Plan.objects.filter(slug="pro").update(is_public=False)
    assert browser.post("/billing/change/pro/").status_code == 404
    assert current_subscription(free_user).plan.slug == "free"
    assert "nothing to cancel" in browser.post("/billing/cancel/", follow=True).content.decode()


def test_the_enterprise_form_is_stored_and_mailed_to_the_admins(settings, browser, free_user):
    settings.ADMINS = [("Ops", "ops@example.com")]
    page = browser.get("/billing/enterprise/").content.decode()
    assert 'id="enterprise-form"' in page and "css/billing.css" in page and 'value="fran@example.com"' in page
    bad = browser.post("/billing/enterprise/", {"company": "", "contact_email": "nope", "message": ""})
    assert bad.status_code == 422 and not EnterpriseInquiry.objects.exists()
    assert 'class="field has-error"' in bad.content.decode() and "Enter a valid email address." in bad.content.decode()
    browser.post(
        "/billing/enterprise/",
        {
            "company": "Acme",
            "contact_email": "cto@acme.test",
            "expected_monthly_tokens": "500000000",
            "message": "We need SSO.",
        },
    )
    inquiry = EnterpriseInquiry.objects.get()
    assert (inquiry.user, inquiry.company, inquiry.expected_monthly_tokens) == (free_user, "Acme", 500_000_000)
    [message] = mail.outbox
    assert message.to == ["ops@example.com"] and "Acme" in message.subject and "We need SSO." in message.body


def test_pages_need_a_login():
    assert Client().get("/billing/").status_code == 302
    assert Client().get("/usage/").status_code == 302


def test_the_statement_lists_tokens_and_cost_by_model_as_a_page_and_csv(browser, free_user, other_user):
    november = datetime(2026, 11, 10, tzinfo=UTC)
    for owner, model, cost in [
        (free_user, "a/model", "0.5"),
        (free_user, "a/model", "0.25"),
        (free_user, "b/model", "1"),
        (other_user, "a/model", "9"),
    ]:
        record = UsageRecord.objects.create(
            user=owner, model_slug=model, prompt_tokens=10, completion_tokens=5, cost=Decimal(cost), status="complete"
        )
        UsageRecord.objects.filter(pk=record.pk).update(created_at=november)
    UsageRecord.objects.filter(
        pk=UsageRecord.objects.create(user=free_user, model_slug="c/model", status="complete", cost=Decimal(7)).pk
    ).update(created_at=november.replace(month=10))
    rollups.rebuild()  # written here, not by metering: their rollups too
    assert "November 2026" in browser.get("/billing/statements/").content.decode()
    page = browser.get("/billing/statements/2026-11/").content.decode()
    assert "a/model" in page and "b/model" in page and "c/model" not in page and "$1.75" in page
    csv_lines = browser.get("/billing/statements/2026-11.csv").content.decode().splitlines()
    assert csv_lines[0].startswith("month,kind,item,from,to,requests")
    assert csv_lines[1:] == [  # no plan held in November (the account is newer), no invoice
        "2026-11,usage,a/model,,,2,20,10,30,0.75000000,",
        "2026-11,usage,b/model,,,1,10,5,15,1.00000000,",
        "2026-11,usage,TOTAL,,,3,30,15,45,1.75000000,",
    ]
    assert browser.get("/billing/statements/2026-13/").status_code == 404
