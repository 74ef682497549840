"""A user's subscription and billing period."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import audit

from .models import Plan, Subscription

DEFAULT_PLAN = "free"


def add_month(moment: datetime, months: int = 1) -> datetime:
    """The same day `months` months later (earlier when negative), or the month's last day."""
    year, month = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    month += 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@transaction.atomic
def start_subscription(
    user, plan: Plan, now: datetime | None = None, *, period=None, actor=None, reason: str = ""
) -> Subscription:
    """End the active subscription (kept as history) and start `plan`: a fresh period from now, or the
    (start, end) given. The Stripe ids carry over, so Stripe's later events still find the user.
    A change of plan goes to the audit log: made by `actor` (None: the system) for `reason`."""
    now = now or timezone.now()
    active = Subscription.objects.filter(user=user, is_active=True)
    previous: dict[str, Any] = dict(
        active.values("plan__slug", "stripe_customer_id", "stripe_subscription_id").first() or {}
    )
    previous_plan = previous.pop("plan__slug", None)
    active.update(is_active=False, ended_at=now)
    start, end = period or (now, add_month(now))
    subscription = Subscription.objects.create(
        user=user, plan=plan, started_at=now, current_period_start=start, current_period_end=end, **previous
    )
    if previous_plan is not None and previous_plan != plan.slug:
        audit.record(actor, audit.Action.PLAN_CHANGED, user, {"from": previous_plan, "to": plan.slug, "reason": reason})
    return subscription


def change_plan_now(subscription: Subscription, plan: Plan, *, actor=None, reason: str = "") -> Subscription:
    """Switch to `plan` at once within the current period, so the period's usage stays on the meters."""
    return start_subscription(
        subscription.user,
        plan,
        period=(subscription.current_period_start, subscription.current_period_end),
        actor=actor,
        reason=reason,
    )


def _active(user) -> Subscription | None:
    return Subscription.objects.select_related("plan", "scheduled_plan").filter(user=user, is_active=True).first()


def current_subscription(user) -> Subscription:
    """The active subscription brought up to date (period rolled, scheduled change or overdue payment
    applied); Free if the user has none."""
    subscription = _active(user)
    if subscription is None:
        return start_subscription(user, Plan.objects.get(slug=DEFAULT_PLAN))
    if subscription.needs_update(timezone.now()):
        subscription = _bring_up_to_date(subscription)
    return subscription


def payment_grace() -> timedelta:
    return timedelta(days=settings.BILLING_PAYMENT_GRACE_DAYS)


@transaction.atomic
def _bring_up_to_date(subscription: Subscription) -> Subscription:
    """Move to the period that contains now, switching to a scheduled plan at the end of its period.
    A period Stripe bills rolls only when Stripe reports the renewal paid (invoice.paid); a payment
    overdue longer than the grace period moves the user to Free (the Stripe ids stay, so a late
    payment reported by Stripe restores the plan)."""
    # Locked: two requests crossing the period end must not both roll it (or both switch plans).
    locked = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "scheduled_plan")
        .filter(pk=subscription.pk, is_active=True)
        .first()
    ) or _active(subscription.user_id)  # None: another request switched plans meanwhile
    assert locked is not None  # a user always has an active subscription once they have had one
    subscription = locked
    now = timezone.now()
    while subscription.current_period_end <= now:
        if subscription.scheduled_plan is not None:
            subscription = start_subscription(
                subscription.user,
                subscription.scheduled_plan,
                now=subscription.current_period_end,
                reason="scheduled change at the period's end",
            )
            continue
        if subscription.paid_through_stripe:
            break
        subscription.current_period_start = subscription.current_period_end
        subscription.current_period_end = add_month(subscription.current_period_end)
        subscription.save(update_fields=["current_period_start", "current_period_end"])
    overdue_since = subscription.overdue_since(now)
    if overdue_since is not None and now >= overdue_since + payment_grace():
        start_subscription(subscription.user, Plan.objects.get(slug=DEFAULT_PLAN), now=now, reason="payment overdue")
    current = _active(subscription.user_id)
    assert current is not None
    return current
