"""Stripe webhook events, one method per event type, keeping the local subscription in step with the
customer's one Stripe subscription. Events are matched by subscription id (and checked against the
customer id); the ids carry over every local plan change and period roll, so no event is lost. A
duplicate delivery (same event id) is recognised and acknowledged without acting twice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from aihub.inputs import whole_number

from . import plan_changes
from .models import Invoice, Plan, StripeEvent, Subscription
from .subscriptions import DEFAULT_PLAN, change_plan_now, current_subscription, start_subscription

logger = logging.getLogger(__name__)

PAID = ("paid", "no_payment_required")
LIVE = ("active", "trialing")
OVERDUE = ("past_due", "unpaid")
ENDED = ("canceled", "incomplete_expired")


def _moment(epoch) -> datetime | None:
    return datetime.fromtimestamp(int(epoch), tz=UTC) if epoch else None


def _dollars(cents) -> Decimal:
    return Decimal(int(cents or 0)) / 100


def _invoice_subscription_id(invoice: dict) -> str:
    """Older API versions name the subscription on the invoice, newer ones under parent."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return invoice.get("subscription") or details.get("subscription") or ""


def _invoice_period(invoice: dict) -> tuple[datetime | None, datetime | None]:
    periods = [line["period"] for line in (invoice.get("lines") or {}).get("data", []) if line.get("period")]
    if not periods:
        return None, None
    return _moment(min(p["start"] for p in periods)), _moment(max(p["end"] for p in periods))


def _matching(subscription_id: str, customer_id: str | None) -> Subscription | None:
    """The active local subscription tied to this Stripe subscription, locked; None if there is none
    or it belongs to another customer."""
    if not subscription_id:
        return None
    subscription = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "user")
        .filter(stripe_subscription_id=subscription_id, is_active=True)
        .first()
    )
    if subscription and customer_id and subscription.stripe_customer_id not in ("", customer_id):
        logger.warning("Stripe subscription %s: customer %s is not ours", subscription_id, customer_id)
        return None
    return subscription


def _mark_overdue(subscription: Subscription) -> None:
    """Past due from the first failure on; not on Free (Stripe still retries after the grace period)."""
    if subscription.payment_due_since is None and subscription.paid_through_stripe:
        Subscription.objects.filter(pk=subscription.pk).update(payment_due_since=timezone.now())


def _start_paid_plan(user, plan: Plan, customer_id: str, subscription_id: str) -> None:
    """A first purchase: `plan` starts now (Stripe's billing period starts with it), tied to the ids."""
    subscription = current_subscription(user)
    if subscription_id and subscription.stripe_subscription_id == subscription_id:
        return  # already linked by the other of checkout.session.completed / customer.subscription.created
    subscription = start_subscription(user, plan, reason="Stripe: paid")
    Subscription.objects.filter(pk=subscription.pk).update(
        stripe_customer_id=customer_id or "", stripe_subscription_id=subscription_id or "", payment_due_since=None
    )


def _text(value) -> str:
    """A string field of an event (ids): '' when absent or of another type."""
    return value if isinstance(value, str) else ""


def _metadata(obj: dict) -> dict:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _user_of(metadata: dict):
    """The user our metadata names (we write the id as a string); None for any other value."""
    user_id = metadata.get("user_id")
    user_id = whole_number(user_id) if isinstance(user_id, str) else None
    return get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None


def _plan_of(metadata: dict) -> Plan | None:
    slug = metadata.get("plan")
    return Plan.objects.filter(slug=slug).first() if isinstance(slug, str) else None


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
        metadata = _metadata(session)
        user, plan = _user_of(metadata), _plan_of(metadata)
        if user is None or plan is None:
            logger.warning("checkout %s names no known user or plan: %s", session.get("id"), metadata)
            return
        _start_paid_plan(user, plan, _text(session.get("customer")), _text(session.get("subscription")))

    def on_customer_subscription_created(self, stripe_subscription: dict) -> None:
        self.on_customer_subscription_updated(stripe_subscription)

    def on_customer_subscription_updated(self, stripe_subscription: dict) -> None:
        """Follow Stripe's view of the subscription: its plan (an upgrade now, a downgrade at the
        period's end), a cancellation at the period's end, and whether its payments are overdue."""
        subscription = _matching(stripe_subscription.get("id", ""), stripe_subscription.get("customer"))
        status = stripe_subscription.get("status")
        metadata = _metadata(stripe_subscription)
        plan = _plan_of(metadata)
        if subscription is None:
            # Created before checkout.session.completed arrived: linked through the metadata we set.
            user = _user_of(metadata)
            if user is not None and plan is not None and status in LIVE:
                _start_paid_plan(
                    user, plan, _text(stripe_subscription.get("customer")), _text(stripe_subscription.get("id"))
                )
            return
        if status in ENDED:
            self.on_customer_subscription_deleted(stripe_subscription)
            return
        if status in OVERDUE:
            _mark_overdue(subscription)
            return
        if status in LIVE and subscription.payment_due_since is not None:
            Subscription.objects.filter(pk=subscription.pk).update(payment_due_since=None)
        if plan is None or status not in LIVE:
            return
        target = Plan.objects.get(slug=DEFAULT_PLAN) if stripe_subscription.get("cancel_at_period_end") else plan
        kind = plan_changes.kind_of_change(subscription, target)
        if kind == plan_changes.CURRENT:
            Subscription.objects.filter(pk=subscription.pk).update(scheduled_plan=None)
        elif kind == plan_changes.DOWNGRADE:
            Subscription.objects.filter(pk=subscription.pk).update(scheduled_plan=target)
        elif kind == plan_changes.UPGRADE:
            change_plan_now(subscription, target, reason="Stripe: subscription updated")

    def on_customer_subscription_deleted(self, stripe_subscription: dict) -> None:
        """Stripe ended the subscription (cancelled or unpaid): back to Free, the customer kept."""
        subscription = _matching(stripe_subscription.get("id", ""), stripe_subscription.get("customer"))
        if subscription is None:
            return
        if subscription.plan.slug != DEFAULT_PLAN:
            subscription = start_subscription(
                subscription.user, Plan.objects.get(slug=DEFAULT_PLAN), reason="Stripe: subscription ended"
            )
        Subscription.objects.filter(pk=subscription.pk).update(stripe_subscription_id="", payment_due_since=None)

    def on_invoice_paid(self, invoice: dict) -> None:
        """A paid renewal rolls the period to the one Stripe billed; any overdue payment is settled."""
        self._record(invoice)
        subscription = _matching(_invoice_subscription_id(invoice), invoice.get("customer"))
        if subscription is None:
            return
        changes: dict[str, Any] = {"payment_due_since": None}
        start, end = _invoice_period(invoice)
        reason = invoice.get("billing_reason")
        # The first invoice sets Stripe's period; a renewal only ever moves it forward (late deliveries).
        if end and (
            reason == "subscription_create"
            or (reason == "subscription_cycle" and end > subscription.current_period_end)
        ):
            changes.update(current_period_start=start, current_period_end=end)
        Subscription.objects.filter(pk=subscription.pk).update(**changes)

    def on_invoice_payment_failed(self, invoice: dict) -> None:
        """Past due: a banner, Stripe retries; Free when the grace period passes unpaid."""
        self._record(invoice)
        subscription = _matching(_invoice_subscription_id(invoice), invoice.get("customer"))
        if subscription is not None:
            _mark_overdue(subscription)

    @staticmethod
    def _record(invoice: dict) -> None:
        """Keep the invoice for statements (the latest state of it wins)."""
        subscription_id = _invoice_subscription_id(invoice)
        customer_id = invoice.get("customer") or ""
        owners = Subscription.objects.values_list("user_id", flat=True)
        user_id = (subscription_id and owners.filter(stripe_subscription_id=subscription_id).first()) or (
            customer_id and owners.filter(stripe_customer_id=customer_id).first()
        )
        if not user_id:
            logger.warning("invoice %s matches no customer of ours", invoice.get("id"))
            return
        start, end = _invoice_period(invoice)
        Invoice.objects.update_or_create(
            stripe_invoice_id=invoice["id"],
            defaults={
                "user_id": user_id,
                "stripe_subscription_id": subscription_id,
                "number": invoice.get("number") or "",
                "status": invoice.get("status") or "",
                "description": (invoice.get("billing_reason") or "").replace("_", " "),
                "amount_due": _dollars(invoice.get("amount_due")),
                "amount_paid": _dollars(invoice.get("amount_paid")),
                "hosted_invoice_url": invoice.get("hosted_invoice_url") or "",
                "period_start": start,
                "period_end": end,
                "created_at": _moment(invoice.get("created")) or timezone.now(),
            },
        )
