"""Monthly statements: tokens and cost by model for one calendar month (UTC), as a page and as CSV."""

from __future__ import annotations

import csv
from datetime import date

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import reports


def _month(year: int, month: int) -> date:
    try:
        return date(year, month, 1)
    except ValueError:
        raise Http404("No such month.") from None


@require_GET
def statements(request):
    return render(request, "billing/statements.html", {"months": reports.statement_months(request.user)})


@require_GET
def statement(request, year: int, month: int):
    first = _month(year, month)
    records = reports.month_records(request.user, first)
    return render(
        request,
        "billing/statement.html",
        {
            "month": first,
            "rows": reports.by_model(records),
            "totals": reports.totals(records),
        },
    )


@require_GET
def statement_csv(request, year: int, month: int):
    first = _month(year, month)
    records = reports.month_records(request.user, first)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="aihub-statement-{first:%Y-%m}.csv"'
    writer = csv.writer(response)
    writer.writerow(["month", "model", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"])
    for row in reports.by_model(records):
        writer.writerow(
            [
                f"{first:%Y-%m}",
                row["model_slug"],
                row["requests"],
                row["input_tokens"],
                row["output_tokens"],
                row["tokens"],
                f"{row['cost']:.8f}",
            ]
        )
    total = reports.totals(records)
    writer.writerow(
        [
            f"{first:%Y-%m}",
            "TOTAL",
            total["requests"],
            total["input_tokens"],
            total["output_tokens"],
            total["tokens"],
            f"{total['cost']:.8f}",
        ]
    )
    return response
