"""Settlements the ledger could not take (its database busy or down), kept durably until it can.

A request settles with retries and backoff (`write_or_keep`: SETTLE_RETRIES, SETTLE_RETRY_SECONDS doubling); when the
database still refuses, its settlement (plain figures, JSON) is kept here: in Redis (one hash shared by
every process) when Redis is configured, else (or when Redis refuses too) as one file per request under
LEDGER_OUTBOX_DIR. `drain` writes them to the ledger and forgets them; the app's background task drains
at start and every SWEEP_SECONDS. Draining is idempotent: the usage row is unique on the request id, so
an entry written twice (two processes draining, a crash between writing and forgetting) counts once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from accounts.models import ApiKey, User
from aihub import shared_state
from chat.catalogue.models import AIModel

from . import metering
from .inflight import Attempt, Held
from .models import UsageRecord

logger = logging.getLogger(__name__)

# What a ledger write raises when the database is down, refuses connections or lost ours: worth a retry.
LEDGER_DOWN = (OperationalError, InterfaceError)

REDIS_KEY = "aihub:ledger-outbox"


@dataclass
class Reported:
    """What the upstream reported (metering.ReportedUsage)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    cost: Decimal | None


@dataclass
class Settlement:
    """A request's usage row and release as plain figures; `text` and `error` are what its caller was
    given (a chat reply is finished from them once the row is written)."""

    request_id: str
    user_id: int
    api_key_id: int | None
    model_id: int | None
    status: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: int | None
    latency_ms: int
    reservation_id: int | None = None
    reserved_cost: str | None = None  # None: no admission to cap the charge
    reported: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    error: str = ""
    purpose: str = UsageRecord.Purpose.REQUEST

    @classmethod
    def of(
        cls,
        *,
        request_id: uuid.UUID,
        user: User,
        api_key: ApiKey | None,
        model: AIModel | None,
        status: str,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_ms: int | None,
        latency_ms: int,
        admission: metering.Admitted | None,
        reported: metering.ReportedUsage | None,
        attempts: Iterable[metering.AttemptFigures],
        text: str = "",
        error: str = "",
        purpose: str = UsageRecord.Purpose.REQUEST,
    ) -> Settlement:
        """A request's settlement, from what metering.record_usage is given."""
        return cls(
            request_id=str(request_id),
            user_id=user.pk,
            api_key_id=api_key.pk if api_key else None,
            model_id=model.pk if model else None,
            status=status,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_ms=ttft_ms,
            latency_ms=latency_ms,
            reservation_id=admission.reservation_id if admission else None,
            reserved_cost=str(admission.reserved_cost) if admission else None,
            reported=(
                {
                    "prompt_tokens": reported.prompt_tokens,
                    "completion_tokens": reported.completion_tokens,
                    "cost": str(reported.cost) if reported.cost is not None else None,
                }
                if reported is not None
                else None
            ),
            attempts=[
                {
                    "provider": a.provider,
                    "model_slug": a.model_slug,
                    "outcome": a.outcome,
                    "http_status": a.http_status,
                    "latency_ms": a.latency_ms,
                    "error": a.error[:2000],
                }
                for a in attempts
            ],
            text=text,
            error=error,
            purpose=purpose,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: str | bytes) -> Settlement:
        return cls(**json.loads(data))


def _directory() -> Path:
    return Path(settings.LEDGER_OUTBOX_DIR)


def _keep_in_file(settlement: Settlement) -> None:
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{settlement.request_id}.tmp"
    with open(temporary, "w") as file:
        file.write(settlement.to_json())
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, directory / f"{settlement.request_id}.json")  # whole or not at all


def keep(settlement: Settlement) -> None:
    """Keep a settlement the ledger refused until `drain` writes it. Sync (Redis or disk I/O)."""
    if shared_state.redis_configured():
        try:
            shared_state.client().hset(REDIS_KEY, settlement.request_id, settlement.to_json())
            return
        except Exception:  # Redis down too: the local disk still keeps it
            logger.exception("request %s: Redis refused the outbox entry; kept on disk", settlement.request_id)
    _keep_in_file(settlement)


def pending() -> list[Settlement]:
    """What waits to be written, Redis's and this machine's files."""
    entries = []
    if shared_state.redis_configured():
        entries += [Settlement.from_json(data) for data in shared_state.client().hvals(REDIS_KEY)]
    directory = _directory()
    if directory.is_dir():
        entries += [Settlement.from_json(path.read_text()) for path in sorted(directory.glob("*.json"))]
    return entries


def _forget(settlement: Settlement) -> None:
    if shared_state.redis_configured():
        shared_state.client().hdel(REDIS_KEY, settlement.request_id)
    (_directory() / f"{settlement.request_id}.json").unlink(missing_ok=True)


def write(settlement: Settlement) -> UsageRecord | None:
    """The settlement's usage row (the one already there if it was written before); None when its user
    is gone (deleted with their usage)."""
    user = User.objects.filter(pk=settlement.user_id).first()
    if user is None:
        return None
    reported = Reported(**settlement.reported) if settlement.reported is not None else None
    if reported is not None and reported.cost is not None:
        reported.cost = Decimal(reported.cost)
    return metering.record_usage(
        request_id=uuid.UUID(settlement.request_id),
        user=user,
        api_key=ApiKey.objects.filter(pk=settlement.api_key_id).first() if settlement.api_key_id else None,
        model=AIModel.objects.filter(pk=settlement.model_id).first() if settlement.model_id else None,
        attempts=[Attempt(**attempt) for attempt in settlement.attempts],
        status=settlement.status,
        prompt_tokens=settlement.prompt_tokens,
        completion_tokens=settlement.completion_tokens,
        ttft_ms=settlement.ttft_ms,
        latency_ms=settlement.latency_ms,
        admission=(
            Held(settlement.reservation_id, Decimal(settlement.reserved_cost))
            if settlement.reserved_cost is not None
            else None
        ),
        reported=reported,
        purpose=settlement.purpose,
    )


async def write_or_keep(
    write: Callable[[], UsageRecord],
    settlement: Settlement,
    *,
    user: User,
    api_key: ApiKey | None,
    model: AIModel | None,
) -> UsageRecord:
    """`write()` (sync: run in a worker thread) tried again with backoff while the database refuses it (busy,
    down, our connection lost); then `settlement` kept for a later drain, and a stand-in row (not saved)
    returned, so that the caller still tells the truth about what it delivered."""
    for retry in range(settings.SETTLE_RETRIES + 1):
        try:
            record: UsageRecord = await database_sync_to_async(write)()
            return record
        except LEDGER_DOWN as exc:
            if retry == settings.SETTLE_RETRIES:
                logger.error("request %s: the ledger refused its usage row (%s); kept", settlement.request_id, exc)
                break
            delay = settings.SETTLE_RETRY_SECONDS * 2**retry
            logger.warning(
                "request %s: the ledger refused its usage row; again in %.1f s", settlement.request_id, delay
            )
            await asyncio.sleep(delay)
    await asyncio.to_thread(keep, settlement)
    cost = model.cost(settlement.prompt_tokens, settlement.completion_tokens) if model else Decimal(0)
    return UsageRecord(
        request_id=uuid.UUID(settlement.request_id),
        user=user,
        api_key=api_key,
        model=model,
        model_slug=model.slug if model else "",
        provider=model.provider if model else "",
        prompt_tokens=settlement.prompt_tokens,
        completion_tokens=settlement.completion_tokens,
        cost=cost,
        ttft_ms=settlement.ttft_ms,
        latency_ms=settlement.latency_ms,
        status=settlement.status,
        purpose=settlement.purpose,
    )


def drain(on_written: Callable[[Settlement, UsageRecord], None] | None = None) -> int:
    """Write what waits (oldest files first) and forget it; `on_written(settlement, row)` after each.
    Stops at the first failure (the database still down): the rest waits for the next drain. Returns
    how many were written."""
    written = 0
    for settlement in pending():
        record = write(settlement)
        if record is not None and on_written is not None:
            on_written(settlement, record)
        _forget(settlement)
        written += 1
    return written
