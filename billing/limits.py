"""Admission: what a caller's plan allows, checked before any upstream call.

`admit` refuses a request (LimitExceeded) or reserves its worst case: prompt tokens plus the
output allowance (the request's `max_tokens`, clamped to the plan's `max_output_tokens`) at the
dearest candidate model's price. The reservation holds against the monthly token and credit
quota and the API key's monthly budget until the request settles (`metering.record_usage`
swaps it for the real usage row in one transaction, charging at most the reserved cost).
Open reservations also count the caller's concurrent streams.

Every check runs in one transaction holding the caller's subscription row lock, so concurrent
requests of one user are admitted one after another against committed figures: 50 concurrent
requests against a $1 budget can reserve at most $1 between them. Rate limits (ratelimit.py)
are taken last, so a request refused for quota or concurrency uses no rate allowance, and one
refused for rate or concurrency reserves nothing.

A plan with none of those limits (no quota, credit, concurrency or rate limit, as Enterprise)
used through a key without a budget has nothing to reserve against: such a request is admitted
with one unlocked read (plan policy and max_tokens cap still applied, its worst-case cost still
capping its charge) and no reservation, so one user's requests no longer take turns. It is then
not counted as in flight should the plan be changed to a limited one while it runs; its usage
counts as soon as it settles.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, NamedTuple, Protocol

from channels.db import database_sync_to_async
from django.db import connection, models, transaction
from django.db.models import Count, Q, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from accounts.models import ApiKey, User
from aihub import shared_state
from chat.catalogue.models import AIModel

from . import inflight, ratelimit
from .metering import count_prompt_tokens, reserved_prompt_tokens
from .models import Plan, Reservation, Subscription, UsageDaily, UsageRecord
from .rollups import Usage, usage
from .sql import convert, converted, insert_returning_id
from .subscriptions import current_subscription

# A reservation left by a process that died mid-request stops counting after this long.
RESERVATION_TTL = timedelta(hours=1)
# Output allowance when neither the request, the plan nor the model bounds it.
DEFAULT_OUTPUT_ALLOWANCE = 4096


class LimitExceeded(Exception):
    """A request the caller's plan does not allow. str() is the message to show the person."""

    def __init__(self, message: str, *, code: str, http_status: int = 429, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after

    @property
    def upgrade_url(self) -> str:
        return reverse("billing:index")


@dataclass
class Admission:
    """A request let through: the models it may use, its parameters (clamped), the messages to send
    (fitted to the context when admit was given a `fit`) and its reservation."""

    candidates: list[AIModel]
    params: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    dropped_messages: int = 0
    reservation_id: int | None = None
    prompt_tokens: int = 0
    reserved_tokens: int = 0
    reserved_cost: Decimal = field(default_factory=Decimal)


class Fitted(Protocol):
    @property
    def messages(self) -> list[dict[str, Any]]: ...
    @property
    def dropped(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...


# Fits messages into the candidates' context, given the request's max_tokens and the plan's cap (either may be
# None); may refuse (LimitExceeded). The gateway's context_window.fit.
Fit = Callable[[list[dict[str, Any]], list[AIModel], int | None, int | None], Fitted]


class _Request(NamedTuple):
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    fit: Fit | None
    request_id: uuid.UUID | None = None
    purpose: str = UsageRecord.Purpose.REQUEST


def _upgrade_hint() -> str:
    return f"upgrade your plan at {reverse('billing:index')}"


def allowed_candidates(plan: Plan, requested: AIModel | None, candidates: list[AIModel]) -> list[AIModel]:
    """The plan's model policy: free-only plans may not pick a paid model, nor fall back to one."""
    if not plan.free_models_only:
        return candidates
    if requested is not None and not requested.is_free:
        raise LimitExceeded(
            f"The {plan.name} plan includes free models only, and {requested.name} is a paid model. "
            f"Pick a free model (or auto), or {_upgrade_hint()}.",
            code="model_not_allowed",
            http_status=403,
        )
    return [m for m in candidates if m.is_free]


def requested_max_tokens(params: dict[str, Any]) -> int | None:
    requested = params.get("max_tokens")
    return requested if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0 else None


def output_allowance(
    plan: Plan, params: dict[str, Any], prompt_tokens: int, candidates: list[AIModel]
) -> tuple[int, dict[str, Any]]:
    """The most output tokens this request may produce, and the params with max_tokens set to it.

    A max_tokens above the plan's cap is clamped to the cap (not refused); without max_tokens the
    cap is sent upstream, so no reply can outgrow its reservation.
    """
    bounds = [b for b in (requested_max_tokens(params), plan.max_output_tokens) if b]
    if bounds:
        allowance = min(bounds)
        return allowance, {**params, "max_tokens": allowance}
    room = [m.context_length - prompt_tokens for m in candidates if m.context_length]
    return max(1, max(room)) if room else DEFAULT_OUTPUT_ALLOWANCE, params


def _refuse_over_quota(
    subscription: Subscription, reserved: dict[str, Any], used: dict[str, Any], tokens: int, cost: Decimal
) -> None:
    plan = subscription.plan

    def renews() -> str:  # formatted only for a refusal (0.1 ms on every admission otherwise)
        return date_format(subscription.current_period_end, "j M Y")

    if plan.monthly_token_quota is not None and used["tokens"] + reserved["tokens"] + tokens > plan.monthly_token_quota:
        raise LimitExceeded(
            f"This request would go over your {plan.name} plan's monthly quota of {plan.monthly_token_quota:,} "
            f"tokens ({used['tokens']:,} used this period). It renews on {renews()}. "
            f"{_upgrade_hint().capitalize()} for more.",
            code="insufficient_quota",
        )
    if plan.monthly_credit_quota is not None and used["cost"] + reserved["cost"] + cost > plan.monthly_credit_quota:
        raise LimitExceeded(
            f"This request (up to ${cost:.4f}) would go over your {plan.name} plan's monthly credit of "
            f"${plan.monthly_credit_quota} (${used['cost']:.4f} used this period). It renews on {renews()}. "
            f"{_upgrade_hint().capitalize()} for more, or lower max_tokens.",
            code="insufficient_quota",
        )


def _refuse_over_budget(
    api_key: ApiKey | None,
    budget: Decimal | None,
    reserved: dict[str, Any],
    used: dict[str, Any],
    cost: Decimal,
    subscription: Subscription,
) -> None:
    if budget is not None and used["key_cost"] + reserved["key_cost"] + cost > budget:
        raise LimitExceeded(
            f"This request (up to ${cost:.4f}) would go over the monthly budget of API key "
            f"'{api_key.name if api_key else ''}' "
            f"(${budget}, ${used['key_cost']:.4f} spent this period). Raise the key's budget, "
            f"lower max_tokens, or wait until {date_format(subscription.current_period_end, 'j M Y')}.",
            code="budget_exceeded",
        )


def _user_key(user: User) -> str:
    # Joined-at is part of the key because ids are reused when a database is recreated (tests, restores).
    return f"user:{user.pk}.{int(user.date_joined.timestamp())}"


def rate_limits(plan: Plan, user: User, api_key: ApiKey | None, tokens: int) -> list[ratelimit.Limit]:
    """Requests and tokens per minute for the account as a whole and, for API calls, for the key."""
    owners = [_user_key(user)] + ([f"key:{api_key.prefix}"] if api_key is not None else [])
    limits = []
    for owner in owners:
        if plan.requests_per_minute:
            limits.append(ratelimit.Limit(f"rpm:{owner}", plan.requests_per_minute))
        if plan.tokens_per_minute:
            limits.append(ratelimit.Limit(f"tpm:{owner}", plan.tokens_per_minute, cost=tokens))
    return limits


def _take_rate(plan: Plan, user: User, api_key: ApiKey | None, tokens: int) -> None:
    if plan.tokens_per_minute and tokens > plan.tokens_per_minute:
        raise LimitExceeded(
            f"This request needs up to {tokens:,} tokens, more than the {plan.name} plan's "
            f"{plan.tokens_per_minute:,} tokens per minute. Send a shorter prompt or a lower max_tokens, "
            f"or {_upgrade_hint()}.",
            code="rate_limit_exceeded",
        )
    wait = ratelimit.take(rate_limits(plan, user, api_key, tokens))
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise LimitExceeded(
            f"Rate limit reached: the {plan.name} plan allows {plan.requests_per_minute or 'unlimited'} requests "
            f"and {plan.tokens_per_minute or 'unlimited'} tokens per minute. Try again in {seconds} "
            f"second{'s' if seconds != 1 else ''}.",
            code="rate_limit_exceeded",
            retry_after=seconds,
        )


def _reserved(user: User, api_key: ApiKey | None, now: datetime) -> dict[str, Any]:
    """What the user's requests in flight hold: how many, their tokens and cost, and the key's part.
    Expired reservations (left by a process that died) do not count, and are deleted when there are any."""
    live = Q(expires_at__gt=now)
    key_filter = live & Q(api_key=api_key) if api_key is not None else Q(pk__in=[])
    totals = Reservation.objects.filter(user=user).aggregate(
        expired=Count("id", filter=~live),
        streams=Count("id", filter=live),
        total_tokens=Sum("tokens", filter=live),
        total_cost=Sum("cost", filter=live),
        key_total_cost=Sum("cost", filter=key_filter),
    )
    if totals["expired"]:
        Reservation.objects.filter(user=user, expires_at__lte=now).delete()
    return {
        "streams": totals["streams"],
        "tokens": totals["total_tokens"] or 0,
        "cost": totals["total_cost"] or Decimal(0),
        "key_cost": totals["key_total_cost"] or Decimal(0),
    }


def _used_this_period(
    subscription: Subscription, user: User, api_key: ApiKey | None, budget: Decimal | None
) -> dict[str, Any]:
    """Tokens and spend recorded this period, summed only where a limit needs them: an unlimited
    plan and a key without a budget cost no query over the usage. Read from the daily rollups (and the
    usage rows of the part of a day the period starts in), which are written with each usage row: no
    settled request is missed."""
    plan, since = subscription.plan, subscription.current_period_start
    used = {"tokens": 0, "cost": Decimal(0), "key_cost": Decimal(0)}
    if plan.monthly_token_quota is not None or plan.monthly_credit_quota is not None:
        used.update(usage(user=user).between(since).totals("tokens", "cost"))
    if budget is not None:
        used["key_cost"] = usage(api_key=api_key).between(since).totals("cost")["cost"]
    return used


def admit(
    *,
    user: User,
    api_key: ApiKey | None = None,
    model: AIModel | None,
    candidates: list[AIModel],
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    fit: Fit | None = None,
    request_id: uuid.UUID | None = None,
    purpose: str = UsageRecord.Purpose.REQUEST,
) -> Admission:
    """Refuse the request (LimitExceeded) or reserve its worst case. Sync: call through `admit_async`.
    With `fit`, the messages are fitted to the context first and the admission says what is sent.
    The reservation carries `request_id` and `purpose` (the usage row it becomes) and this process as its
    owner."""
    request = _Request(messages, params, fit, request_id, purpose)
    seen = _locked_before.get(_caller(user, api_key))
    admission = None
    if seen is None:
        seen = _read_unlocked(user, api_key)
        admission = _admit_unlimited(seen, model, candidates, request)
    if admission is None:
        admission = _admit_locked(user, api_key, model, candidates, request, seen=seen)
    if admission is None:
        current_subscription(user)  # creates it, or rolls its period (and applies a scheduled change)
        admission = _admit_locked(user, api_key, model, candidates, request, rolled=True)
    assert admission is not None  # rolled: the subscription exists and its period is current
    return admission


def estimate(
    *,
    user: User,
    model: AIModel | None,
    candidates: list[AIModel],
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    fit: Fit | None = None,
) -> Admission:
    """What `admit` would let through and reserve (plan policy, output cap, fitted messages, worst-case
    cost), without checking quotas or reserving anything: for estimates before sending. Raises
    LimitExceeded only for what no retry changes (a model the plan excludes, a message too long)."""
    plan = current_subscription(user).plan
    return _worst_case(plan, model, candidates, _Request(messages, params, fit))


def _worst_case(plan: Plan, model: AIModel | None, candidates: list[AIModel], request: _Request) -> Admission:
    """The plan's model policy and max_tokens cap applied (and the context fitted), and the request's
    most tokens and cost."""
    messages, params, fit = request.messages, request.params, request.fit
    candidates = allowed_candidates(plan, model, candidates)
    dropped = 0
    if fit is None:
        prompt_tokens = count_prompt_tokens(messages, params.get("tools"))
        output_tokens, params = output_allowance(plan, params, prompt_tokens, candidates)
    else:
        fitted = fit(messages, candidates, requested_max_tokens(params), plan.max_output_tokens)
        messages, dropped, output_tokens = fitted.messages, fitted.dropped, fitted.max_tokens
        params = {**params, "max_tokens": output_tokens}
        prompt_tokens = count_prompt_tokens(messages, params.get("tools"))
    # Every part sent is counted (system prompt, attachments, images, tool schemas), with the margin by which
    # the upstream's own tokenizer may count more: the charge then fits the reservation.
    prompt_tokens = reserved_prompt_tokens(prompt_tokens)
    cost = max((m.cost(prompt_tokens, output_tokens) for m in candidates), default=Decimal(0))
    return Admission(
        candidates=candidates,
        params=params,
        messages=messages,
        dropped_messages=dropped,
        prompt_tokens=prompt_tokens,
        reserved_tokens=prompt_tokens + output_tokens,
        reserved_cost=cost,
    )


def _has_nothing_to_reserve(plan: Plan) -> bool:
    """No limit of the plan counts requests in flight, tokens or spend (as the limits below read them)."""
    return (
        plan.monthly_token_quota is None
        and plan.monthly_credit_quota is None
        and plan.max_concurrent_streams is None
        and not plan.requests_per_minute
        and not plan.tokens_per_minute
    )


# Per process, the subscription (with `key_budget`) of each caller with a limit as its last admission found it
# under the lock: a hint that spares the next admission its unlocked read (PostgreSQL, `_admit_in_one_trip`).
# Never trusted: the locked read decides, and a plan, budget or period changed since is read again.
_locked_before: dict[tuple[Any, ...], Subscription] = {}
_LOCKED_BEFORE_MAX = 10_000


def _caller(user: User, api_key: ApiKey | None) -> tuple[Any, ...]:
    return (user.pk, user.date_joined, api_key.pk if api_key is not None else None)


def _read_unlocked(user: User, api_key: ApiKey | None) -> Subscription | None:
    """The active subscription with its plan and (as `key_budget`) the key's budget, read afresh without a
    lock: one query, as plain SQL (the ORM's compiler cost more than the read)."""
    with connection.cursor() as cursor:
        cursor.execute(_read_sql(), [api_key.pk if api_key is not None else None, user.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    subscription = _from_locked_row(row[:-1])
    subscription.key_budget = convert(row[-1], ApiKey._meta.get_field("monthly_budget"))  # type: ignore[attr-defined]
    return subscription


def _admit_unlimited(
    subscription: Subscription | None,
    model: AIModel | None,
    candidates: list[AIModel],
    request: _Request,
) -> Admission | None:
    """Admission without lock or reservation where neither the plan nor the key limits anything (as the
    unlocked read found them). None when the locked path must decide: a limit to hold, no subscription yet,
    or a period to roll (or a payment overdue)."""
    if (
        subscription is None
        or subscription.needs_update(timezone.now())
        or not _has_nothing_to_reserve(subscription.plan)
        or getattr(subscription, "key_budget", None) is not None
    ):
        return None
    return _worst_case(subscription.plan, model, candidates, request)


def _admit_locked(
    user: User,
    api_key: ApiKey | None,
    model: AIModel | None,
    candidates: list[AIModel],
    request: _Request,
    *,
    rolled: bool = False,
    seen: Subscription | None = None,
) -> Admission | None:
    """`admit` under the subscription's row lock; None (nothing done) when there is no subscription
    yet or its period is over, unless `current_subscription` has just seen to that. `seen`: the subscription
    as the unlocked read found it (on PostgreSQL, admission then takes one round trip: `_admit_in_one_trip`)."""
    now = timezone.now()
    if connection.vendor == "postgresql" and seen is not None and not rolled and not seen.needs_update(now):
        return _in_own_transaction(
            lambda begin: _admit_in_one_trip(begin, seen, user, api_key, model, candidates, request, now)
        )
    with transaction.atomic():
        return _admit_under_lock(user, api_key, model, candidates, request, now=now, rolled=rolled)


def _admit_under_lock(
    user: User,
    api_key: ApiKey | None,
    model: AIModel | None,
    candidates: list[AIModel],
    request: _Request,
    *,
    now: datetime,
    rolled: bool,
) -> Admission | None:
    # The lock makes one user's admissions take turns, each seeing the others' reservations
    # (and the plan as it is now, should it just have changed).
    active = (
        Subscription.objects.select_for_update(of=("self",)).select_related("plan").filter(user=user, is_active=True)
    )
    subscription = active.get() if rolled else active.first()
    if subscription is None or (subscription.needs_update(now) and not rolled):
        return None
    plan = subscription.plan
    admission = _worst_case(plan, model, candidates, request)
    tokens, cost = admission.reserved_tokens, admission.reserved_cost
    # Read afresh: the caller's key object may come from a per-process lookup cache.
    budget = (
        ApiKey.objects.filter(pk=api_key.pk).values_list("monthly_budget", flat=True).first()
        if api_key is not None
        else None
    )
    # Reservations before usage rows: a request settling in between is then counted twice
    # (safe), never zero times.
    reserved = _reserved(user, api_key, now)
    used = _used_this_period(subscription, user, api_key, budget)
    _refuse_over_limits(subscription, api_key, budget, reserved, used, tokens, cost)
    _take_rate(plan, user, api_key, tokens)
    admission.reservation_id = hold(
        admission, user=user, api_key=api_key, request_id=request.request_id, purpose=request.purpose, now=now
    )
    return admission


def _refuse_over_limits(
    subscription: Subscription,
    api_key: ApiKey | None,
    budget: Decimal | None,
    reserved: dict[str, Any],
    used: dict[str, Any],
    tokens: int,
    cost: Decimal,
) -> None:
    """The request refused (LimitExceeded) if the streams in flight, the quotas or the key's budget leave it
    no room."""
    plan = subscription.plan
    if plan.max_concurrent_streams is not None and reserved["streams"] >= plan.max_concurrent_streams:
        raise LimitExceeded(
            f"The {plan.name} plan allows {plan.max_concurrent_streams} request"
            f"{'s' if plan.max_concurrent_streams != 1 else ''} at a time. Wait for the current one to finish "
            f"(or stop it), or {_upgrade_hint()}.",
            code="too_many_streams",
            retry_after=1,
        )
    _refuse_over_quota(subscription, reserved, used, tokens, cost)
    _refuse_over_budget(api_key, budget, reserved, used, cost, subscription)


def _has_quota(plan: Plan) -> bool:
    return plan.monthly_token_quota is not None or plan.monthly_credit_quota is not None


class _RollBack(Exception):  # noqa: N818  # not an error: the admission's transaction ends in a rollback
    """Ends `_in_own_transaction`'s transaction in a rollback; `admission` is returned."""

    def __init__(self, admission: Admission | None):
        self.admission = admission


def _in_own_transaction(admit_in_it: Callable[[str], Admission | None]) -> Admission | None:
    """`admit_in_it(begin)` in a transaction: committed if it returns, rolled back if it raises (_RollBack: what
    it returns). Outside any transaction, with the rate limiter in Redis, the transaction is opened by the
    first statement it sends (`begin`: "BEGIN; ") and closed here, which spares the round trip psycopg
    takes to open one for Django's `atomic`; else in `atomic` (`begin` is then "")."""
    if connection.in_atomic_block or not connection.get_autocommit() or not shared_state.redis_configured():
        try:
            with transaction.atomic():
                return admit_in_it("")
        except _RollBack as rolled_back:
            return rolled_back.admission
    try:
        admission = admit_in_it("BEGIN; ")
    except _RollBack as rolled_back:
        _end_transaction("ROLLBACK")
        return rolled_back.admission
    except BaseException:
        with contextlib.suppress(Exception):  # the error that brought us here is the one to report
            _end_transaction("ROLLBACK")
        raise
    _end_transaction("COMMIT")
    return admission


def _end_transaction(command: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(command)


def _admit_in_one_trip(
    begin: str,
    seen: Subscription,
    user: User,
    api_key: ApiKey | None,
    model: AIModel | None,
    candidates: list[AIModel],
    request: _Request,
    now: datetime,
) -> Admission | None:
    """`_admit_locked` on PostgreSQL in one round trip to the database (in `_in_own_transaction`'s transaction,
    opened by `begin`), the same decisions in the same order: one multi-statement query (psycopg's client-side
    cursor) locks the subscription row, deletes the caller's expired reservations, then (a statement of its
    own, so it sees what the requests admitted before this one committed while it waited for the lock) reads
    the key's budget, the reservations' sums and the period's usage from the rollups, then inserts the
    reservation, worked out
    from the plan as `seen` (the unlocked read, or this process's last admission of the caller). The checks
    then run here; a refusal raises, and the transaction, reservation included, rolls back, as does a
    refusal of the rate limiter, taken last. Where the locked rows differ from `seen` (a plan, budget or
    period changed since), the differing part is read or written again (rare)."""
    try:
        guessed: Admission | None = _worst_case(seen.plan, model, candidates, request)
    except LimitExceeded:  # by the plan as last seen: the locked plan decides (it may have changed since)
        guessed = None
    since = seen.current_period_start
    budget_seen = getattr(seen, "key_budget", None)
    user_usage = usage(user=user).between(since) if _has_quota(seen.plan) else None
    key_usage = usage(api_key=api_key).between(since) if budget_seen is not None else None
    # Parts of the period whose sums can no longer change are cached (billing.rollups): read before the
    # lock; the rest is read with the reservations, in the same statement (one snapshot: a request settling
    # meanwhile is counted once, as its reservation or as its usage).
    user_sql, user_params, user_cached = _usage_sql(user_usage)
    key_sql, key_params, key_cached = _usage_sql(key_usage)
    live = "expires_at > %s"
    figures_sql = (
        "SELECT (SELECT monthly_budget FROM accounts_apikey WHERE id = %s), held.*, used.tokens, used.cost, "
        "key_used.cost FROM ("
        f"SELECT COUNT(*) FILTER (WHERE {live}), "
        f"COALESCE(SUM(tokens) FILTER (WHERE {live}), 0), COALESCE(SUM(cost) FILTER (WHERE {live}), 0), "
        f"COALESCE(SUM(cost) FILTER (WHERE {live} AND api_key_id = %s), 0) "
        f"FROM billing_reservation WHERE user_id = %s) AS held, ({user_sql}) AS used, ({key_sql}) AS key_used"
    )
    api_key_id = api_key.pk if api_key is not None else None
    figures_params = [api_key_id, now, now, now, now, api_key_id, user.pk, *user_params, *key_params]
    insert_sql, insert_params = (
        _hold_sql(guessed, user=user, api_key=api_key, request_id=request.request_id, purpose=request.purpose, now=now)
        if guessed
        else ("SELECT NULL", [])
    )
    # Not waiting for the commit's WAL flush: a reservation lost in a database crash is harmless. The crash
    # ends every request in flight anyway (their usage rows are kept by metering's retries and outbox); a
    # lost row only stops counting against quotas from the crash on, and the WAL is written in order, so
    # the request's usage row (committed synchronously later) makes its reservation durable with it.
    with connection.cursor() as cursor:
        cursor.execute(
            f"{begin}SELECT set_config('synchronous_commit', 'off', true); {_lock_sql()}; "
            # Reservations left by a process that died mid-request stop counting (and go) once expired.
            f"DELETE FROM billing_reservation WHERE user_id = %s AND expires_at <= %s; {figures_sql}; {insert_sql}",
            [user.pk, user.pk, now, *figures_params, *insert_params],
        )
        for _ in range(2 if begin else 1):
            cursor.nextset()
        locked = cursor.fetchone()
        cursor.nextset()
        cursor.nextset()
        budget, streams, tokens, cost, key_cost, user_tokens, user_cost, key_used = cursor.fetchone()
        cursor.nextset()
        (reservation_id,) = cursor.fetchone()
    caller = _caller(user, api_key)
    _locked_before.pop(caller, None)
    if locked is None:  # gone since the unlocked read: the slow path decides
        raise _RollBack(None)
    subscription = _from_locked_row(locked)
    if subscription.needs_update(now):
        raise _RollBack(None)
    plan = subscription.plan
    if _has_nothing_to_reserve(plan) and budget is None:  # limited no more (as `_admit_unlimited` would admit)
        raise _RollBack(_worst_case(plan, model, candidates, request))
    subscription.key_budget = budget  # type: ignore[attr-defined]  # as `_read_unlocked` annotates it
    if len(_locked_before) >= _LOCKED_BEFORE_MAX:
        _locked_before.clear()
    _locked_before[caller] = subscription
    reserved = {"streams": streams, "tokens": int(tokens), "cost": cost, "key_cost": key_cost}
    used = {"tokens": 0, "cost": Decimal(0), "key_cost": Decimal(0)}
    if _has_quota(plan):
        if user_usage is not None and subscription.current_period_start == since:
            used["tokens"] = int(user_tokens) + user_cached[0]
            used["cost"] = Decimal(user_cost) + user_cached[1]
        else:
            used.update(usage(user=user).between(subscription.current_period_start).totals("tokens", "cost"))
    if budget is not None:
        if key_usage is not None and subscription.current_period_start == since:
            used["key_cost"] = Decimal(key_used) + key_cached[1]
        else:
            used["key_cost"] = usage(api_key=api_key).between(subscription.current_period_start).totals("cost")["cost"]
    if guessed is not None and _plan_fields(plan) == _plan_fields(seen.plan):
        admission = guessed
    else:  # worked out from another plan (or refused by it): again, from this one
        admission = _worst_case(plan, model, candidates, request)
    _refuse_over_limits(
        subscription, api_key, budget, reserved, used, admission.reserved_tokens, admission.reserved_cost
    )
    _take_rate(plan, user, api_key, admission.reserved_tokens)
    if reservation_id is None:
        reservation_id = hold(
            admission, user=user, api_key=api_key, request_id=request.request_id, purpose=request.purpose, now=now
        )
    elif admission is not guessed:
        Reservation.objects.filter(pk=reservation_id).update(
            tokens=admission.reserved_tokens, cost=admission.reserved_cost, prompt_tokens=admission.prompt_tokens
        )
    admission.reservation_id = reservation_id
    return admission


# Each table the period's usage is read from (rollups.Usage.parts): its range column and its cost column.
_USAGE_TABLES = {UsageDaily: ("day", "total_cost"), UsageRecord: ("created_at", "cost")}


def _usage_sql(period: Usage | None) -> tuple[str, list[Any], tuple[int, Decimal]]:
    """A period's usage (rollups.Usage, of one user or key) as SQL for one row (tokens, cost) of the parts still
    changing, with its params, and the sums of its cached parts (read now). Zeros for no period. Written here
    from the parts' ranges (compiling their querysets took longer than the query)."""
    cached_tokens, cached_cost = 0, Decimal(0)
    selects, params = [], []
    if period is None:
        return "SELECT 0 AS tokens, 0 AS cost", [], (cached_tokens, cached_cost)
    for part in period.parts(cached_head=True):
        if part.cache_key is not None:
            found = part.totals(("tokens", "cost"))
            cached_tokens += part.sign * found["tokens"]
            cached_cost += part.sign * found["cost"]
            continue
        model = part.model
        moment, cost = (_column(model, name) for name in _USAGE_TABLES[model])
        ((owner, value),) = period.filters.items()
        where, where_params = [f"{_column(model, owner)} = %s"], [getattr(value, "pk", value)]
        for bound, operator in ((part.start, ">="), (part.end, "<")):
            if bound is not None:
                where.append(f"{moment} {operator} %s")
                where_params.append(bound)
        selects.append(
            f"SELECT {part.sign} * COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens, "
            f"{part.sign} * COALESCE(SUM({cost}), 0) AS cost FROM {model._meta.db_table} WHERE {' AND '.join(where)}"
        )
        params += where_params
    if not selects:
        return "SELECT 0 AS tokens, 0 AS cost", [], (cached_tokens, cached_cost)
    union = " UNION ALL ".join(selects)
    sql = f"SELECT COALESCE(SUM(tokens), 0) AS tokens, COALESCE(SUM(cost), 0) AS cost FROM ({union}) AS parts"
    return sql, params, (cached_tokens, cached_cost)


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.column is not None
    return field.column


@cache
def _lock_sql() -> str:
    """The caller's active subscription and its plan, the subscription's row locked (params: the user's id)."""
    return f'{_subscription_sql()} FOR UPDATE OF "{Subscription._meta.db_table}"'


@cache
def _read_sql() -> str:
    """`_lock_sql` without the lock, and the key's budget after the plan (params: the key's id, the user's id)."""
    select, _, rest = _subscription_sql().partition(" FROM ")
    return f"{select}, (SELECT monthly_budget FROM accounts_apikey WHERE id = %s) FROM {rest}"


@cache
def _subscription_sql() -> str:
    """The caller's active subscription and its plan (one at most: a unique constraint); params: the user's id."""
    subscriptions, plans = f'"{Subscription._meta.db_table}"', f'"{Plan._meta.db_table}"'
    columns = [f'{subscriptions}."{f.column}"' for f in Subscription._meta.concrete_fields] + [
        f'{plans}."{f.column}"' for f in Plan._meta.concrete_fields
    ]
    plan, user, active = (f'{subscriptions}."{_column(Subscription, name)}"' for name in ("plan", "user", "is_active"))
    return (
        f"SELECT {', '.join(columns)} FROM {subscriptions} INNER JOIN {plans} "
        f'ON {plan} = {plans}."{_column(Plan, "id")}" WHERE {user} = %s AND {active}'
    )


def _plan_fields(plan: Plan) -> tuple[Any, ...]:
    return tuple(getattr(plan, f.attname) for f in Plan._meta.concrete_fields)


def _from_locked_row(row: tuple[Any, ...]) -> Subscription:
    """The subscription (and its plan) from a row of `_subscription_sql`, its values converted as the ORM
    converts them (SQLite returns dates as text, decimals as floats)."""
    subscription_fields = [f.attname for f in Subscription._meta.concrete_fields]
    plan_fields = [f.attname for f in Plan._meta.concrete_fields]
    values = converted(row, _subscription_columns())
    assert len(row) == len(subscription_fields) + len(plan_fields)
    subscription = Subscription.from_db(connection.alias, subscription_fields, values[: len(subscription_fields)])
    subscription.plan = Plan.from_db(connection.alias, plan_fields, values[len(subscription_fields) :])
    return subscription


@cache
def _subscription_columns() -> tuple[models.Field[Any, Any], ...]:
    return (*Subscription._meta.concrete_fields, *Plan._meta.concrete_fields)


def _hold_sql(
    admission: Admission,
    *,
    user: User,
    api_key: ApiKey | None,
    request_id: uuid.UUID | None,
    purpose: str = UsageRecord.Purpose.REQUEST,
    now: datetime,
) -> tuple[str, list[Any]]:
    """`hold`'s INSERT (returning the id) as SQL, for `_admit_in_one_trip` to send with the rest."""
    return insert_returning_id(
        Reservation(
            user=user,
            api_key=api_key,
            tokens=admission.reserved_tokens,
            cost=admission.reserved_cost,
            expires_at=now + RESERVATION_TTL,
            request_id=request_id,
            purpose=purpose,
            owner=inflight.owner(),
            heartbeat_at=now,
            prompt_tokens=admission.prompt_tokens,
        )
    )


def hold(
    admission: Admission,
    *,
    user: User,
    api_key: ApiKey | None,
    request_id: uuid.UUID | None,
    purpose: str = UsageRecord.Purpose.REQUEST,
    now: datetime,
) -> int:
    """The admission's reservation row, owned by this process (billing.inflight): its id."""
    sql, params = _hold_sql(admission, user=user, api_key=api_key, request_id=request_id, purpose=purpose, now=now)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (reservation_id,) = cursor.fetchone()
    return int(reservation_id)


def release(admission: Admission) -> None:
    if admission.reservation_id is not None:
        Reservation.objects.filter(pk=admission.reservation_id).delete()


async def admit_async(admit_in_thread: Callable[[], Admission]) -> Admission:
    """`admit` from async code: `admit_in_thread` calls it, with whatever must precede it in the same
    worker thread (one hop for all). If the caller is cancelled meanwhile, a reservation made anyway is
    released."""
    task = asyncio.ensure_future(database_sync_to_async(admit_in_thread)())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await database_sync_to_async(release)(await task)
        raise
