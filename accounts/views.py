from django.db.models import Count, Sum
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.models import UsageRecord
from billing.subscriptions import current_subscription, period_usage


@require_GET
def profile(request):
    subscription = current_subscription(request.user)
    since = subscription.current_period_start
    by_model = (
        UsageRecord.objects.filter(user=request.user, created_at__gte=since)
        .values("model_slug")
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by("-cost", "model_slug")
    )
    return render(
        request,
        "accounts/profile.html",
        {
            "subscription": subscription,
            "plan": subscription.plan,
            "usage": period_usage(request.user, since),
            "by_model": by_model,
        },
    )
