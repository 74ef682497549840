"""The usage dashboard (/usage/): charts of tokens and cost per day, by model and by API key."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import money, reports
from .forms import DateRangeForm


def _range(request) -> tuple[DateRangeForm, tuple | None]:
    form = DateRangeForm.from_query(request.GET)
    if not form.is_valid():
        return form, None
    return form, (form.cleaned_data["start"], form.cleaned_data["end"])


@require_GET
def dashboard(request):
    form, chosen = _range(request)
    if chosen is None:
        return render(request, "billing/usage.html", {"form": form}, status=400)
    start, end = chosen
    records = reports.records_between(request.user, start, end)
    by_key = reports.by_api_key(records)
    return render(
        request,
        "billing/usage.html",
        {
            "form": form,
            "start": start,
            "end": end,
            "totals": reports.totals(records),
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
def export_csv(request):
    form, chosen = _range(request)
    if chosen is None:
        return HttpResponse(
            "; ".join(form.errors.get("__all__", ["Invalid dates."])), status=400, content_type="text/plain"
        )
    start, end = chosen
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="aihub-usage-{start}-to-{end}.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
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
    )
    for row in reports.export_rows(reports.records_between(request.user, start, end)):
        key = f"{row['api_key__name']} ({row['api_key__prefix']})" if row["api_key__prefix"] else reports.CHAT_PAGE
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
    return response
