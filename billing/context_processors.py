"""`payment_overdue` for every page: the banner of base.html when a Stripe renewal is unpaid."""

from __future__ import annotations

from .models import Subscription
from .subscriptions import payment_grace


def payment_overdue(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def overdue() -> dict | None:
        """Called only where a template shows it (one query), never for partials that do not."""
        subscription = (
            Subscription.objects.select_related("plan")
            .filter(user=user, is_active=True, payment_due_since__isnull=False)
            .first()
        )
        if subscription is None or subscription.payment_due_since is None:
            return None
        return {"plan": subscription.plan, "free_from": subscription.payment_due_since + payment_grace()}

    return {"payment_overdue": overdue}
