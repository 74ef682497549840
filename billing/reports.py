"""Usage reports: the figures of the usage ledger (billing.rollups' daily rollups, read by the names of
UsageRecord's queryset) shaped for the usage dashboard, statements and the operator overview."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncMonth

from aihub.inputs import SafeCsvWriter

from . import money
from .models import Invoice, Subscription, UpstreamAttempt, UsageRecord, UsageRecordQuerySet
from .rollups import Figures, Usage, usage

CHAT_PAGE = "Chat page"


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC datetimes from the start of `start` to the start of the day after `end`."""
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )


def usage_in(user, since: datetime, until: datetime) -> Usage:
    """The user's figures over the range (from the rollups)."""
    return usage(user=user).between(since, until)


def records_in(user, since: datetime, until: datetime) -> UsageRecordQuerySet:
    """The user's usage rows over the range, one per request (the activity log)."""
    return UsageRecord.objects.filter(user=user).between(since, until)


def by_model(records: Usage | Figures) -> list[dict]:
    return list(records.by_model().order_by("-tokens", "model_slug"))


def by_api_key(records: Usage | Figures) -> list[dict]:
    rows = records.by_key().order_by("-tokens")
    return [
        {**row, "label": f"{row['api_key__name']} ({row['api_key__prefix']}…)" if row["api_key_id"] else CHAT_PAGE}
        for row in rows
    ]


def daily(records: Usage | Figures, start: date, end: date) -> dict:
    """Per day (every day of the range, zeros included): tokens and cost, and tokens per model."""
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    per_day = {row["day"]: row for row in records.by_day()}
    per_model: dict[str, dict[date, int]] = {}
    for row in records.grouped("day", "model_slug", names=["tokens"]):
        per_model.setdefault(row["model_slug"] or "unknown", {})[row["day"]] = row["tokens"]
    return {
        "labels": [d.isoformat() for d in days],
        "tokens": [per_day[d]["tokens"] if d in per_day else 0 for d in days],
        "cost": [float(per_day[d]["cost"]) if d in per_day else 0 for d in days],
        "models": [
            {"label": slug, "tokens": [tokens.get(d, 0) for d in days]}
            for slug, tokens in sorted(per_model.items(), key=lambda item: -sum(item[1].values()))
        ],
    }


def export_rows(records: Usage) -> list[dict]:
    """Per day, model and API key: the rows of the usage CSV."""
    return records.grouped("day", "model_slug", "provider", "api_key__name", "api_key__prefix").order_by(
        "day", "model_slug", "api_key__name"
    )


USAGE_CSV_HEADER = [
    "date",
    "model",
    "provider",
    "api_key",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
]


def write_usage_csv(file, records) -> None:
    """The usage CSV (the usage page's export, the account export): one row per day, model and key."""
    writer = SafeCsvWriter(file)
    writer.writerow(USAGE_CSV_HEADER)
    for row in export_rows(records):
        key = f"{row['api_key__name']} ({row['api_key__prefix']})" if row["api_key__prefix"] else CHAT_PAGE
        writer.writerow(
            [
                row["day"],
                row["model_slug"],
                row["provider"],
                key,
                row["requests"],
                row["input_tokens"],
                row["output_tokens"],
                row["tokens"],
                money.plain(row["cost"]),
            ]
        )


def statement_months(user) -> list[dict]:
    return usage(user=user).by_month().order_by("-month")


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_usage(user, month: date) -> Usage:
    return usage_in(user, *day_bounds(month, next_month(month) - timedelta(days=1)))


def month_plans(user, month: date) -> list:
    """The subscriptions (plan and dates) the person held during the month, oldest first."""
    since, until = day_bounds(month, next_month(month) - timedelta(days=1))
    return list(
        Subscription.objects.filter(user=user, started_at__lt=until)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
        .select_related("plan")
        .order_by("started_at")
    )


def month_invoices(user, month: date) -> list:
    since, until = day_bounds(month, next_month(month) - timedelta(days=1))
    return list(Invoice.objects.filter(user=user, created_at__gte=since, created_at__lt=until).order_by("created_at"))


def invoice_months(user) -> set[date]:
    return {
        moment.date()
        for moment in Invoice.objects.filter(user=user)
        .annotate(month=TruncMonth("created_at"))
        .values_list("month", flat=True)
        .distinct()
    }


def provider_health(since: datetime) -> list[dict]:
    """Per provider: requests, tokens, cost (usage rows) and upstream attempts with their error rate."""
    usage = {
        row["provider"]: row
        for row in UsageRecord.objects.between(since)
        .by_provider()
        .annotate(failed=Count("id", filter=Q(status=UsageRecord.Status.FAILED)))
    }
    attempts = {
        row["provider"]: row
        for row in UpstreamAttempt.objects.filter(usage__created_at__gte=since)
        .exclude(outcome__in=["cancelled", "breaker_open"])  # neither is the upstream's failure
        .values("provider")
        .annotate(attempts=Count("id"), errors=Count("id", filter=~Q(outcome="ok")))
        .order_by()
    }
    rows = []
    for provider in sorted(set(usage) | set(attempts)):
        row: dict[str, Any] = {
            "provider": provider,
            **dict.fromkeys(("requests", "tokens", "cost", "failed", "attempts", "errors"), 0),
        }
        row.update(usage.get(provider, {}))
        row.update(attempts.get(provider, {}))
        row["error_rate"] = row["errors"] / row["attempts"] if row["attempts"] else None
        rows.append(row)
    return rows
