"""Our cost against what providers report they charged (OpenRouter's usage.cost), per provider and model,
with the requests that differ by more than a threshold and those that cost more than was reserved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db.models import Count, F, Q, Sum

from .models import UsageRecord, usage_figures

# A difference below this is rounding, not a wrong price (USD per request).
DIFFERENCE_THRESHOLD = Decimal("0.000001")


@dataclass
class Reconciliation:
    per_model: list[dict]  # provider, model_slug, requests, our_cost, provider_cost, difference, unreported
    differing: list[UsageRecord]  # reported, and our cost differs from it by more than the threshold
    over_reservation: list[UsageRecord]  # cost more than reserved: the charge was capped


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'YYYY-MM' -> the UTC start of that month and of the next. Raises ValueError."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start, datetime(following.year, following.month, 1, tzinfo=UTC)


def reconcile(since: datetime, until: datetime, threshold: Decimal = DIFFERENCE_THRESHOLD) -> Reconciliation:
    rows = UsageRecord.objects.between(since, until)
    reported = Q(reported_cost__isnull=False)
    per_model = list(
        rows.values("provider", "model_slug")
        .annotate(
            **usage_figures(("requests",)),
            **usage_figures(("cost",), prefix="our_"),
            # Ours over the reported requests only, so that requests without a report make no difference.
            **usage_figures(("cost",), prefix="our_reported_", filter=reported),
            provider_cost=Sum("reported_cost"),
            unreported=Count("id", filter=~reported),
        )
        .order_by("provider", "model_slug")
    )
    for row in per_model:
        row["difference"] = row["our_reported_cost"] - (row["provider_cost"] or Decimal(0))
    differing = list(
        rows.filter(reported_cost__isnull=False)
        .annotate(difference=F("cost") - F("reported_cost"))
        .filter(Q(difference__gt=threshold) | Q(difference__lt=-threshold))
        .order_by("-created_at")[:500]
    )
    over = list(rows.filter(over_reservation=True).order_by("-created_at")[:500])
    return Reconciliation(per_model=per_model, differing=differing, over_reservation=over)
