"""Without a payment provider nobody takes a paid plan for free: people request it, an operator
approves it in admin (the plan changes at once, within the current period), or declines it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from aihub.testing import logged_in_client
from billing import rollups
from billing.models import Plan, PlanRequest, Subscription, UsageRecord
from billing.subscriptions import current_subscription

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/billing/planrequest/"


@pytest.fixture
def operator(django_user_model):
    return logged_in_client(django_user_model.objects.create_superuser("ops@example.com", "correct horse battery"))


def act(operator, action: str, *requests: PlanRequest):
    return operator.post(
        CHANGELIST, {"action": action, "_selected_action": [r.pk for r in requests]}, follow=True
    ).content.decode()


@pytest.mark.parametrize("debug", [True, False])
def test_a_user_cannot_give_themselves_a_paid_plan_without_a_payment_provider(settings, browser, free_user, debug):
    settings.DEBUG = debug
    response = browser.post("/billing/change/pro/")
    assert response.status_code == 403
    assert "cannot be taken without payment here" in response.content.decode()
    assert current_subscription(free_user).plan.slug == "free"
    assert Subscription.objects.filter(user=free_user).count() == 1


def test_the_billing_page_offers_a_request_instead_of_an_upgrade(browser):
    page = browser.get("/billing/").content.decode()
    assert 'id="request-pro"' in page and 'id="request-developer"' in page and 'id="upgrade-pro"' not in page
    confirm = browser.get("/billing/change/pro/").content.decode()
    assert "Request this plan" in confirm and 'action="/billing/request/pro/"' in confirm


def test_a_request_is_stored_for_the_admin_and_mailed_to_the_admins(settings, browser, free_user):
    settings.ADMINS = [("Ops", "ops@example.com")]
    page = browser.post("/billing/request/pro/", follow=True).content.decode()
    assert "Your request for the Pro plan was sent" in page
    assert 'id="pending-request"' in page and 'id="requested-pro"' in page
    plan_request = PlanRequest.objects.get()
    assert (plan_request.user, plan_request.plan.slug, plan_request.status) == (free_user, "pro", "pending")
    assert current_subscription(free_user).plan.slug == "free"
    [message] = mail.outbox
    assert message.to == ["ops@example.com"] and "fran@example.com asks for Pro" in message.subject
    assert "http://testserver/admin/billing/planrequest/" in message.body
    browser.post("/billing/request/pro/")  # asked again: still one request, no second mail
    assert PlanRequest.objects.count() == 1 and len(mail.outbox) == 1


def test_without_admins_the_request_is_kept_and_nobody_is_mailed(settings, browser):
    settings.ADMINS = []
    browser.post("/billing/request/developer/")
    assert PlanRequest.objects.filter(status="pending").count() == 1 and mail.outbox == []


def test_a_new_request_replaces_the_pending_one_and_can_be_withdrawn(browser, free_user):
    browser.post("/billing/request/developer/")
    browser.post("/billing/request/pro/")
    assert list(PlanRequest.objects.values_list("plan__slug", "status")) == [("pro", "pending")]
    browser.post("/billing/request-withdraw/")
    assert list(PlanRequest.objects.values_list("status", flat=True)) == ["withdrawn"]
    assert 'id="pending-request"' not in browser.get("/billing/").content.decode()


def test_requests_only_for_upgrades_to_listed_plans(browser, free_user):
    assert "already on the Free plan" in browser.post("/billing/request/free/", follow=True).content.decode()
    assert "contact form" in browser.post("/billing/request/enterprise/", follow=True).content.decode()
    assert browser.post("/billing/request/no-such-plan/").status_code == 404
    assert browser.get("/billing/request/pro/").status_code == 405
    assert not PlanRequest.objects.exists()


def test_an_operator_approves_in_admin_and_the_plan_changes_within_the_period(browser, operator, free_user):
    before = current_subscription(free_user)
    UsageRecord.objects.create(
        user=free_user, model_slug="m", prompt_tokens=700, completion_tokens=300, status="complete"
    )
    rollups.rebuild()  # written here, not by metering: its rollups too
    browser.post("/billing/request/pro/")
    plan_request = PlanRequest.objects.get()
    assert "fran@example.com" in operator.get(CHANGELIST).content.decode()

    assert "1 request(s) approved" in act(operator, "approve", plan_request)
    now = current_subscription(free_user)
    assert now.plan.slug == "pro"
    assert (now.current_period_start, now.current_period_end) == (
        before.current_period_start,
        before.current_period_end,
    )
    assert "1,000 of 25,000,000" in browser.get("/billing/").content.decode()  # the period's usage stays counted
    plan_request.refresh_from_db()
    assert plan_request.status == "approved" and plan_request.decided_by.email == "ops@example.com"
    assert mail.outbox[-1].to == ["fran@example.com"] and "is now active" in mail.outbox[-1].body

    # Deciding again changes nothing.
    assert "1 request(s) were no longer pending" in act(operator, "decline", plan_request)
    assert current_subscription(free_user).plan.slug == "pro"


def test_a_declined_request_leaves_the_plan(browser, operator, free_user):
    browser.post("/billing/request/developer/")
    assert "1 request(s) declined" in act(operator, "decline", PlanRequest.objects.get())
    assert current_subscription(free_user).plan.slug == "free"
    assert PlanRequest.objects.get().status == "declined"


def test_people_who_are_not_staff_cannot_decide_requests(browser, free_user):
    browser.post("/billing/request/pro/")
    response = browser.post(CHANGELIST, {"action": "approve", "_selected_action": [PlanRequest.objects.get().pk]})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert current_subscription(free_user).plan.slug == "free"


def test_downgrades_and_cancellations_stay_self_service(browser, free_user):
    from billing.subscriptions import start_subscription

    start_subscription(free_user, Plan.objects.get(slug="pro"))
    browser.post("/billing/change/developer/")
    assert current_subscription(free_user).scheduled_plan.slug == "developer"
    browser.post("/billing/cancel/")
    assert current_subscription(free_user).scheduled_plan.slug == "free"


def test_a_demo_server_may_give_paid_plans_away_and_the_upgrade_keeps_the_period(settings, browser, free_user):
    settings.BILLING_SELF_SERVICE_UPGRADES = True
    before = current_subscription(free_user)
    assert 'id="upgrade-pro"' in browser.get("/billing/").content.decode()
    assert "right away" in browser.get("/billing/change/pro/").content.decode()
    assert "You are now on the Pro plan." in browser.post("/billing/change/pro/", follow=True).content.decode()
    now = current_subscription(free_user)
    assert now.plan.slug == "pro" and now.current_period_start == before.current_period_start
    assert now.current_period_end == before.current_period_end and now.current_period_end > timezone.now() + timedelta(
        days=1
    )
