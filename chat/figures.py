"""The figures shown with a conversation: its totals (the chat header, /api/v1/sessions), and what
chat/_exchange_end.html shows once a reply has ended."""

from __future__ import annotations

from decimal import Decimal

from billing.models import FIGURES, usage_figures
from billing.rollups import usage
from billing.subscriptions import current_subscription

from .models import Conversation, Message

NO_USAGE = {**dict.fromkeys(FIGURES, 0), "cost": Decimal(0)}


def totals_by_conversation(conversation_ids: list[int]) -> dict[int, dict]:
    """Requests, tokens and cost of each conversation: the sum of its replies' usage rows, in one query
    (zeros for a conversation without any)."""
    rows = Message.objects.filter(conversation_id__in=conversation_ids, usage__isnull=False).values("conversation_id")
    found = {
        row["conversation_id"]: {name: value for name, value in row.items() if name != "conversation_id"}
        for row in rows.annotate(**usage_figures(through="usage__")).order_by()
    }
    return {pk: found.get(pk, dict(NO_USAGE)) for pk in conversation_ids}


def conversation_totals(conversation: Conversation | None) -> dict:
    if conversation is None:
        return dict(NO_USAGE)
    return totals_by_conversation([conversation.pk])[conversation.pk]


def quota_left(user) -> dict:
    """What the user's plan has left this period: tokens and credit (None: unlimited)."""
    subscription = current_subscription(user)
    plan = subscription.plan
    tokens, credit = plan.monthly_token_quota, plan.monthly_credit_quota
    used: dict = {"tokens": 0, "cost": Decimal(0)}  # nothing to take it from: not read
    if tokens is not None or credit is not None:
        used = usage(user=user).between(subscription.current_period_start).totals("tokens", "cost")
    return {
        "plan": plan.name,
        "tokens": None if tokens is None else max(0, tokens - used["tokens"]),
        "credit": None if credit is None else max(Decimal(0), credit - used["cost"]),
        "renews": subscription.current_period_end,
    }


def exchange_end(reply_id: int) -> dict | None:
    """What chat/_exchange_end.html shows once a reply has ended (the quota left after it too); None when
    the reply is gone (deleted with its conversation). Sync (ORM)."""
    try:
        # get(), not first(): first() orders the query, and compiling an ORDER BY beside the version annotations
        # cost more CPU than the rest of the reply's end (BENCHMARKS.md, "Chat sockets under load").
        reply = (
            Message.objects.with_versions()
            .select_related("model", "usage", "conversation__user")
            .prefetch_related("usage__attempts")
            .get(pk=reply_id)
        )
    except Message.DoesNotExist:
        return None
    return {
        "reply": reply,
        "totals": conversation_totals(reply.conversation),
        "quota_left": quota_left(reply.conversation.user),
    }
