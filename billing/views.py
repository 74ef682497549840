"""The billing page: the caller's plan, period, usage against quota, and the plans to change to."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_GET

from .models import Plan
from .subscriptions import current_subscription, period_usage


@require_GET
def index(request):
    subscription = current_subscription(request.user)
    return render(request, "billing/index.html", {
        "subscription": subscription,
        "plan": subscription.plan,
        "usage": period_usage(request.user, subscription.current_period_start),
        "plans": Plan.objects.filter(is_public=True),
    })
