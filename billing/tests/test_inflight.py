"""The sweeper settles what dead processes left in flight, exactly once (billing.inflight); the processes
themselves are in chat/tests/test_crash_recovery.py."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing import inflight, limits, metering, rollups
from billing.models import Reservation, UsageRecord

# transaction: the concurrent sweepers run in threads of their own (their own connections).
pytestmark = pytest.mark.django_db(transaction=True)

REASON = "interrupted: the server stopped"


def admitted(person, model, request_id: uuid.UUID, purpose=UsageRecord.Purpose.REQUEST) -> limits.Admission:
    return limits.admit(
        user=person,
        model=model,
        candidates=[model],
        messages=[{"role": "user", "content": "Say hello"}],
        params={},
        request_id=request_id,
        purpose=purpose,
    )


def checkpointed_and_silent(admission: limits.Admission, model, delivered: int, seconds: float = 60) -> None:
    """What a process delivered before it went silent `seconds` ago."""
    inflight.checkpoint(admission.reservation_id, model.pk, delivered)
    Reservation.objects.filter(pk=admission.reservation_id).update(
        heartbeat_at=timezone.now() - timedelta(seconds=seconds)
    )


@pytest.fixture
def limited(make_plan, subscriber, make_model):
    return subscriber(make_plan(max_concurrent_streams=1)), make_model()


def test_a_silent_reservation_is_settled_from_its_checkpoint_and_released(limited):
    person, model = limited
    request_id = uuid.uuid4()
    admission = admitted(person, model, request_id)
    held = Reservation.objects.get()
    assert (held.request_id, held.owner, held.prompt_tokens) == (request_id, inflight.owner(), admission.prompt_tokens)
    checkpointed_and_silent(admission, model, delivered=42)

    assert inflight.settle_abandoned(REASON) == [request_id]
    usage = UsageRecord.objects.get()
    assert usage.request_id == request_id and usage.status == UsageRecord.Status.FAILED
    assert (usage.prompt_tokens, usage.completion_tokens) == (admission.prompt_tokens, 42)
    assert usage.cost == model.cost(admission.prompt_tokens, 42)
    assert [(a.outcome, a.error) for a in usage.attempts.all()] == [("interrupted", REASON)]
    assert not Reservation.objects.exists()
    admitted(person, model, uuid.uuid4())  # one stream at a time: free again


def test_a_side_call_settled_by_the_sweeper_keeps_its_purpose(limited):
    person, model = limited
    admission = admitted(person, model, uuid.uuid4(), purpose=UsageRecord.Purpose.TITLE)
    checkpointed_and_silent(admission, model, delivered=3)
    inflight.settle_abandoned(REASON)
    assert UsageRecord.objects.get().purpose == UsageRecord.Purpose.TITLE


def test_a_live_process_keeps_its_requests(limited):
    person, model = limited
    admission = admitted(person, model, uuid.uuid4())
    checkpointed_and_silent(admission, model, delivered=5, seconds=5)  # silent less than the timeout
    assert inflight.settle_abandoned(REASON) == []
    Reservation.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert inflight.beat() == 1  # this process lives: its rows are fresh again
    assert inflight.settle_abandoned(REASON) == [] and not UsageRecord.objects.exists()


def test_nothing_delivered_is_charged_nothing(limited):
    person, model = limited
    admission = admitted(person, model, uuid.uuid4())
    Reservation.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=1))  # died before any reply
    inflight.settle_abandoned(REASON)
    usage = UsageRecord.objects.get()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cost) == (0, 0, 0) and not usage.attempts.exists()
    assert admission.reservation_id is not None and not Reservation.objects.exists()


def test_a_late_settle_of_the_original_process_writes_nothing(limited):
    person, model = limited
    request_id = uuid.uuid4()
    admission = admitted(person, model, request_id)
    checkpointed_and_silent(admission, model, delivered=7)
    inflight.settle_abandoned(REASON)
    late = metering.record_usage(
        request_id=request_id,
        user=person,
        model=model,
        attempts=[],
        status=UsageRecord.Status.COMPLETE,
        prompt_tokens=11,
        completion_tokens=600,
        ttft_ms=5,
        latency_ms=900,
        admission=admission,
    )
    assert late.status == UsageRecord.Status.FAILED and late.completion_tokens == 7  # the sweeper's row
    assert UsageRecord.objects.count() == 1 and not Reservation.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks skipped by other sweepers: PostgreSQL")
def test_concurrent_sweepers_settle_each_request_once(make_plan, subscriber, make_model):
    model = make_model()
    people = [subscriber(make_plan(max_concurrent_streams=1)) for _ in range(5)]
    for person in people:
        checkpointed_and_silent(admitted(person, model, uuid.uuid4()), model, delivered=3)
    settled: list[list[uuid.UUID]] = []
    start = threading.Barrier(4)

    def sweeper() -> None:
        start.wait()
        try:
            settled.append(inflight.settle_abandoned(REASON))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(map(str, sum(settled, []))) == sorted(
        map(str, UsageRecord.objects.values_list("request_id", flat=True))
    )
    assert UsageRecord.objects.count() == 5 and not Reservation.objects.exists()
    assert rollups.differences() == []  # the sweeper's rows are rolled up as they are written
