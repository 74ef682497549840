"""Changing plans: upgrades take effect at once (a new period starts), downgrades and cancellations
at the end of the current period (stored on the subscription, applied when the period rolls)."""

from __future__ import annotations

from django.db import transaction

from .models import Plan, Subscription
from .subscriptions import DEFAULT_PLAN, current_subscription, start_subscription

UPGRADE = "upgrade"
DOWNGRADE = "downgrade"
CURRENT = "current"
CONTACT = "contact"  # custom pricing: an operator sets it up after the Enterprise form


class PlanChangeRefused(Exception):
    pass


def kind_of_change(subscription: Subscription, plan: Plan) -> str:
    if plan.pk == subscription.plan_id:
        return CURRENT
    if plan.monthly_price is None:
        return CONTACT
    return UPGRADE if plan.sort_order > subscription.plan.sort_order else DOWNGRADE


def check_change(user, plan: Plan) -> tuple[Subscription, str]:
    """The subscription and the kind of change, or PlanChangeRefused with the reason to show."""
    subscription = current_subscription(user)
    if not plan.is_public:
        raise PlanChangeRefused("That plan is not offered.")
    kind = kind_of_change(subscription, plan)
    if kind == CURRENT:
        raise PlanChangeRefused(f"You are already on the {plan.name} plan.")
    if kind == CONTACT:
        raise PlanChangeRefused(f"The {plan.name} plan is set up with our team: use the contact form.")
    return subscription, kind


@transaction.atomic
def do_change(user, plan: Plan) -> Subscription:
    """Upgrade now, or schedule a downgrade for the end of the period."""
    subscription, kind = check_change(user, plan)
    if kind == UPGRADE:
        return start_subscription(user, plan)
    Subscription.objects.filter(pk=subscription.pk).update(scheduled_plan=plan)
    subscription.scheduled_plan = plan
    return subscription


def do_cancel(user) -> Subscription:
    """Back to Free when the current period ends."""
    return do_change(user, Plan.objects.get(slug=DEFAULT_PLAN))


def do_keep_current_plan(user) -> None:
    """Drop a scheduled downgrade or cancellation."""
    Subscription.objects.filter(user=user, is_active=True).update(scheduled_plan=None)
