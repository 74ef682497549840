"""One Stripe subscription per customer, kept in step both ways: the app's calls reach the fake Stripe
(over HTTP), and the fake's signed webhooks reach the live app (over HTTP) and move the plan."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import Invoice, StripeEvent, Subscription
from billing.subscriptions import current_subscription

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(stripe, live_server):
    """The fake Stripe, its webhooks sent to the live app."""
    stripe.webhook_url = f"{live_server.url}/billing/stripe/webhook/"
    return stripe


def all_handled(results) -> bool:
    return bool(results) and all(status == 200 and result == "handled" for _, status, result in results)


def buy(fake, browser, plan="developer", **checkout) -> dict:
    """The first purchase: Checkout, paid, its events delivered."""
    response = browser.post(f"/billing/change/{plan}/")
    assert response.status_code == 302 and response["Location"].startswith("https://checkout.stripe.test/")
    stripe_subscription = fake.pay_checkout(**checkout)
    results = fake.send_events()
    assert all_handled(results), results
    return stripe_subscription


def end_local_period(person):
    """Time passes: the current period is over."""
    subscription = current_subscription(person)
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_start=subscription.current_period_start - timedelta(days=31),
        current_period_end=timezone.now() - timedelta(seconds=1),
    )


def test_the_first_purchase_goes_through_checkout_and_its_webhooks_start_the_plan(fake, browser, free_user):
    stripe_subscription = buy(fake, browser)
    subscription = current_subscription(free_user)
    assert subscription.plan.slug == "developer"
    assert subscription.stripe_customer_id == stripe_subscription["customer"]
    assert subscription.stripe_subscription_id == stripe_subscription["id"]
    assert int(subscription.current_period_end.timestamp()) == stripe_subscription["current_period_end"]
    [session] = fake.api_calls("POST", "/v1/checkout/sessions")
    assert session["form"]["customer_email"] == "fran@example.com"
    assert session["form"]["line_items[0][price_data][unit_amount]"] == "2900"
    invoice = Invoice.objects.get()
    assert (invoice.user, invoice.amount_paid, invoice.status) == (free_user, Decimal("29.00"), "paid")
    assert invoice.hosted_invoice_url.startswith("https://invoice.stripe.test/")


def test_developer_to_pro_updates_the_one_subscription_and_keeps_the_period(fake, browser, free_user):
    stripe_subscription = buy(fake, browser)
    before = current_subscription(free_user)
    assert "prorated" in browser.get("/billing/change/pro/").content.decode()
    page = browser.post("/billing/change/pro/", follow=True).content.decode()
    assert "You are now on the Pro plan. Stripe charged the prorated difference." in page

    assert len(fake.api_calls("POST", "/v1/checkout/sessions")) == 1  # no second Checkout
    [update] = fake.api_calls("POST", f"/v1/subscriptions/{stripe_subscription['id']}")
    item = stripe_subscription["items"]["data"][0]
    assert update["form"]["items[0][id]"] == item["id"]
    assert update["form"]["items[0][price_data][unit_amount]"] == "9900"
    assert update["form"]["proration_behavior"] == "always_invoice"
    assert update["form"]["metadata[plan]"] == "pro"
    assert len(fake.subscriptions) == 1

    now = current_subscription(free_user)
    assert now.plan.slug == "pro" and now.stripe_subscription_id == stripe_subscription["id"]
    assert (now.current_period_start, now.current_period_end) == (
        before.current_period_start,
        before.current_period_end,
    )
    results = fake.send_events()
    assert [t for t, _, _ in results] == ["invoice.paid", "customer.subscription.updated"] and all_handled(results)
    after_events = current_subscription(free_user)
    assert after_events.pk == now.pk and after_events.current_period_end == before.current_period_end
    proration = Invoice.objects.get(description="subscription update")
    assert Decimal(0) < proration.amount_paid <= Decimal(70)  # the difference for what is left of the period


def test_a_declined_card_leaves_the_plan_as_it_was(fake, browser, free_user):
    buy(fake, browser)
    fake.decline_cards = True
    page = browser.post("/billing/change/pro/", follow=True).content.decode()
    assert "Your plan was not changed" in page and "Your card was declined." in page
    assert current_subscription(free_user).plan.slug == "developer"


def test_a_downgrade_reaches_stripe_and_takes_effect_at_period_end_keeping_the_ids(fake, browser, free_user):
    stripe_subscription = buy(fake, browser, plan="pro")
    browser.post("/billing/change/developer/")
    [update] = fake.api_calls("POST", f"/v1/subscriptions/{stripe_subscription['id']}")
    assert update["form"]["items[0][price_data][unit_amount]"] == "2900"
    assert update["form"]["proration_behavior"] == "none"
    assert all_handled(fake.send_events())  # customer.subscription.updated: still a downgrade at period end
    subscription = current_subscription(free_user)
    assert (subscription.plan.slug, subscription.scheduled_plan.slug) == ("pro", "developer")

    end_local_period(free_user)
    downgraded = current_subscription(free_user)
    assert downgraded.plan.slug == "developer" and downgraded.pk != subscription.pk
    assert downgraded.stripe_subscription_id == stripe_subscription["id"]
    assert downgraded.stripe_customer_id == stripe_subscription["customer"]

    fake.end(stripe_subscription["id"])
    assert all_handled(fake.send_events())
    free = current_subscription(free_user)
    assert free.plan.slug == "free" and free.stripe_subscription_id == ""
    assert free.stripe_customer_id == stripe_subscription["customer"]  # the next Checkout reuses the customer


def test_cancel_reaches_stripe_keep_undoes_it_and_the_end_of_the_period_moves_to_free(fake, browser, free_user):
    stripe_subscription = buy(fake, browser)
    path = f"/v1/subscriptions/{stripe_subscription['id']}"
    browser.post("/billing/cancel/")
    assert fake.api_calls("POST", path)[-1]["form"] == {"cancel_at_period_end": "true"}
    assert current_subscription(free_user).scheduled_plan.slug == "free"
    browser.post("/billing/keep/")
    assert fake.api_calls("POST", path)[-1]["form"] == {"cancel_at_period_end": "false"}
    assert current_subscription(free_user).scheduled_plan is None
    assert all_handled(fake.send_events())
    assert current_subscription(free_user).scheduled_plan is None

    browser.post("/billing/cancel/")
    assert all_handled(fake.send_events())
    assert current_subscription(free_user).scheduled_plan.slug == "free"
    fake.renew(stripe_subscription["id"])  # cancelled at the period's end: Stripe deletes it
    assert [t for t, _, _ in fake.send_events()] == ["customer.subscription.deleted"]
    assert current_subscription(free_user).plan.slug == "free"


def test_the_period_rolls_when_the_renewal_is_paid(fake, browser, free_user):
    stripe_subscription = buy(fake, browser, period_start=timezone.now() - timedelta(days=31))
    subscription = current_subscription(free_user)
    # Over, but Stripe has not reported the renewal paid: the period does not roll by itself.
    assert subscription.plan.slug == "developer" and subscription.current_period_end < timezone.now()
    fake.renew(stripe_subscription["id"])
    assert [t for t, _, _ in fake.send_events()] == ["invoice.paid"]
    rolled = current_subscription(free_user)
    assert rolled.pk == subscription.pk and rolled.current_period_start == subscription.current_period_end
    assert rolled.current_period_end > timezone.now()


def test_a_failed_renewal_shows_a_banner_then_moves_to_free_after_the_grace_period(fake, browser, free_user, settings):
    stripe_subscription = buy(fake, browser)
    fake.renew(stripe_subscription["id"], paid=False)
    results = fake.send_events()
    assert [t for t, _, _ in results] == ["invoice.payment_failed", "customer.subscription.updated"]
    assert all_handled(results)
    page = browser.get("/usage/").content.decode()
    assert 'id="payment-overdue"' in page and "did not go through" in page
    assert current_subscription(free_user).plan.slug == "developer"  # within the grace period

    Subscription.objects.filter(user=free_user, is_active=True).update(
        payment_due_since=timezone.now() - timedelta(days=settings.BILLING_PAYMENT_GRACE_DAYS, seconds=1)
    )
    page = browser.get("/billing/").content.decode()
    assert 'id="plan-name">Free<' in page and 'id="payment-overdue"' not in page
    assert current_subscription(free_user).stripe_subscription_id == stripe_subscription["id"]
    fake.renew(stripe_subscription["id"], paid=False)  # Stripe keeps retrying: no banner about Free
    assert all_handled(fake.send_events())
    assert 'id="payment-overdue"' not in browser.get("/billing/").content.decode()

    fake.recover(stripe_subscription["id"])  # Stripe's retry succeeds later: the plan comes back
    assert all_handled(fake.send_events())
    assert current_subscription(free_user).plan.slug == "developer"


def test_every_event_delivered_twice_is_applied_once(fake, browser, free_user):
    stripe_subscription = buy(fake, browser)
    browser.post("/billing/change/pro/")
    fake.renew(stripe_subscription["id"])
    fake.send_events()
    rows, invoices, events = Subscription.objects.count(), Invoice.objects.count(), StripeEvent.objects.count()
    state = current_subscription(free_user)
    again = fake.send_again()
    assert len(again) == events and all(status == 200 and result == "duplicate" for _, status, result in again)
    assert (Subscription.objects.count(), Invoice.objects.count(), StripeEvent.objects.count()) == (
        rows,
        invoices,
        events,
    )
    after = current_subscription(free_user)
    assert (after.pk, after.plan.slug, after.current_period_end) == (state.pk, "pro", state.current_period_end)


def test_events_naming_our_subscription_with_another_customer_are_ignored(fake, browser, free_user):
    stripe_subscription = buy(fake, browser)
    fake.subscriptions[stripe_subscription["id"]]["customer"] = "cus_someone_else"
    fake.end(stripe_subscription["id"])
    assert all_handled(fake.send_events())
    assert current_subscription(free_user).plan.slug == "developer"


def test_the_customer_portal_opens_for_cards_and_invoices(fake, browser, free_user):
    assert "open-portal" not in browser.get("/billing/").content.decode()  # no Stripe customer yet
    stripe_subscription = buy(fake, browser)
    assert 'id="open-portal"' in browser.get("/billing/").content.decode()
    response = browser.post("/billing/portal/")
    assert response["Location"] == f"https://billing.stripe.test/p/session/{stripe_subscription['customer']}"
    [call] = fake.api_calls("POST", "/v1/billing_portal/sessions")
    assert call["form"]["return_url"] == "http://testserver/billing/"


def test_keep_after_a_downgrade_puts_the_price_back_on_stripe(fake, browser, free_user):
    stripe_subscription = buy(fake, browser, plan="pro")
    path = f"/v1/subscriptions/{stripe_subscription['id']}"
    browser.post("/billing/change/developer/")
    browser.post("/billing/keep/")
    restore = fake.api_calls("POST", path)[-1]["form"]
    assert restore["items[0][price_data][unit_amount]"] == "9900" and restore["metadata[plan]"] == "pro"
    assert restore["proration_behavior"] == "none"  # already paid for this period
    assert all_handled(fake.send_events())
    subscription = current_subscription(free_user)
    assert (subscription.plan.slug, subscription.scheduled_plan) == ("pro", None)


def test_the_subscription_created_before_the_checkout_event_arrives_starts_the_plan_once(fake, browser, free_user):
    browser.post("/billing/change/developer/")
    fake.pay_checkout()
    fake.queued.sort(key=lambda event: event["type"] != "customer.subscription.created")  # out of order
    assert [t for t, _, _ in fake.send_events()][0] == "customer.subscription.created"
    assert Subscription.objects.filter(user=free_user, plan__slug="developer").count() == 1
    assert current_subscription(free_user).stripe_subscription_id == next(iter(fake.subscriptions))


CONFIRM_DELETION = {"password": "correct horse battery", "confirmation": "delete my account"}


def test_deleting_the_account_stops_the_stripe_renewal_and_keeps_the_invoices(fake, browser, free_user):
    stripe_subscription = buy(fake, browser)
    path = f"/v1/subscriptions/{stripe_subscription['id']}"
    assert browser.post("/account/delete/", CONFIRM_DELETION)["Location"] == "/"
    assert fake.api_calls("POST", path)[-1]["form"] == {"cancel_at_period_end": "true"}
    free_user.refresh_from_db()
    assert free_user.deleted_at is not None
    assert current_subscription(free_user).scheduled_plan.slug == "free"
    assert Invoice.objects.filter(user=free_user).count() == 1  # kept for accounting
    assert all_handled(fake.send_events())  # Stripe's word of the cancellation reaches the tombstone
    assert current_subscription(free_user).scheduled_plan.slug == "free"
    fake.renew(stripe_subscription["id"])  # the paid period ends: Stripe deletes the subscription
    assert [t for t, _, _ in fake.send_events()] == ["customer.subscription.deleted"]
    assert current_subscription(free_user).plan.slug == "free"


def test_when_stripe_cannot_cancel_nothing_is_deleted(fake, browser, free_user):
    buy(fake, browser)
    fake.refuse_with = 500
    response = browser.post("/account/delete/", CONFIRM_DELETION)
    assert response.status_code == 422
    assert "nothing was deleted" in response.content.decode()
    free_user.refresh_from_db()
    assert free_user.deleted_at is None and free_user.is_active and free_user.email == "fran@example.com"
    assert current_subscription(free_user).scheduled_plan is None
