"""API key pages: issue (the key is shown once), list with this period's usage, revoke, usage detail."""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.models import UsageRecord
from billing.rollups import usage
from billing.subscriptions import current_subscription

from . import api_keys
from .api_key_forms import ApiKeyForm
from .models import ApiKey

USAGE_ROWS_PER_PAGE = 50


def _get_api_key_for_user(request, pk: int) -> ApiKey:
    return get_object_or_404(ApiKey, pk=pk, user=request.user)


def _keys_with_period_usage(user, since) -> list[ApiKey]:
    """The user's keys, each with this period's requests, tokens and cost as period_* (from the rollups)."""
    none = {"requests": 0, "tokens": 0, "cost": Decimal(0)}
    rows = usage(user=user).between(since).grouped("api_key_id", names=none)
    used = {row["api_key_id"]: row for row in rows}
    keys = list(ApiKey.objects.filter(user=user).prefetch_related("allowed_models"))
    for key in keys:
        for name in none:
            setattr(key, f"period_{name}", used.get(key.pk, none)[name])
    return keys


def _at_midnight(day) -> datetime | None:
    return timezone.make_aware(datetime.combine(day, time.min)) if day else None


@require_http_methods(["GET", "POST"])
def api_key_list(request):
    subscription = current_subscription(request.user)
    plan = subscription.plan
    new_key = None
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            api_key, new_key = api_keys.issue_key(
                request.user,
                form.cleaned_data["name"],
                expires_at=_at_midnight(form.cleaned_data["expires_on"]),
                allowed_models=form.cleaned_data["allowed_models"],
                monthly_budget=form.cleaned_data["monthly_budget"],
                max_active_keys=plan.max_api_keys,
                actor=request.user,
            )
            form = ApiKeyForm()
        except api_keys.KeyLimitReached:
            form.add_error(
                None,
                f"The {plan.name} plan allows {plan.max_api_keys} active API key(s). Revoke one, or upgrade your plan.",
            )
    keys = _keys_with_period_usage(request.user, subscription.current_period_start)
    response = render(
        request,
        "accounts/api_keys.html",
        {
            "form": form,
            "keys": keys,
            "new_key": new_key,
            "subscription": subscription,
            "now": timezone.now(),
            "base_url": request.build_absolute_uri("/v1"),
        },
    )
    if new_key:
        response["Cache-Control"] = "no-store"  # the page holding the key must not be kept anywhere
    return response


@require_POST
def api_key_revoke(request, pk: int):
    api_key = _get_api_key_for_user(request, pk)
    api_keys.revoke(ApiKey.objects.filter(pk=api_key.pk), actor=request.user)
    messages.success(request, f"The key '{api_key.name}' is revoked: requests using it are refused from now on.")
    return redirect("api_keys")


@require_GET
def api_key_detail(request, pk: int):
    api_key = _get_api_key_for_user(request, pk)
    subscription = current_subscription(request.user)
    since = subscription.current_period_start
    records = UsageRecord.objects.filter(user=request.user, api_key=api_key)
    in_period = usage(api_key=api_key).between(since)
    page = Paginator(
        records.only(
            "created_at",
            "model_slug",
            "provider",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "status",
            "latency_ms",
            "ttft_ms",
        ),
        USAGE_ROWS_PER_PAGE,
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "accounts/api_key_detail.html",
        {
            "api_key": api_key,
            "subscription": subscription,
            "now": timezone.now(),
            "usage": in_period.totals(),
            "by_model": in_period.by_model().order_by("-cost", "model_slug"),
            "by_day": in_period.by_day().order_by("-day"),
            "page": page,
            "allowed_models": api_key.allowed_models.order_by("slug"),
        },
    )
