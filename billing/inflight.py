"""Requests in flight and the processes serving them: a heartbeat says a process lives, checkpoints say
what its requests delivered, and the sweeper settles the requests of a process that died (kill -9, a lost
node) from their last checkpoint.

Every request in flight has a Reservation row (limits.hold) naming its process (`owner`). While the
process lives, its heartbeat (`beat`, every HEARTBEAT_SECONDS from the app's background task) refreshes
`heartbeat_at` on its rows, and each stream checkpoints its serving model and delivered output tokens on
its row at least every second. A row whose heartbeat is older than HEARTBEAT_TIMEOUT_SECONDS belongs to
a dead process: `settle_abandoned` meters it as delivered (status failed, the reason in its attempt) and
releases it, in one transaction. Exactly once: the row is locked and re-checked before it is settled,
and the usage row is unique on the request id, so the sweeper and a late settle of the original process
(or a second sweeper) never both write.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import metering
from .models import Reservation, UsageRecord

# At most this many abandoned requests settled per sweep (the next sweep takes the rest).
SWEEP_BATCH = 200

_owner: tuple[int, str] | None = None


def owner() -> str:
    """This process: host, pid and a random id of this start (pids are reused after a restart)."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:  # a forked child is a process of its own
        _owner = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}")
    return _owner[1]


def beat() -> int:
    """This process lives: its requests' rows say so. Returns how many it holds."""
    return Reservation.objects.filter(owner=owner()).update(heartbeat_at=timezone.now())


def checkpoint(reservation_id: int, model_id: int | None, delivered_tokens: int) -> None:
    """What a request in flight has delivered so far (a sign of life too). Plain SQL: every stream sends one
    a second, and the ORM's update compiler cost more than the write."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{Reservation._meta.db_table}" SET model_id = %s, delivered_tokens = %s, heartbeat_at = %s '
            "WHERE id = %s",
            [model_id, delivered_tokens, timezone.now(), reservation_id],
        )


@dataclass
class Held:
    """A reservation as metering.record_usage takes an admission: released, its cost capping the charge."""

    reservation_id: int | None
    reserved_cost: Decimal


@dataclass
class Attempt:
    """One upstream try as plain figures (metering.AttemptFigures)."""

    provider: str
    model_slug: str
    outcome: str
    http_status: int | None = None
    latency_ms: int = 0
    error: str = ""


def stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)


def settle_abandoned(reason: str) -> list[uuid.UUID]:
    """Settle the requests of dead processes from their last checkpoint; their request ids."""
    before = stale_before()
    abandoned = Reservation.objects.filter(heartbeat_at__lt=before).values_list("pk", flat=True)[:SWEEP_BATCH]
    settled = [_settle(pk, before, reason) for pk in list(abandoned)]
    return [request_id for request_id in settled if request_id is not None]


def settle_own(reason: str) -> list[uuid.UUID]:
    """Settle this process's own requests in flight from their last checkpoint, as the sweeper would once
    the process is gone: for a process that stops (its streams ended with it), so they are metered now
    rather than a heartbeat timeout later. Their request ids."""
    anytime = timezone.now() + timedelta(days=1)  # whatever their heartbeat
    own = Reservation.objects.filter(owner=owner()).values_list("pk", flat=True)
    settled = [_settle(pk, anytime, reason) for pk in list(own)]
    return [request_id for request_id in settled if request_id is not None]


@transaction.atomic
def _settle(pk: int, before: datetime, reason: str) -> uuid.UUID | None:
    # Locked and checked again: a row settled meanwhile (by its process, late, or by another sweeper) is
    # gone, one being settled is skipped, and one whose process just beat again is left alone.
    held = (
        Reservation.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("user", "api_key", "model")
        .filter(pk=pk, heartbeat_at__lt=before)
        .first()
    )
    if held is None:
        return None
    if held.request_id is None:  # nothing to meter (a reservation made outside a request)
        held.delete()
        return None
    model = held.model  # None: no reply came before the process died, nothing was delivered
    metering.record_usage(
        request_id=held.request_id,
        user=held.user,
        api_key=held.api_key,
        model=model,
        attempts=[Attempt(model.provider, model.slug, "interrupted", error=reason)] if model else [],
        status=UsageRecord.Status.FAILED,
        prompt_tokens=held.prompt_tokens if model else 0,
        completion_tokens=held.delivered_tokens,
        ttft_ms=None,
        latency_ms=max(0, round(((held.heartbeat_at or held.created_at) - held.created_at).total_seconds() * 1000)),
        admission=Held(held.pk, held.cost),
        purpose=held.purpose,
    )
    return held.request_id
