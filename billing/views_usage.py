"""The usage pages (/usage/): the dashboard (charts of tokens and cost per day, by model and by API
key), the activity log of every request (chat page and API), and the CSV export."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.models import ApiKey

from . import reports
from .forms import QUICK_RANGES, ActivityFilterForm, DateRangeForm
from .subscriptions import current_subscription

LOG_PAGE_SIZE = 50


def _range(request) -> tuple[DateRangeForm, tuple | None, dict]:
    """The range asked for: its form, (first day, last day, since, until) or None, and the context
    every usage page shows it with."""

    def period():
        subscription = current_subscription(request.user)
        return subscription.current_period_start, subscription.current_period_end

    form = DateRangeForm.from_query(request.GET, period_of=period)
    chosen = form.bounds() if form.is_valid() else None
    context = {"form": form, "quick_ranges": QUICK_RANGES, "range_key": form.range_key}
    if chosen is not None:
        query = form.query()
        context.update(start=chosen[0], end=chosen[1], range_query=urlencode(query), range_fields=list(query.items()))
    return form, chosen, context


@require_GET
def dashboard(request):
    _, chosen, context = _range(request)
    if chosen is None:
        return render(request, "billing/usage.html", context, status=400)
    start, end, since, until = chosen
    # Read once per day, model and key; every figure of the page is summed from that.
    records = reports.usage_in(request.user, since, until).grouped(
        "day", "model_slug", "api_key_id", "api_key__name", "api_key__prefix"
    )
    by_key = reports.by_api_key(records)
    return render(
        request,
        "billing/usage.html",
        {
            **context,
            "totals": records.totals(),
            "by_model": reports.by_model(records),
            "by_key": by_key,
            "chart": {
                **reports.daily(records, start, end),
                "keys": {
                    "labels": [row["label"] for row in by_key],
                    "tokens": [row["tokens"] for row in by_key],
                    "cost": [float(row["cost"]) for row in by_key],
                },
            },
        },
    )


@require_GET
def activity(request):
    """Every request in the range, newest first, filtered and paged, with the totals of what the
    filters keep (without filters: the dashboard's totals)."""
    _, chosen, context = _range(request)
    if chosen is None:
        return render(request, "billing/activity.html", context, status=400)
    _, _, since, until = chosen
    records = reports.records_in(request.user, since, until)
    filters = ActivityFilterForm(
        request.GET,
        api_keys=ApiKey.objects.filter(user=request.user).order_by("name"),
        models=records.order_by("model_slug").values_list("model_slug", flat=True).distinct(),
    )
    if not filters.is_valid():
        return render(request, "billing/activity.html", {**context, "filters": filters}, status=400)
    log = filters.apply(records)
    page = Paginator(log.select_related("api_key").order_by("-created_at", "-pk"), LOG_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "billing/activity.html",
        {**context, "filters": filters, "filtered": filters.active, "page": page, "log_totals": log.totals()},
    )


@require_GET
def export_csv(request):
    form, chosen, _ = _range(request)
    if chosen is None:
        return HttpResponse(
            "; ".join(form.errors.get("__all__", ["Invalid dates."])), status=400, content_type="text/plain"
        )
    start, end, since, until = chosen
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="aihub-usage-{start}-to-{end}.csv"'
    reports.write_usage_csv(response, reports.usage_in(request.user, since, until))
    return response
