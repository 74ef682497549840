"""Admission without lock or reservation where nothing limits the caller, and only there."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.limits import LimitExceeded
from billing.models import Plan, Reservation, UsageRecord
from chat.catalogue import lookup as catalogue
from chat.gateway.generation import Generation

from .conftest import generation

pytestmark = pytest.mark.django_db(transaction=True)

LIMITS = {
    "token quota": {"monthly_token_quota": 1_000_000},
    "credit": {"monthly_credit_quota": Decimal("100")},
    "concurrency": {"max_concurrent_streams": 5},
    "requests per minute": {"requests_per_minute": 1000},
    "tokens per minute": {"tokens_per_minute": 1_000_000},
}


def statements_of(worker: Generation) -> list[str]:
    """Complete the request; the SQL it ran, lower-cased, without BEGIN and COMMIT (logged by some
    database backends only; admission on PostgreSQL opens its transaction with its one query's BEGIN)."""
    with CaptureQueriesContext(connection) as captured:
        async_to_sync(worker.complete)()
    statements = [q["sql"].lower().removeprefix("begin; ") for q in captured.captured_queries]
    return [sql for sql in statements if not sql.startswith(("begin", "commit"))]


def kinds(statements: list[str]) -> list[str]:
    """Each statement as its verb and the first table it names ("select billing_subscription")."""
    return [" ".join(re.match(r'(\w+)\W.*?"(\w+)"', sql, re.S).groups()) for sql in statements]


def settlement(*, released: bool) -> list[str]:
    """The usage row's writes: on PostgreSQL one round trip (metering._write_in_one_trip), named by its first
    statement, which also writes the rollup (billing.rollups) and the attempts in the same transaction."""
    writes = ["delete billing_reservation"] if released else []
    writes += ["insert billing_usagerecord", "insert billing_usagedaily", "insert billing_upstreamattempt"]
    return writes[:1] if connection.vendor == "postgresql" else writes


def touches_reservations(statements: list[str]) -> bool:
    return any("billing_reservation" in sql for sql in statements)


def locks_and_reserves(statements: list[str]) -> bool:
    locked = any("for update" in sql for sql in statements) or not connection.features.has_select_for_update
    # On PostgreSQL the insert is the last of the statements sent in admission's one round trip.
    reserved = any('insert into "billing_reservation"' in sql for sql in statements)
    released = any(sql.startswith("delete") and "billing_reservation" in sql for sql in statements)
    return locked and reserved and released


def test_an_unlimited_plan_admits_in_one_unlocked_read_and_reserves_nothing(
    make_plan, subscriber, make_model, make_key
):
    person, model = subscriber(make_plan()), make_model()
    worker = generation(person, model, api_key=make_key(person))
    catalogue.current()  # with Redis: the process's copy of the catalogue, loaded now, not by the request
    statements = statements_of(worker)
    assert kinds(statements) == [
        "select billing_subscription",  # with its plan and the key's budget
        *settlement(released=False),
        "update accounts_apikey",  # its last use
    ]
    assert "for update" not in statements[0]
    if connection.vendor == "postgresql":  # the one round trip writes the rollup and the attempts too
        assert '"billing_usagedaily"' in statements[1] and '"billing_upstreamattempt"' in statements[1]
    assert worker.admission.reservation_id is None and worker.status == "complete"
    assert UsageRecord.objects.get().cost == model.cost(11, 6)


def test_a_limited_plan_costs_the_locked_admission_and_its_reservation(make_plan, subscriber, make_model, make_key):
    person, model = subscriber(make_plan(max_concurrent_streams=5)), make_model()
    worker = generation(person, model, api_key=make_key(person))
    catalogue.current()
    admission = (
        # One round trip: the lock, then the key's budget, the reservations' sums and the period's usage, then
        # the reservation's insert (limits._admit_in_one_trip).
        ["select billing_subscription"]
        if connection.vendor == "postgresql"
        else [
            "select billing_subscription",
            "select accounts_apikey",
            "select billing_reservation",
            "insert billing_reservation",
        ]
    )
    assert kinds(statements_of(worker)) == [
        "select billing_subscription",  # the unlocked read finds a limit: the locked admission decides
        *admission,
        *settlement(released=True),
        "update accounts_apikey",
    ]
    assert worker.admission.reservation_id is not None and not Reservation.objects.exists()


def test_no_statement_of_an_unlimited_request_locks_or_touches_reservations(make_plan, subscriber, make_model):
    statements = statements_of(generation(subscriber(make_plan()), make_model()))
    assert not touches_reservations(statements) and not any("for update" in sql for sql in statements)


@pytest.mark.parametrize("limits", LIMITS.values(), ids=LIMITS.keys())
def test_a_plan_with_any_limit_still_locks_and_reserves(limits, make_plan, subscriber, make_model):
    worker = generation(subscriber(make_plan(**limits)), make_model())
    assert locks_and_reserves(statements_of(worker))
    assert worker.admission.reservation_id is not None


def test_a_key_budget_on_an_unlimited_plan_is_read_afresh_and_reserved_against(
    make_plan, subscriber, make_model, make_key
):
    person, model = subscriber(make_plan()), make_model()
    api_key = make_key(person)
    assert not touches_reservations(statements_of(generation(person, model, api_key=api_key)))
    type(api_key).objects.filter(pk=api_key.pk).update(monthly_budget=Decimal("5"))  # this copy keeps None
    assert locks_and_reserves(statements_of(generation(person, model, api_key=api_key)))


def test_a_plan_given_a_limit_reserves_from_the_next_request_on(make_plan, subscriber, make_model):
    plan = make_plan()
    person, model = subscriber(plan), make_model()
    assert not touches_reservations(statements_of(generation(person, model)))
    Plan.objects.filter(pk=plan.pk).update(max_concurrent_streams=1)
    assert locks_and_reserves(statements_of(generation(person, model)))


def test_the_unlocked_path_still_applies_the_model_policy_and_the_output_cap(
    make_plan, subscriber, make_model, upstream
):
    person = subscriber(make_plan(free_models_only=True, max_output_tokens=50))
    with pytest.raises(LimitExceeded) as caught:
        async_to_sync(generation(person, make_model(price_in="0.15")).complete)()
    assert caught.value.code == "model_not_allowed"
    worker = generation(person, make_model("free-model", price_in="0", price_out="0"), params={"max_tokens": 5000})
    async_to_sync(worker.complete)()
    assert upstream.requests[-1]["body"]["max_tokens"] == 50 and worker.admission.reservation_id is None


def test_an_ended_period_is_rolled_on_an_unlimited_plan_too(make_plan, subscriber, make_model):
    person = subscriber(make_plan())
    subscription = person.subscriptions.get(is_active=True)
    subscription.current_period_end = timezone.now() - timedelta(minutes=1)
    subscription.save(update_fields=["current_period_end"])
    async_to_sync(generation(person, make_model()).complete)()
    subscription.refresh_from_db()
    assert subscription.current_period_end > timezone.now() and not Reservation.objects.exists()


def test_a_limited_callers_next_admission_is_the_locked_one_alone_on_postgresql(make_plan, subscriber, make_model):
    person, model = subscriber(make_plan(monthly_token_quota=1_000_000)), make_model()
    catalogue.current()
    statements_of(generation(person, model))  # this process now knows the caller is limited
    statements = statements_of(generation(person, model))
    if connection.vendor == "postgresql":  # no unlocked read: the one round trip locks, reads and reserves
        assert "for update" in statements[0] and locks_and_reserves(statements)
    else:
        assert "for update" not in statements[0] and locks_and_reserves(statements)


def test_a_plan_changed_since_the_callers_last_admission_is_the_one_applied(
    make_plan, subscriber, make_model, upstream
):
    plan = make_plan(max_concurrent_streams=5, free_models_only=True)
    person = subscriber(plan)
    free, paid = make_model("free-model", price_in="0", price_out="0"), make_model(price_in="0.15")
    async_to_sync(generation(person, free).complete)()
    with pytest.raises(LimitExceeded) as caught:
        async_to_sync(generation(person, paid).complete)()
    assert caught.value.code == "model_not_allowed"

    Plan.objects.filter(pk=plan.pk).update(free_models_only=False, max_output_tokens=50)  # an upgrade
    worker = generation(person, paid, params={"max_tokens": 5000})
    async_to_sync(worker.complete)()
    assert worker.status == "complete" and upstream.requests[-1]["body"]["max_tokens"] == 50
    assert worker.admission.reserved_tokens == worker.admission.prompt_tokens + 50

    Plan.objects.filter(pk=plan.pk).update(max_concurrent_streams=None)  # now it limits nothing
    worker = generation(person, paid)
    async_to_sync(worker.complete)()
    assert worker.admission.reservation_id is None and not Reservation.objects.exists()
    assert UsageRecord.objects.filter(user=person).count() == 3
