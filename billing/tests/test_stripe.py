"""Payments through Stripe: Checkout created over its HTTP API (a local stand-in here, no network),
and plan changes only from webhooks whose signature is made with the endpoint secret."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from billing import stripe_api
from billing.models import StripeEvent, Subscription
from billing.subscriptions import current_subscription

from .conftest import STRIPE_SECRET as SECRET
from .fake_stripe import FakeStripe

pytestmark = pytest.mark.django_db


def event(event_id: str, event_type: str, obj: dict) -> bytes:
    return json.dumps({"id": event_id, "type": event_type, "data": {"object": obj}}).encode()


def deliver(payload: bytes, signature: str | None = None):
    signature = stripe_api.sign(payload, SECRET) if signature is None else signature
    return Client().post(
        "/billing/stripe/webhook/", payload, content_type="application/json", headers={"Stripe-Signature": signature}
    )


def paid_checkout(buyer, plan="pro", event_id="evt_1") -> bytes:
    return event(
        event_id,
        "checkout.session.completed",
        {
            "id": "cs_test_1",
            "payment_status": "paid",
            "customer": "cus_1",
            "subscription": "sub_1",
            "metadata": {"user_id": str(buyer.pk), "plan": plan},
        },
    )


def test_an_upgrade_goes_to_stripe_checkout_and_changes_nothing_yet(stripe, browser, free_user):
    page = browser.get("/billing/change/pro/").content.decode()
    assert "Continue to payment" in page
    response = browser.post("/billing/change/pro/")
    assert response.status_code == 302 and response["Location"] == "https://checkout.stripe.test/c/pay/cs_1"
    call = stripe.calls[0]
    assert call["path"] == "/v1/checkout/sessions" and call["auth"].startswith("Basic ")
    assert call["form"]["mode"] == "subscription"
    assert call["form"]["line_items[0][price_data][unit_amount]"] == "9900"
    assert call["form"]["line_items[0][price_data][recurring][interval]"] == "month"
    assert call["form"]["metadata[plan]"] == "pro" and call["form"]["metadata[user_id]"] == str(free_user.pk)
    assert current_subscription(free_user).plan.slug == "free"


def test_stripe_refusing_the_checkout_is_shown_and_changes_nothing(settings, stripe, browser, free_user):
    refusing = FakeStripe(SECRET, refuse_with=401)
    settings.STRIPE_API_BASE = refusing.url
    try:
        page = browser.post("/billing/change/pro/", follow=True).content.decode()
    finally:
        refusing.stop()
    assert "The payment page could not be opened" in page and "Invalid API Key provided" in page
    assert current_subscription(free_user).plan.slug == "free"


def test_a_signed_paid_checkout_webhook_starts_the_plan(stripe, free_user):
    response = deliver(paid_checkout(free_user))
    assert response.status_code == 200 and response.json() == {"result": "handled"}
    subscription = current_subscription(free_user)
    assert subscription.plan.slug == "pro"
    assert (subscription.stripe_customer_id, subscription.stripe_subscription_id) == ("cus_1", "sub_1")


def test_a_duplicate_event_is_acknowledged_and_applied_once(stripe, free_user):
    payload = paid_checkout(free_user)
    assert deliver(payload).json() == {"result": "handled"}
    again = deliver(payload)
    assert again.status_code == 200 and again.json() == {"result": "duplicate"}
    assert Subscription.objects.filter(user=free_user, plan__slug="pro").count() == 1
    assert StripeEvent.objects.count() == 1


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "t=123",
        "v1=abc",
        "t=abc,v1=abc",
        stripe_api.sign(b"another body", SECRET),
        stripe_api.sign(b"{}", "whsec_someone_else"),
    ],
)
def test_an_unsigned_or_wrongly_signed_webhook_is_refused(stripe, free_user, signature):
    payload = paid_checkout(free_user)
    if signature == stripe_api.sign(b"{}", "whsec_someone_else"):
        signature = stripe_api.sign(payload, "whsec_someone_else")
    response = deliver(payload, signature)
    assert response.status_code == 400 and "invalid signature" in response.json()["error"]
    assert current_subscription(free_user).plan.slug == "free"
    assert not StripeEvent.objects.exists()


def test_an_old_signature_is_refused_as_a_replay(stripe, free_user):
    payload = paid_checkout(free_user)
    stale = stripe_api.sign(payload, SECRET, timestamp=int(time.time()) - stripe_api.SIGNATURE_TOLERANCE_SECONDS - 5)
    assert deliver(payload, stale).status_code == 400


def test_an_unpaid_checkout_and_unknown_events_change_nothing(stripe, free_user):
    unpaid = event(
        "evt_2",
        "checkout.session.completed",
        {"payment_status": "unpaid", "metadata": {"user_id": str(free_user.pk), "plan": "pro"}},
    )
    assert deliver(unpaid).json() == {"result": "handled"}
    assert deliver(event("evt_3", "invoice.created", {})).json() == {"result": "ignored"}
    assert current_subscription(free_user).plan.slug == "free"


def test_a_subscription_ended_by_stripe_moves_the_user_to_free(stripe, free_user):
    deliver(paid_checkout(free_user))
    deliver(event("evt_9", "customer.subscription.deleted", {"id": "sub_1"}))
    assert current_subscription(free_user).plan.slug == "free"


def test_without_stripe_keys_the_webhook_does_not_exist(free_user):
    assert deliver(paid_checkout(free_user)).status_code == 404
