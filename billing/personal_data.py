"""Billing's part of a person's export (usage, plans, invoices) and of deleting their account: usage,
searches, subscriptions and invoices are kept for accounting (on the anonymous tombstone row); what
they wrote to us (Enterprise enquiries) goes, a pending plan request is withdrawn, and a plan paid
through Stripe is cancelled at the end of the period already paid (no further charge)."""

from __future__ import annotations

import io
import json

from django.dispatch import receiver

from accounts.personal_data import account_erasing, data_export, iso

from . import plan_changes, reports, rollups
from .models import EnterpriseInquiry, Invoice, Subscription
from .subscriptions import DEFAULT_PLAN, current_subscription


def billing_record(user) -> dict:
    return {
        "subscriptions": [
            {
                "plan": s.plan.name,
                "started_at": iso(s.started_at),
                "ended_at": iso(s.ended_at),
                "current_period_start": iso(s.current_period_start),
                "current_period_end": iso(s.current_period_end),
                "active": s.is_active,
            }
            for s in Subscription.objects.filter(user=user).select_related("plan")
        ],
        "invoices": [
            {
                "number": i.number,
                "status": i.status,
                "description": i.description,
                "amount_due": str(i.amount_due),
                "amount_paid": str(i.amount_paid),
                "created_at": iso(i.created_at),
            }
            for i in Invoice.objects.filter(user=user)
        ],
        "usage_by_month": [
            {**row, "month": row["month"].isoformat()[:7], "cost": str(row["cost"])}
            for row in rollups.usage(user=user).by_month().order_by("month")
        ],
    }


@receiver(data_export)
def export_billing(sender, user, **kwargs) -> dict[str, str]:
    usage_csv = io.StringIO()
    reports.write_usage_csv(usage_csv, rollups.usage(user=user))
    return {"billing.json": json.dumps(billing_record(user), indent=2), "usage.csv": usage_csv.getvalue()}


@receiver(account_erasing)
def erase_billing(sender, user, **kwargs) -> None:
    EnterpriseInquiry.objects.filter(user=user).delete()
    plan_changes.withdraw_request(user)
    subscription = current_subscription(user)
    ends_on_free = subscription.scheduled_plan is not None and subscription.scheduled_plan.slug == DEFAULT_PLAN
    if subscription.plan.slug != DEFAULT_PLAN and not ends_on_free:
        plan_changes.do_cancel(user)  # Free from the period's end; Stripe told to stop renewing
