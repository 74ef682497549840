"""Daily usage rollups: written with each usage row and only then (a settlement that is a no-op adds
nothing), equal to the rows' sums under concurrent requests of every outcome, and read in place of the
rows by the same names over any range (whole days from the rollups, the ends of a range from the rows)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.api_keys import issue_key
from aihub.testing import logged_in_client
from billing import metering, rollups
from billing.models import FIGURES, Reservation, UsageDaily, UsageRecord

from .conftest import usage_row

pytestmark = pytest.mark.django_db

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="several processes need a shared PostgreSQL database"
)


def rollup_totals(**filters) -> dict:
    return UsageDaily.objects.filter(**filters).totals()


def row_totals(**filters) -> dict:
    return UsageRecord.objects.filter(**filters).totals()


def settle(owner, model, request_id: uuid.UUID, *, api_key=None, status="complete") -> UsageRecord:
    return metering.record_usage(
        request_id=request_id,
        user=owner,
        model=model,
        attempts=[],
        status=status,
        prompt_tokens=100,
        completion_tokens=40,
        ttft_ms=10,
        latency_ms=50,
        api_key=api_key,
    )


def test_settling_writes_the_row_and_its_rollup_and_settling_again_adds_nothing(user, make_model):
    model = make_model(price_in="1", price_out="2")
    api_key, _ = issue_key(user, "job")
    first = uuid.uuid4()
    settle(user, model, first)
    settle(user, model, first)  # the same request settled twice (a retry, a sweeper): a no-op
    settle(user, model, uuid.uuid4(), api_key=api_key, status="failed")
    assert UsageRecord.objects.count() == 2
    rolled = list(UsageDaily.objects.values("api_key_id", "model_slug", "request_count", "prompt_tokens"))
    assert sorted(rolled, key=str) == sorted(
        [
            {"api_key_id": None, "model_slug": model.slug, "request_count": 1, "prompt_tokens": 100},
            {"api_key_id": api_key.pk, "model_slug": model.slug, "request_count": 1, "prompt_tokens": 100},
        ],
        key=str,
    )
    assert rollup_totals() == row_totals()
    assert rollups.differences() == []


def test_check_rollups_proves_them_equal_and_lists_a_difference_with_exit_1(user, make_model):
    settle(user, make_model(), uuid.uuid4())
    out = StringIO()
    call_command("check_rollups", stdout=out)
    assert "rollups equal the usage rows' sums" in out.getvalue()

    UsageDaily.objects.update(prompt_tokens=99)
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("check_rollups", stdout=out)
    assert exited.value.code == 1
    assert "'input_tokens': 99" in out.getvalue() and "'input_tokens': 100" in out.getvalue()
    assert "1 rollup(s) differ" in out.getvalue()

    with pytest.raises(SystemExit):
        call_command("check_rollups", "--rebuild", stdout=StringIO())
    call_command("check_rollups", stdout=StringIO())  # rebuilt: equal again (no exit)


def test_a_deleted_keys_rollups_join_the_keyless_ones_as_its_rows_do(user, make_model):
    model = make_model()
    api_key, _ = issue_key(user, "doomed")
    settle(user, model, uuid.uuid4(), api_key=api_key)
    settle(user, model, uuid.uuid4())
    api_key.delete()
    assert UsageDaily.objects.count() == 1 and UsageDaily.objects.get().request_count == 2
    assert rollups.differences() == []


@pytest.fixture
def history(user, other_user):
    """Rows over ten days at all hours, two models, with and without a key, and another person's rows."""
    api_key, _ = issue_key(user, "job")
    start = datetime(2026, 10, 1, tzinfo=UTC)
    for hour in range(0, 10 * 24, 5):
        usage_row(
            user,
            when=start + timedelta(hours=hour, minutes=7),
            model="a/model" if hour % 2 else "b/model",
            tokens=(hour + 1, 2),
            cost=f"0.0{hour % 9 + 1}",
            api_key=api_key if hour % 3 == 0 else None,
        )
        usage_row(other_user, when=start + timedelta(hours=hour), tokens=(1000, 1000), cost="1")
    return user, api_key, start


@pytest.mark.parametrize(
    "since_hours, until_hours",
    [
        (0, None),  # whole days, up to now
        (0, 48),  # whole days
        (13, None),  # starts late in a day: that day's rollup less its morning's rows
        (5, 100),  # starts early in a day, ends inside one
        (30, 40),  # inside one day
        (47.5, 72),
    ],
)
def test_figures_over_any_range_equal_the_rows_sums(history, since_hours, until_hours):
    person, api_key, start = history
    since = start + timedelta(hours=since_hours)
    until = start + timedelta(hours=until_hours) if until_hours is not None else None
    for filters in ({"user": person}, {"api_key": api_key}, {"user": person, "model_slug": "a/model"}):
        rows = UsageRecord.objects.filter(**filters).between(since, until)
        ledger = rollups.usage(**filters).between(since, until)
        assert ledger.totals() == rows.totals()
        assert ledger.totals("tokens", "cost") == rows.totals("tokens", "cost")
        for grouping in ("by_model", "by_day", "by_key", "by_month"):
            expected = list(getattr(rows, grouping)())
            found = list(getattr(ledger, grouping)())
            key = lambda row: str(sorted((k, v) for k, v in row.items() if k not in FIGURES))  # noqa: E731
            assert sorted(found, key=key) == sorted(expected, key=key), grouping


def test_a_cached_sum_of_rows_is_void_once_the_rows_are_rewritten(history):
    person, _, start = history
    since = start + timedelta(hours=20)  # late in a day long past: that day's rollup less the cached morning
    ledger = rollups.usage(user=person).between(since)
    assert [part.cache_key is not None for part in ledger.parts(cached_head=True)] == [False, True]
    assert ledger.totals() == UsageRecord.objects.filter(user=person).between(since).totals()
    UsageRecord.objects.filter(user=person, created_at__lt=since).update(created_at=since)  # moved into the range
    rollups.rebuild()
    assert ledger.totals() == UsageRecord.objects.filter(user=person).between(since).totals()


def test_a_sum_that_can_no_longer_change_is_read_once_per_process(history):
    person, _, start = history
    head = next(
        p
        for p in rollups.usage(user=person).between(start + timedelta(hours=20)).parts(cached_head=True)
        if p.cache_key
    )
    first = head.totals(("tokens", "cost"))
    cache.delete(head.cache_key)  # kept by the process, not in the shared cache (no round trip to it)
    with CaptureQueriesContext(connection) as queries:
        assert head.totals(("tokens", "cost")) == first
    assert len(queries) == 0


@pytest.mark.parametrize(
    "query, rows",
    [
        ("", {}),
        ("?provider__exact=openrouter", {"provider": "openrouter"}),
        ("?created_at__year=2026&created_at__month=10&created_at__day=3", {"created_at__date": date(2026, 10, 3)}),
        ("?created_at__year=2026&created_at__month=10", {"created_at__month": 10}),
        (
            "?created_at__gte=2026-10-02+00%3A00%3A00%2B00%3A00&created_at__lt=2026-10-05+00%3A00%3A00%2B00%3A00",
            {"created_at__gte": datetime(2026, 10, 2, tzinfo=UTC), "created_at__lt": datetime(2026, 10, 5, tzinfo=UTC)},
        ),
        ("?status__exact=complete&provider__exact=openrouter", {"status": "complete", "provider": "openrouter"}),
    ],
)
def test_the_usage_admins_totals_equal_the_filtered_rows(history, django_user_model, query, rows):
    staff = django_user_model.objects.create_superuser("ops@example.com", "correct horse battery")
    browser = logged_in_client(staff)
    totals = browser.get(f"/admin/billing/usagerecord/{query}").context["usage_totals"]
    assert totals["all"] == UsageRecord.objects.filter(**rows).totals("requests", "tokens", "cost")
    expected = UsageRecord.objects.filter(**rows).grouped("model_slug", names=("requests", "tokens", "cost"))
    assert sorted(totals["by_model"], key=str) == sorted(expected, key=str)


def test_ordered_figures_read_like_a_querysets(history):
    person, _, start = history
    ledger = rollups.usage(user=person).between(start, start + timedelta(days=3))
    rows = UsageRecord.objects.filter(user=person).between(start, start + timedelta(days=3))
    assert ledger.by_model().order_by("-tokens", "model_slug") == list(
        rows.by_model().order_by("-tokens", "model_slug")
    )
    assert ledger.by_day().order_by("-day") == list(rows.by_day().order_by("-day"))


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_of_every_outcome_leave_one_row_each_and_rollups_equal_to_the_rows(
    servers, make_plan, subscriber, make_model
):
    """30 requests at once over two server processes, through two keys, with quotas (admission reads the
    rollups while others settle): 12 complete, 9 fail upstream, 9 are stopped by their client mid-stream."""
    person = subscriber(make_plan(monthly_token_quota=10**9, monthly_credit_quota=Decimal(1000)))
    complete, failing, slow = make_model(), make_model("fail-500"), make_model("slow")
    keys = [issue_key(person, f"key {n}")[1] for n in range(2)]
    urls = servers(2, settings.REDIS_URL)
    body = {"messages": [{"role": "user", "content": "Say hello"}]}

    async def ask(client, n, model):
        return await client.post(
            f"{urls[n % 2]}/v1/chat/completions",
            headers={"Authorization": f"Bearer {keys[n % 2]}"},
            json={**body, "model": model.slug},
        )

    async def stop_midway(client, n):
        request = client.build_request(
            "POST",
            f"{urls[n % 2]}/v1/chat/completions",
            headers={"Authorization": f"Bearer {keys[n % 2]}"},
            json={**body, "model": slow.slug, "stream": True},
        )
        response = await client.send(request, stream=True)
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # the first piece of the reply, then the client goes away
        await response.aclose()
        return response

    async def all_at_once():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(ask(client, n, complete) for n in range(12)),
                *(ask(client, n, failing) for n in range(9)),
                *(stop_midway(client, n) for n in range(9)),
            )

    answers = async_to_sync(all_at_once)()
    assert sorted(r.status_code for r in answers[:12]) == [200] * 12
    assert all(r.status_code >= 500 for r in answers[12:21])

    rows = UsageRecord.objects.filter(user=person)
    for _ in range(100):  # stopped requests settle once their server sees the client gone
        if rows.count() == 30 and not Reservation.objects.exists():
            break
        async_to_sync(asyncio.sleep)(0.1)
    statuses = sorted(rows.values_list("status", flat=True))
    assert statuses == ["complete"] * 12 + ["failed"] * 9 + ["stopped"] * 9
    assert not Reservation.objects.exists()
    assert rollups.differences() == []
    assert rollup_totals(user=person) == row_totals(user=person)
    assert rollups.usage(user=person).between(datetime.now(UTC) - timedelta(days=1)).totals() == row_totals(user=person)
