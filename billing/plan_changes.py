"""Changing plans. Upgrades take effect at once within the current period; downgrades and
cancellations at the end of the period (stored on the subscription, applied when the period rolls).

A paid upgrade needs a payment: through Stripe when it is set up; otherwise the person requests the
plan and an operator approves it in admin (unless BILLING_SELF_SERVICE_UPGRADES, for demo servers)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import audit

from . import stripe_api
from .models import Plan, PlanRequest, Subscription
from .subscriptions import DEFAULT_PLAN, change_plan_now, current_subscription

UPGRADE = "upgrade"
DOWNGRADE = "downgrade"
CURRENT = "current"
CONTACT = "contact"  # custom pricing: an operator sets it up after the Enterprise form

# How an upgrade is made on this server.
CHECKOUT = "checkout"  # Stripe Checkout: the first purchase
STRIPE_UPDATE = "stripe_update"  # the customer's one Stripe subscription changes price
REQUEST = "request"  # an operator approves a request
SELF_SERVICE = "self_service"  # free plans, or a demo server that gives paid plans away


class PlanChangeRefused(Exception):
    pass


def kind_of_change(subscription: Subscription, plan: Plan) -> str:
    if plan.pk == subscription.plan_id:
        return CURRENT
    if plan.monthly_price is None:
        return CONTACT
    return UPGRADE if plan.sort_order > subscription.plan.sort_order else DOWNGRADE


def upgrade_route(subscription: Subscription, plan: Plan) -> str:
    if not plan.monthly_price:
        return SELF_SERVICE
    if stripe_api.configured():
        return STRIPE_UPDATE if subscription.stripe_subscription_id else CHECKOUT
    return SELF_SERVICE if settings.BILLING_SELF_SERVICE_UPGRADES else REQUEST


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


def do_change(user, plan: Plan) -> Subscription:
    """Upgrade now (paid through the Stripe subscription, or where no payment is due), or schedule a
    downgrade for the end of the period (Stripe bills the lower price from the next renewal).
    StripeError when Stripe refuses; then nothing changed here."""
    subscription, kind = check_change(user, plan)
    stripe_subscription = subscription.stripe_subscription_id if stripe_api.configured() else ""
    if kind == UPGRADE:
        route = upgrade_route(subscription, plan)
        if route == STRIPE_UPDATE:
            stripe_api.change_price(stripe_subscription, plan, charge_now=True)
        elif route != SELF_SERVICE:
            raise PlanChangeRefused(
                f"The {plan.name} plan cannot be taken without payment here: "
                + ("pay for it through the billing page." if stripe_api.configured() else "request it instead.")
            )
        return change_plan_now(subscription, plan, actor=user, reason="upgrade")
    if stripe_subscription and plan.monthly_price:
        stripe_api.change_price(stripe_subscription, plan, charge_now=False)
    elif stripe_subscription:
        stripe_api.cancel_at_period_end(stripe_subscription)
    Subscription.objects.filter(pk=subscription.pk).update(scheduled_plan=plan)
    subscription.scheduled_plan = plan
    audit.record(
        user,
        audit.Action.PLAN_CHANGE_SCHEDULED,
        user,
        {"from": subscription.plan.slug, "to": plan.slug, "at": subscription.current_period_end.isoformat()},
    )
    return subscription


def do_cancel(user) -> Subscription:
    """Back to Free when the current period ends."""
    return do_change(user, Plan.objects.get(slug=DEFAULT_PLAN))


def do_keep_current_plan(user) -> None:
    """Drop a scheduled downgrade or cancellation (on Stripe too)."""
    subscription = current_subscription(user)
    if subscription.scheduled_plan is None:
        return
    if subscription.stripe_subscription_id and stripe_api.configured():
        if subscription.scheduled_plan.monthly_price:
            stripe_api.change_price(subscription.stripe_subscription_id, subscription.plan, charge_now=False)
        else:
            stripe_api.cancel_at_period_end(subscription.stripe_subscription_id, cancel=False)
    Subscription.objects.filter(pk=subscription.pk).update(scheduled_plan=None)
    audit.record(
        user,
        audit.Action.PLAN_CHANGE_DROPPED,
        user,
        {"kept": subscription.plan.slug, "dropped": subscription.scheduled_plan.slug},
    )


def pending_request(user) -> PlanRequest | None:
    return PlanRequest.objects.select_related("plan").filter(user=user, status=PlanRequest.Status.PENDING).first()


def request_plan(user, plan: Plan, *, review_url: str) -> PlanRequest:
    """Ask an operator for `plan` (replacing an earlier pending request for another plan); ADMINS are
    mailed once per request."""
    subscription, kind = check_change(user, plan)
    if kind != UPGRADE or upgrade_route(subscription, plan) != REQUEST:
        raise PlanChangeRefused(f"The {plan.name} plan is not assigned on request here.")
    pending = pending_request(user)
    if pending is not None and pending.plan_id == plan.pk:
        return pending  # asked again: nothing new for the operators
    try:
        with transaction.atomic():
            plan_request, _ = PlanRequest.objects.update_or_create(
                user=user, status=PlanRequest.Status.PENDING, defaults={"plan": plan}
            )
    except IntegrityError:  # a second request of the same person at the same moment
        return PlanRequest.objects.get(user=user, status=PlanRequest.Status.PENDING)
    audit.record(user, audit.Action.PLAN_REQUESTED, plan_request, {"from": subscription.plan.slug, "to": plan.slug})
    # fail_silently: a mail server that is down must not lose the request (it is in admin anyway).
    mail_admins(
        f"Plan request: {user.email} asks for {plan.name}",
        f"{user.email} (now on {subscription.plan.name}) asks for the {plan.name} plan.\n\n"
        f"Approve or decline it in admin: {review_url}\n",
        fail_silently=True,
    )
    return plan_request


def withdraw_request(user) -> int:
    return PlanRequest.objects.filter(user=user, status=PlanRequest.Status.PENDING).update(
        status=PlanRequest.Status.WITHDRAWN, decided_at=timezone.now()
    )


@transaction.atomic
def decide_request(plan_request: PlanRequest, *, approve: bool, operator) -> bool:
    """Approve (the plan starts at once, within the current period) or decline a pending request;
    False if it was no longer pending. The person is told by mail."""
    plan_request = PlanRequest.objects.select_for_update().select_related("user", "plan").get(pk=plan_request.pk)
    if plan_request.status != PlanRequest.Status.PENDING:
        return False
    if approve:
        change_plan_now(
            current_subscription(plan_request.user), plan_request.plan, actor=operator, reason="request approved"
        )
    plan_request.status = PlanRequest.Status.APPROVED if approve else PlanRequest.Status.DECLINED
    plan_request.decided_at = timezone.now()
    plan_request.decided_by = operator
    plan_request.save(update_fields=["status", "decided_at", "decided_by"])
    action = audit.Action.PLAN_REQUEST_APPROVED if approve else audit.Action.PLAN_REQUEST_DECLINED
    audit.record(operator, action, plan_request, {"user_id": plan_request.user_id, "plan": plan_request.plan.slug})
    outcome = "is now active" if approve else "was not approved; please contact us for details"
    send_mail(
        f"Your {plan_request.plan.name} plan request",
        f"Your request for the {plan_request.plan.name} plan {outcome}.\n",
        None,
        [plan_request.user.email],
        fail_silently=True,
    )
    return True
