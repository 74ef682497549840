"""Monthly statements for one calendar month (UTC): the plans held and their fees, Stripe's invoices
(with their receipt links), and usage (tokens and cost by model, counted against the plan's credit);
as a page and as CSV. Money follows billing.money's one rounding rule."""

from __future__ import annotations

from datetime import date

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aihub.inputs import SafeCsvWriter

from . import money, reports
from .forms import FIRST_DAY, LAST_DAY


def _month(year: int, month: int) -> date:
    if not FIRST_DAY.year <= year <= LAST_DAY.year or not 1 <= month <= 12:
        raise Http404("No such month.")
    return date(year, month, 1)


@require_GET
def statements(request):
    months = {row["month"]: row for row in reports.statement_months(request.user)}
    for month in reports.invoice_months(request.user) - set(months):
        months[month] = {"requests": 0, "tokens": 0, "cost": 0}
    rows = [{**row, "month": month} for month, row in sorted(months.items(), reverse=True)]
    return render(request, "billing/statements.html", {"months": rows})


def _statement(user, first: date) -> dict:
    records = reports.month_usage(user, first)
    return {
        "month": first,
        "plans": reports.month_plans(user, first),
        "invoices": reports.month_invoices(user, first),
        "rows": reports.by_model(records),
        "totals": records.totals(),
    }


@require_GET
def statement(request, year: int, month: int):
    return render(request, "billing/statement.html", _statement(request.user, _month(year, month)))


@require_GET
def statement_csv(request, year: int, month: int):
    first = _month(year, month)
    data = _statement(request.user, first)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="aihub-statement-{first:%Y-%m}.csv"'
    writer = SafeCsvWriter(response)
    writer.writerow(
        [
            "month",
            "kind",
            "item",
            "from",
            "to",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "amount_usd",
            "receipt_url",
        ]
    )
    label = f"{first:%Y-%m}"
    for held in data["plans"]:
        price = held.plan.monthly_price
        writer.writerow(
            [
                label,
                "plan",
                f"{held.plan.name} (monthly fee)",
                f"{held.started_at:%Y-%m-%d}",
                f"{held.ended_at:%Y-%m-%d}" if held.ended_at else "",
                "",
                "",
                "",
                "",
                money.plain(price, 2) if price is not None else "custom",
                "",
            ]
        )
    for invoice in data["invoices"]:
        writer.writerow(
            [
                label,
                "invoice",
                f"{invoice.number or invoice.stripe_invoice_id} ({invoice.description}, {invoice.status})",
                f"{invoice.period_start:%Y-%m-%d}" if invoice.period_start else "",
                f"{invoice.period_end:%Y-%m-%d}" if invoice.period_end else "",
                "",
                "",
                "",
                "",
                money.plain(invoice.amount_paid, 2),
                invoice.hosted_invoice_url,
            ]
        )
    for row in [*data["rows"], {**data["totals"], "model_slug": "TOTAL"}]:
        writer.writerow(
            [
                label,
                "usage",
                row["model_slug"],
                "",
                "",
                row["requests"],
                row["input_tokens"],
                row["output_tokens"],
                row["tokens"],
                money.plain(row["cost"]),
                "",
            ]
        )
    return response
