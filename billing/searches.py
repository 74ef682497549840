"""Web searches against the caller's plan: a monthly number of searches and the plan's requests per
minute (a bucket of their own, so searching does not eat into model requests), checked before the
search; one SearchRecord per search afterwards, whatever its outcome."""

from __future__ import annotations

import math

from django.utils import timezone
from django.utils.formats import date_format

from . import ratelimit
from .limits import LimitExceeded, _upgrade_hint, _user_key
from .models import SearchRecord
from .subscriptions import current_subscription


def admit_search(user, api_key=None) -> None:
    """Raise LimitExceeded when the plan allows no more searches now. Sync."""
    subscription = current_subscription(user)
    plan = subscription.plan
    if plan.monthly_search_quota is not None:
        used = SearchRecord.objects.filter(user=user, created_at__gte=subscription.current_period_start).count()
        if used >= plan.monthly_search_quota:
            raise LimitExceeded(
                f"The {plan.name} plan includes {plan.monthly_search_quota:,} web searches a month, all used. "
                f"They renew on {date_format(subscription.current_period_end, 'j M Y')}; {_upgrade_hint()} for more.",
                code="search_quota_exceeded",
            )
    if plan.requests_per_minute:
        wait = ratelimit.take([ratelimit.Limit(f"search-rpm:{_user_key(user)}", plan.requests_per_minute)])
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise LimitExceeded(
                f"Search rate limit reached: the {plan.name} plan allows {plan.requests_per_minute} searches a "
                f"minute. Try again in {seconds} second{'s' if seconds != 1 else ''}.",
                code="rate_limit_exceeded",
                retry_after=seconds,
            )


def record_search(*, user, backend: str, results: int, error: str, latency_ms: int, api_key=None):
    return SearchRecord.objects.create(
        user=user,
        api_key=api_key,
        backend=backend,
        status=SearchRecord.Status.FAILED if error else SearchRecord.Status.COMPLETE,
        results=results,
        error=error[:500],
        latency_ms=max(0, latency_ms),
        created_at=timezone.now(),
    )
