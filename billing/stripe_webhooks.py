"""Stripe webhook events, one method per event type. A duplicate delivery (same event id) is
recognised and acknowledged without acting twice, so Stripe stops retrying it."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Plan, StripeEvent, Subscription
from .subscriptions import DEFAULT_PLAN, start_subscription

logger = logging.getLogger(__name__)

PAID = ("paid", "no_payment_required")


class StripeWebhook:
    def handle(self, event: dict) -> str:
        """'handled', 'ignored' (an event type we do not act on) or 'duplicate'."""
        with transaction.atomic():
            # The unique event id makes a concurrent second delivery wait here, then see the first.
            _, created = StripeEvent.objects.get_or_create(
                event_id=event["id"], defaults={"event_type": event.get("type", "")}
            )
            if not created:
                return "duplicate"
            method = getattr(self, "on_" + event.get("type", "").replace(".", "_"), None)
            if method is None:
                return "ignored"
            method(event["data"]["object"])
            return "handled"

    def on_checkout_session_completed(self, session: dict) -> None:
        """A paid Checkout: the plan it was for starts now."""
        if session.get("payment_status") not in PAID:
            logger.info("checkout %s completed unpaid (%s)", session.get("id"), session.get("payment_status"))
            return
        metadata = session.get("metadata") or {}
        user = get_user_model().objects.filter(pk=metadata.get("user_id")).first()
        plan = Plan.objects.filter(slug=metadata.get("plan")).first()
        if user is None or plan is None:
            logger.warning("checkout %s names no known user or plan: %s", session.get("id"), metadata)
            return
        subscription = start_subscription(user, plan)
        subscription.stripe_customer_id = session.get("customer") or ""
        subscription.stripe_subscription_id = session.get("subscription") or ""
        subscription.save(update_fields=["stripe_customer_id", "stripe_subscription_id"])

    def on_customer_subscription_deleted(self, stripe_subscription: dict) -> None:
        """Stripe ended the subscription (cancelled or unpaid): back to Free."""
        subscription = Subscription.objects.filter(
            stripe_subscription_id=stripe_subscription.get("id"), is_active=True
        ).first()
        if subscription is not None:
            start_subscription(subscription.user, Plan.objects.get(slug=DEFAULT_PLAN))
