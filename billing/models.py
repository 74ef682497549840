from __future__ import annotations

import abc
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.utils import timezone


class Plan(models.Model):
    """What a subscription allows. Rows are seeded by a data migration and edited in admin."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=50)
    monthly_price = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Empty means custom pricing (Enterprise)."
    )
    monthly_token_quota = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty means unlimited.")
    monthly_credit_quota = models.DecimalField(
        "monthly credit (USD)",
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Spend allowed per month in USD; empty means unlimited.",
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent_streams = models.PositiveIntegerField(null=True, blank=True)
    max_api_keys = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cap on max_tokens per request; larger requests are clamped."
    )
    free_models_only = models.BooleanField(default=False)
    monthly_search_quota = models.PositiveIntegerField(
        null=True, blank=True, help_text="Web searches per month; empty means unlimited."
    )
    max_upload_bytes = models.PositiveIntegerField(
        default=5 * 1024 * 1024, help_text="Largest file a chat upload may be (never above UPLOAD_MAX_BYTES)."
    )
    max_files_per_message = models.PositiveSmallIntegerField(default=3)
    upload_storage_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="All of a user's stored uploads together; empty means unlimited."
    )
    sort_order = models.PositiveSmallIntegerField(default=0)
    is_public = models.BooleanField(default=True)

    class Meta:
        ordering = ["sort_order"]

    def __str__(self):
        return self.name


class Subscription(models.Model):
    """A user's plan over time. Exactly one row per user is active."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT)
    is_active = models.BooleanField(default=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    scheduled_plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Plan that replaces this one when the current period ends (downgrades and cancellations).",
    )
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True)
    payment_due_since = models.DateTimeField(
        null=True, blank=True, help_text="Stripe could not collect a renewal; Free after the grace period."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(is_active=True), name="one_active_subscription_per_user"
            ),
        ]

    def __str__(self):
        return f"{self.user} on {self.plan}"

    @property
    def paid_through_stripe(self) -> bool:
        """A paid plan whose periods Stripe bills (they roll when Stripe reports the renewal paid)."""
        return bool(self.stripe_subscription_id) and bool(self.plan.monthly_price)

    def needs_update(self, now) -> bool:
        """The period is over or a payment is overdue: `current_subscription` has something to do."""
        return self.current_period_end <= now or self.payment_due_since is not None

    def overdue_since(self, now):
        """When the payment still owed for this plan fell due; None when nothing is owed."""
        if self.payment_due_since is not None:
            return self.payment_due_since
        if self.paid_through_stripe and self.current_period_end <= now and self.scheduled_plan_id is None:
            return self.current_period_end  # renewal not (yet) reported paid
        return None


# The usage figures, by one name each wherever they are shown or checked.
FIGURES = ("requests", "input_tokens", "output_tokens", "tokens", "cost")
COST_FIELD = models.DecimalField(max_digits=14, decimal_places=8)


def usage_figures(
    names: Iterable[str] = FIGURES,
    *,
    through: str = "",
    prefix: str = "",
    filter: Q | None = None,
    rolled_up: bool = False,
) -> dict:
    """The figures as aggregates over usage rows (0, not None, over none): on UsageRecord rows, or on
    another model's rows `through` its relation ("usage_records__"), named `prefix` + figure. `rolled_up`:
    over UsageDaily rows, whose columns are sums already."""
    prompt, completion = f"{through}prompt_tokens", f"{through}completion_tokens"
    expressions = {
        "requests": (
            Coalesce(Sum(f"{through}request_count", filter=filter), 0)
            if rolled_up
            else Count(f"{through}id", filter=filter)
        ),
        # input_tokens, not prompt_tokens: annotating a field's own name would hide the field.
        "input_tokens": Coalesce(Sum(prompt, filter=filter), 0),
        "output_tokens": Coalesce(Sum(completion, filter=filter), 0),
        "tokens": Coalesce(Sum(F(prompt) + F(completion), filter=filter), 0),
        "cost": Coalesce(
            Sum(f"{through}{'total_cost' if rolled_up else 'cost'}", filter=filter),
            Value(Decimal(0)),
            output_field=COST_FIELD,
        ),
    }
    return {prefix + name: expressions[name] for name in names}


class Groupings(abc.ABC):
    """The usual groupings of figures, by name, over anything with `grouped(*fields)`."""

    @abc.abstractmethod
    def grouped(self, *fields: str, names: Iterable[str] = FIGURES) -> Any: ...

    def by_model(self) -> Any:
        return self.grouped("model_slug")

    def by_day(self) -> Any:
        return self.grouped("day")

    def by_month(self) -> Any:
        return self.grouped("month")

    def by_key(self) -> Any:
        return self.grouped("api_key_id", "api_key__name", "api_key__prefix")

    def by_provider(self) -> Any:
        return self.grouped("provider")

    def by_user(self) -> Any:
        return self.grouped("user_id")


class FiguresQuerySet(Groupings, models.QuerySet):
    """Usage figures summed in the database, by the same names over usage rows and over their daily rollups."""

    rolled_up = False

    @abc.abstractmethod
    def with_day(self) -> FiguresQuerySet:
        """These rows with their UTC day as `day`."""

    @abc.abstractmethod
    def with_month(self) -> FiguresQuerySet:
        """These rows with the first day of their UTC month as `month`."""

    def totals(self, *names: str) -> dict:
        """The figures over all these rows (all of them, or the ones named)."""
        return self.order_by().aggregate(**usage_figures(names or FIGURES, rolled_up=self.rolled_up))

    def grouped(self, *fields: str, names: Iterable[str] = FIGURES) -> models.QuerySet:
        """One row per value of `fields`, with the figures (unordered: order_by what the page needs).
        "day" and "month" are the UTC day and month of the usage."""
        rows = self
        if "day" in fields:
            rows = rows.with_day()
        if "month" in fields:
            rows = rows.with_month()
        return rows.values(*fields).annotate(**usage_figures(names, rolled_up=self.rolled_up)).order_by()


class UsageRecordQuerySet(FiguresQuerySet):
    """Usage rows and their figures (figures over whole days read faster from the rollups: billing.rollups)."""

    def between(self, since: datetime, until: datetime | None = None) -> UsageRecordQuerySet:
        rows = self.filter(created_at__gte=since)
        return rows.filter(created_at__lt=until) if until is not None else rows

    def with_day(self) -> UsageRecordQuerySet:
        return self.annotate(day=TruncDate("created_at"))

    def with_month(self) -> UsageRecordQuerySet:
        return self.annotate(month=TruncDate(TruncMonth("created_at")))


class UsageRecord(models.Model):
    """One row per request to a model, from the chat page or the API. `request_id` is the request's own id:
    at most one row per request, and whatever else the request left (a chat reply) finds its figures by it."""

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STOPPED = "stopped"
        FAILED = "failed"

    class Source(models.TextChoices):
        REPORTED = "reported"
        ESTIMATED = "estimated"

    class Purpose(models.TextChoices):
        REQUEST = "request", "Request"  # a chat reply or an API call: what the person asked for
        TITLE = "title", "Conversation title"  # a side call the chat made on its own

    request_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    model = models.ForeignKey("chat.AIModel", null=True, blank=True, on_delete=models.SET_NULL)
    model_slug = models.CharField(max_length=200, help_text="Kept when the catalogue row goes away.")
    provider = models.CharField(max_length=20, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.REQUEST)
    # What the upstream said beside what we computed: its token counts (else tiktoken's) and what it charged us.
    tokens_source = models.CharField(max_length=10, choices=Source.choices, default=Source.ESTIMATED)
    cost_source = models.CharField(
        max_length=10,
        choices=Source.choices,
        default=Source.ESTIMATED,
        help_text="reported: the provider said what it charged (reported_cost); estimated: no report.",
    )
    reported_cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    # The catalogue prices the cost was computed at, as they were then (USD per million tokens).
    input_price_per_m = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    output_price_per_m = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    over_reservation = models.BooleanField(
        default=False, help_text="The request cost more than was reserved for it; the charge was capped."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_time"),
            models.Index(fields=["api_key", "created_at"], name="usage_key_time"),
        ]

    def __str__(self):
        return f"{self.model_slug} {self.prompt_tokens}+{self.completion_tokens} ({self.status})"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageDailyQuerySet(FiguresQuerySet):
    rolled_up = True

    def between(self, since: date, until: date | None = None) -> UsageDailyQuerySet:
        """The days from `since` up to, not including, `until`."""
        rows = self.filter(day__gte=since)
        return rows.filter(day__lt=until) if until is not None else rows

    def with_day(self) -> UsageDailyQuerySet:
        return self

    def with_month(self) -> UsageDailyQuerySet:
        return self.annotate(month=TruncMonth("day"))


class UsageDaily(models.Model):
    """The usage rows of one UTC day summed per user, API key, model and provider. Written in the transaction
    that writes each usage row (billing.rollups), so it always equals the rows' sums (`manage.py
    check_rollups` proves it); read wherever figures span whole days."""

    day = models.DateField()
    # Indexed with the day (Meta.indexes), as every read asks for a range of days of one user or key.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    # A deleted key's usage rows lose their key; its rollups are folded into the keyless ones first (rollups.py).
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="usage_daily",
        db_index=False,
    )
    model_slug = models.CharField(max_length=200)
    provider = models.CharField(max_length=20, blank=True)
    request_count = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    total_cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))

    objects = UsageDailyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "usage per day"
        constraints = [
            # Two partial indexes, as NULLs are distinct in a unique index: the upsert names the one it targets.
            models.UniqueConstraint(
                fields=["user", "day", "api_key", "model_slug", "provider"],
                condition=Q(api_key__isnull=False),
                name="usage_daily_key_unique",
            ),
            models.UniqueConstraint(
                fields=["user", "day", "model_slug", "provider"],
                condition=Q(api_key__isnull=True),
                name="usage_daily_keyless_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "day"], name="usage_daily_user_day"),
            models.Index(fields=["api_key", "day"], name="usage_daily_key_day"),
        ]

    def __str__(self):
        return f"{self.day} {self.model_slug}: {self.request_count} requests"


class SearchRecord(models.Model):
    """One row per web search (the chat's "Search the web" or GET /api/v1/search), whatever its outcome."""

    class Status(models.TextChoices):
        COMPLETE = "complete"
        FAILED = "failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="search_records")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    backend = models.CharField(max_length=30)
    status = models.CharField(max_length=10, choices=Status.choices)
    results = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="search_user_time")]

    def __str__(self):
        return f"{self.backend} search ({self.status})"


class UpstreamAttempt(models.Model):
    """One try of one provider while serving a request (the router's fallback trail)."""

    usage = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="attempts")
    provider = models.CharField(max_length=20)
    model_slug = models.CharField(max_length=200)
    outcome = models.CharField(max_length=30, help_text="ok, http_500, timeout, connect_error, ...")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.provider} {self.outcome}"


class Reservation(models.Model):
    """The worst case of one request in flight, held against quotas and budgets until it settles.

    Open rows also count the caller's concurrent streams. A row outlives its request only if the
    process died mid-request: it names its process (`owner`), whose heartbeat keeps `heartbeat_at`
    fresh, and carries the request's last checkpoint (model, tokens delivered), from which the sweeper
    (billing.inflight) settles the request once the heartbeat stops. `expires_at` is the last resort
    (admission ignores the row after it).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    tokens = models.PositiveBigIntegerField()
    cost = models.DecimalField(max_digits=14, decimal_places=8)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    request_id = models.UUIDField(null=True, blank=True, unique=True, help_text="The usage row it becomes.")
    purpose = models.CharField(
        max_length=10, choices=UsageRecord.Purpose.choices, default=UsageRecord.Purpose.REQUEST, help_text="Its row's."
    )
    owner = models.CharField(max_length=200, blank=True, help_text="The process serving it: host:pid:start id.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of its process.")
    # The request's last checkpoint: what the sweeper meters if its process dies.
    prompt_tokens = models.PositiveIntegerField(default=0)
    model = models.ForeignKey("chat.AIModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    delivered_tokens = models.PositiveIntegerField(default=0, help_text="Output tokens delivered so far.")

    class Meta:
        indexes = [
            models.Index(fields=["user", "expires_at"], name="reservation_user_expiry"),
            models.Index(fields=["owner"], name="reservation_owner"),
            models.Index(fields=["heartbeat_at"], name="reservation_heartbeat"),
        ]

    def __str__(self):
        return f"{self.user_id}: {self.tokens} tokens, ${self.cost}"


class RateLimitBucket(models.Model):
    """GCRA state of one rate limit (used when Redis is not configured): its theoretical arrival time."""

    key = models.CharField(max_length=100, unique=True)
    tat = models.FloatField(help_text="Theoretical arrival time, seconds since the epoch.")

    def __str__(self):
        return self.key


class StripeEvent(models.Model):
    """A webhook event already handled; Stripe retries deliveries, so duplicates are recognised by id."""

    event_id = models.CharField(max_length=100, unique=True)
    event_type = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.event_id


class PlanRequest(models.Model):
    """A person asking for a paid plan on a server without a payment provider; an operator decides it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DECLINED = "declined"
        WITHDRAWN = "withdrawn"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="plan_requests")
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(status="pending"), name="one_pending_plan_request_per_user"
            ),
        ]

    def __str__(self):
        return f"{self.user} asks for {self.plan} ({self.status})"


class Invoice(models.Model):
    """A Stripe invoice of a person's subscription (plan fees, prorations), as its webhooks report it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invoices")
    stripe_invoice_id = models.CharField(max_length=100, unique=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True)
    number = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20, help_text="Stripe's: paid, open, ...")
    description = models.CharField(max_length=200, blank=True)
    amount_due = models.DecimalField("amount due (USD)", max_digits=12, decimal_places=2)
    amount_paid = models.DecimalField("amount paid (USD)", max_digits=12, decimal_places=2)
    hosted_invoice_url = models.URLField(max_length=500, blank=True, help_text="Stripe's page with the receipt.")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(help_text="When Stripe issued it.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.number or self.stripe_invoice_id


class EnterpriseInquiry(models.Model):
    """A request to talk about the Enterprise plan, left on the billing page."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    company = models.CharField(max_length=200)
    contact_email = models.EmailField()
    expected_monthly_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    message = models.TextField(max_length=5000)
    created_at = models.DateTimeField(auto_now_add=True)
    handled = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "enterprise inquiries"

    def __str__(self):
        return f"{self.company} ({self.contact_email})"
