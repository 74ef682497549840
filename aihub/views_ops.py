"""The operator overview (staff only): requests, tokens, cost and error rate per provider, and the
providers' circuit breakers now: a page of the top layer, as it shows billing and the gateway at once."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from billing import reconciliation, reports
from chat.gateway import breaker


@staff_member_required
@require_GET
def overview(request):
    now = timezone.now()
    month = now.strftime("%Y-%m")
    return render(
        request,
        "ops.html",
        {
            "windows": [
                ("Last 24 hours", reports.provider_health(now - timedelta(hours=24))),
                ("Last 30 days", reports.provider_health(now - timedelta(days=30))),
            ],
            "breakers": breaker.snapshot(),
            "month": month,
            "reconciliation": reconciliation.reconcile(*reconciliation.month_bounds(month)),
        },
    )
