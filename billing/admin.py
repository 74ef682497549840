from datetime import UTC, date, datetime, time, timedelta

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_date, parse_datetime

from accounts.admin import ReadOnlyAdmin
from aihub.inputs import SafeCsvWriter

from . import money, plan_changes, reports, rollups
from .models import (
    EnterpriseInquiry,
    Invoice,
    Plan,
    PlanRequest,
    StripeEvent,
    Subscription,
    UpstreamAttempt,
    UsageRecord,
)
from .subscriptions import start_subscription

TOTALS_ROWS = 10  # largest users / models shown under the usage list


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "monthly_price",
        "monthly_token_quota",
        "monthly_credit_quota",
        "requests_per_minute",
        "tokens_per_minute",
        "max_concurrent_streams",
        "max_api_keys",
        "max_output_tokens",
        "free_models_only",
        "is_public",
        "sort_order",
    ]
    list_filter = ["is_public", "free_models_only"]
    search_fields = ["name", "slug"]


class _Echo:
    """A write-only file for csv.writer that hands each line back (for a streamed response)."""

    def write(self, value):
        return value


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "plan",
        "is_active",
        "current_period_start",
        "current_period_end",
        "scheduled_plan",
        "payment_due_since",
        "stripe_subscription_id",
        "started_at",
        "ended_at",
    ]
    list_filter = ["plan", "is_active", "scheduled_plan"]
    list_select_related = ["user", "plan", "scheduled_plan"]
    search_fields = ["user__email", "stripe_customer_id", "stripe_subscription_id"]
    date_hierarchy = "started_at"
    raw_id_fields = ["user"]
    readonly_fields = [
        "user",
        "plan",
        "is_active",
        "started_at",
        "ended_at",
        "current_period_start",
        "current_period_end",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False  # plans are assigned with the "Move to …" actions, which keep the history

    def get_actions(self, request):
        actions = super().get_actions(request)
        for plan in Plan.objects.all():
            name = f"move_to_{plan.slug}"
            actions[name] = (self._mover(plan), name, f"Move the selected users to {plan.name} (new period from now)")
        return actions

    @staticmethod
    def _mover(plan):
        def move(modeladmin, request, queryset):
            users = {subscription.user for subscription in queryset.select_related("user")}
            for user in users:
                start_subscription(user, plan, actor=request.user, reason="moved in the admin")
            modeladmin.message_user(request, f"{len(users)} user(s) moved to {plan.name}.", messages.SUCCESS)

        return move


class UpstreamAttemptInline(admin.TabularInline):
    model = UpstreamAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["provider", "model_slug", "outcome", "http_status", "latency_ms", "error"]

    def has_add_permission(self, request, obj=None):
        return False


# The usage list's query parameters the rollups can answer (the date hierarchy's and created_at filter's
# ranges are whole UTC days), and those that change no figure (ordering, page).
_DAY_PARTS = ("created_at__year", "created_at__month", "created_at__day")
_RANGE = ("created_at__gte", "created_at__lt")
_PROVIDER = "provider__exact"  # the provider list filter's parameter
_NEUTRAL = {"o", "p", _PROVIDER, *_DAY_PARTS, *_RANGE}


def _moment(value: str) -> datetime | None:
    """A created_at filter's bound ("2026-12-02" or "2026-12-02 00:00:00+00:00") as a UTC datetime."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        return datetime.combine(day, time.min, tzinfo=UTC) if day else None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rolled_up_filters(params) -> rollups.Usage | None:
    """The usage list's filtered figures from the rollups, or None when a filter needs the rows."""
    if set(params) - _NEUTRAL:
        return None
    ledger = rollups.usage(**({"provider": params[_PROVIDER]} if _PROVIDER in params else {}))
    try:
        if params.get("created_at__year"):
            year, month, day = (int(params.get(part) or 0) for part in _DAY_PARTS)
            first = date(year, month or 1, day or 1)
            after = first + timedelta(days=1) if day else reports.next_month(first) if month else date(year + 1, 1, 1)
            return ledger.between(*reports.day_bounds(first, after - timedelta(days=1)))
        since, until = (_moment(params.get(name) or "") for name in _RANGE)
    except ValueError:  # an impossible date: the changelist says so, and the rows answer
        return None
    if since is None:
        return None if any(params.get(name) for name in _RANGE) else ledger
    if until is None and params.get("created_at__lt"):
        return None
    return ledger.between(since, until)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "user",
        "api_key",
        "model_slug",
        "provider",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "status",
        "purpose",
        "ttft_ms",
        "latency_ms",
    ]
    list_filter = ["status", "purpose", "provider", "created_at"]
    list_select_related = ["user", "api_key"]
    search_fields = ["user__email", "model_slug"]  # see get_search_results
    date_hierarchy = "created_at"
    raw_id_fields = ["user", "api_key", "model"]
    show_full_result_count = False  # one COUNT(*) over the filtered rows is enough
    actions = ["export_csv"]
    inlines = [UpstreamAttemptInline]
    change_list_template = "admin/billing/usagerecord/change_list.html"

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, record):
        return money.usd(record.cost)

    def get_search_results(self, request, queryset, search_term):
        """Users are matched in their own small table first, so the usage rows need no join; a term
        with an @ is an email only (then the per-user index serves every query of the page)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        by_user = Q(user__in=get_user_model().objects.filter(email__icontains=term).values("pk"))
        if "@" in term:
            return queryset.filter(by_user), False
        return queryset.filter(by_user | Q(model_slug__icontains=term)), False

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            # From the rollups where the filters allow (provider, dates), else summed over the filtered rows.
            rows = _rolled_up_filters(request.GET) or changelist.queryset
            figures = ("requests", "tokens", "cost")
            by_provider = list(rows.grouped("provider", names=figures).order_by("-cost"))
            # Grouped by user id (no join over every row); the few emails shown are fetched after.
            by_user = list(rows.grouped("user_id", names=figures).order_by("-cost")[:TOTALS_ROWS])
            emails = dict(
                get_user_model().objects.filter(pk__in=[r["user_id"] for r in by_user]).values_list("pk", "email")
            )
            response.context_data["usage_totals"] = {
                "all": {name: sum(row[name] for row in by_provider) for name in figures},
                "by_user": [{**row, "user__email": emails.get(row["user_id"])} for row in by_user],
                "by_model": list(rows.grouped("model_slug", names=figures).order_by("-cost")[:TOTALS_ROWS]),
                "by_provider": by_provider,
            }
        return response

    @admin.action(description="Export the selected usage rows as CSV")
    def export_csv(self, request, queryset):
        writer = SafeCsvWriter(_Echo())
        header = [
            "created_at",
            "user",
            "api_key",
            "model",
            "provider",
            "status",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "ttft_ms",
            "latency_ms",
        ]
        rows = (
            queryset.order_by("created_at")
            .values_list(
                "created_at",
                "user__email",
                "api_key__prefix",
                "model_slug",
                "provider",
                "status",
                "prompt_tokens",
                "completion_tokens",
                "cost",
                "ttft_ms",
                "latency_ms",
            )
            .iterator(chunk_size=2000)
        )

        cost = header.index("cost_usd")

        def lines():
            yield writer.writerow(header)
            for row in rows:
                yield writer.writerow([*row[:cost], money.plain(row[cost]), *row[cost + 1 :]])

        response = StreamingHttpResponse(lines(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="usage.csv"'
        return response


@admin.register(PlanRequest)
class PlanRequestAdmin(admin.ModelAdmin):
    """Requests for paid plans (servers without a payment provider): approve or decline them here."""

    list_display = ["created_at", "user", "plan", "status", "decided_at", "decided_by"]
    list_filter = ["status", "plan"]
    list_select_related = ["user", "plan", "decided_by"]
    search_fields = ["user__email"]
    date_hierarchy = "created_at"
    readonly_fields = ["user", "plan", "status", "created_at", "decided_at", "decided_by"]
    actions = ["approve", "decline"]

    def has_add_permission(self, request):
        return False

    def _decide(self, request, queryset, approve: bool):
        decided = sum(
            plan_changes.decide_request(plan_request, approve=approve, operator=request.user)
            for plan_request in queryset
        )
        skipped = queryset.count() - decided
        verb = "approved (plan changed now)" if approve else "declined"
        self.message_user(request, f"{decided} request(s) {verb}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} request(s) were no longer pending.", messages.WARNING)

    @admin.action(description="Approve the selected requests (the plan starts at once)")
    def approve(self, request, queryset):
        self._decide(request, queryset, approve=True)

    @admin.action(description="Decline the selected requests")
    def decline(self, request, queryset):
        self._decide(request, queryset, approve=False)


@admin.register(EnterpriseInquiry)
class EnterpriseInquiryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "company", "contact_email", "user", "expected_monthly_tokens", "handled"]
    list_filter = ["handled"]
    list_editable = ["handled"]
    search_fields = ["company", "contact_email", "user__email"]
    date_hierarchy = "created_at"
    raw_id_fields = ["user"]


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Stripe's invoices as its webhooks reported them (Stripe's dashboard is the record)."""

    list_display = ["created_at", "number", "user", "description", "amount_due", "amount_paid", "status"]
    list_filter = ["status"]
    list_select_related = ["user"]
    search_fields = ["number", "stripe_invoice_id", "user__email"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "event_type", "received_at"]
    search_fields = ["event_id"]
    list_filter = ["event_type"]
    date_hierarchy = "received_at"

    def has_change_permission(self, request, obj=None):
        return False
