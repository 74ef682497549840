"""API keys: their format and checksum, hashing, the key pages, revocation, the command and admin."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import api_keys
from accounts.models import ApiKey, User
from aihub.testing import logged_in_client
from billing import rollups
from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.models import AIModel, Provider

pytestmark = pytest.mark.django_db

KEY_PATTERN = re.compile(r"ahk_[0-9A-Za-z]{38}")


@pytest.fixture
def model(upstream):
    return AIModel.objects.create(
        slug="test/priced",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="priced",
        name="Priced",
        input_price_per_m=Decimal("1"),
        output_price_per_m=Decimal("2"),
    )


def record_usage(api_key, prompt: int, completion: int, cost: str, **extra):
    row = UsageRecord.objects.create(
        user=api_key.user,
        api_key=api_key,
        model_slug="test/priced",
        provider="x",
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=Decimal(cost),
        status=UsageRecord.Status.COMPLETE,
        **extra,
    )
    rollups.add(row)  # written here, not by metering: its rollup too
    return row


def test_it_generates_recognisable_keys_with_a_checksum():
    keys = {api_keys.generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert KEY_PATTERN.fullmatch(key)
        assert api_keys.is_well_formed(key)


def test_it_rejects_any_single_character_typo_by_its_checksum():
    key = api_keys.generate_key()
    for position in range(len(api_keys.KEY_PREFIX), len(key)):
        replacement = "a" if key[position] != "a" else "b"
        assert not api_keys.is_well_formed(key[:position] + replacement + key[position + 1 :])
    assert not api_keys.is_well_formed(key[:-1])
    assert not api_keys.is_well_formed("sk_" + key[3:])
    assert not api_keys.is_well_formed(key[:-2] + "!!")


def test_it_stores_only_the_hash_and_a_short_prefix(user):
    api_key, raw = api_keys.issue_key(user, "laptop")
    api_key.refresh_from_db()
    assert api_key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(api_key.prefix) and len(api_key.prefix) == 12
    assert raw not in {str(value) for value in ApiKey.objects.values().get(pk=api_key.pk).values()}


def test_a_key_with_a_bad_checksum_is_refused_without_any_query(client, user):
    _, raw = api_keys.issue_key(user, "real")
    forged = raw[:-6] + ("000000" if raw[-6:] != "000000" else "111111")
    with CaptureQueriesContext(connection) as valid_key_queries:  # control: a good key does query
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    assert len(valid_key_queries) > 0
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/v1/models", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert len(queries) == 0


def test_it_issues_a_key_on_the_page_and_shows_it_once(logged_in, user, model):
    response = logged_in.post(
        "/account/api-keys/", {"name": "CI", "allowed_models": [model.pk], "monthly_budget": "5.00"}
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    shown = KEY_PATTERN.findall(response.content.decode())
    assert len(set(shown)) == 1
    api_key = ApiKey.objects.get(user=user)
    assert (api_key.name, api_key.monthly_budget) == ("CI", Decimal("5.00"))
    assert list(api_key.allowed_models.all()) == [model]
    assert api_key.hashed_key == api_keys.hash_key(shown[0])
    assert 'data-copy-target="#new-key"' in response.content.decode()
    again = logged_in.get("/account/api-keys/").content.decode()
    assert shown[0] not in again and api_key.prefix in again


def test_it_sets_an_expiry_at_the_start_of_the_chosen_day(logged_in, user):
    day = timezone.now().date() + timedelta(days=10)
    logged_in.post("/account/api-keys/", {"name": "temp", "expires_on": day.isoformat()})
    expires_at = ApiKey.objects.get(user=user).expires_at
    assert expires_at.date() == day and (expires_at.hour, expires_at.minute) == (0, 0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "expires_on": "2001-01-01"}, "expires_on"),
        ({"name": "x", "monthly_budget": "-1"}, "monthly_budget"),
        ({"name": "x", "allowed_models": ["999999"]}, "allowed_models"),
    ],
)
def test_it_shows_what_is_wrong_with_a_new_key(logged_in, user, data, field):
    response = logged_in.post("/account/api-keys/", data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert "form-error" in response.content.decode()
    assert not ApiKey.objects.filter(user=user).exists()


def test_it_keeps_to_the_plans_number_of_keys(logged_in, user):
    start_subscription(user, Plan.objects.get(slug="free"))  # one active key
    logged_in.post("/account/api-keys/", {"name": "first"})
    response = logged_in.post("/account/api-keys/", {"name": "second"})
    assert "allows 1 active API key" in response.content.decode()
    assert ApiKey.objects.filter(user=user).count() == 1


def lock_waiters() -> int:
    """PostgreSQL backends of this database waiting for a row lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a transaction would see its first snapshot again
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks between connections: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_keys_asked_for_at_once_never_pass_the_plans_number(free_user):
    """Free allows one key. Two pages ask at the same moment (two threads, two connections): both are held
    at the person's row until it is free, then take turns: one key, one refusal. (Counted without the lock,
    both would count none and both create one.)"""
    clients = [logged_in_client(free_user) for _ in range(2)]
    pages = []

    def ask(client, name):
        try:
            pages.append(client.post("/account/api-keys/", {"name": name}).content.decode())
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(client, f"race {n}")) for n, client in enumerate(clients)]
    with transaction.atomic():
        User.objects.select_for_update().get(pk=free_user.pk)  # both requests arrive while it is held
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while lock_waiters() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock_waiters() == 2, "both requests wait for the person's row"
    for thread in threads:
        thread.join(timeout=30)
    assert ApiKey.objects.filter(user=free_user).count() == 1
    assert sum("allows 1 active API key" in page for page in pages) == 1
    assert sum(bool(KEY_PATTERN.search(page)) for page in pages) == 1


def test_the_list_shows_this_periods_usage_per_key_in_one_query(logged_in, user):
    first, _ = api_keys.issue_key(user, "first")
    second, _ = api_keys.issue_key(user, "second")
    record_usage(first, 100, 50, "0.25")
    record_usage(first, 10, 5, "0.05")
    old = record_usage(second, 1000, 1000, "9")
    UsageRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    rollups.rebuild()  # the row moved in time: its rollups too
    with CaptureQueriesContext(connection) as two_keys:
        response = logged_in.get("/account/api-keys/")
    keys = {k.name: k for k in response.context["keys"]}
    assert (keys["first"].period_tokens, keys["first"].period_cost) == (165, Decimal("0.30"))
    assert (keys["second"].period_tokens, keys["second"].period_cost) == (0, Decimal("0"))
    for index in range(10):
        record_usage(api_keys.issue_key(user, f"more {index}")[0], 1, 1, "0.01")
    with CaptureQueriesContext(connection) as twelve_keys:
        response = logged_in.get("/account/api-keys/")
    assert len(response.context["keys"]) == 12
    assert len(twelve_keys) == len(two_keys)


def test_it_revokes_a_key(logged_in, user):
    api_key, _ = api_keys.issue_key(user, "old")
    response = logged_in.post(f"/account/api-keys/{api_key.pk}/revoke/", follow=True)
    assert "is revoked" in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.status == "revoked"


def test_it_does_not_let_anyone_touch_anothers_key(logged_in, other_user):
    theirs, _ = api_keys.issue_key(other_user, "theirs")
    assert logged_in.post(f"/account/api-keys/{theirs.pk}/revoke/").status_code == 404
    assert logged_in.get(f"/account/api-keys/{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert "theirs" not in logged_in.get("/account/api-keys/").content.decode()


def test_the_detail_page_shows_the_keys_usage_by_model_and_day(logged_in, user):
    api_key, _ = api_keys.issue_key(user, "detail")
    record_usage(api_key, 100, 50, "0.25")
    record_usage(api_key, 10, 5, "0.05")
    other, _ = api_keys.issue_key(user, "other")
    record_usage(other, 7, 7, "1")
    response = logged_in.get(f"/account/api-keys/{api_key.pk}/")
    assert response.context["usage"]["tokens"] == 165
    assert [row["requests"] for row in response.context["by_model"]] == [2]
    assert [row["tokens"] for row in response.context["by_day"]] == [165]
    assert len(response.context["page"]) == 2


def test_key_pages_need_a_login(client):
    response = client.get("/account/api-keys/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_command_prints_the_key_alone_on_its_last_line(user):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--email", user.email.upper(), "--name", "script", stdout=out, stderr=err)
    raw = out.getvalue().strip().splitlines()[-1]
    assert KEY_PATTERN.fullmatch(raw)
    assert ApiKey.objects.get(hashed_key=api_keys.hash_key(raw)).name == "script"


def test_the_command_refuses_an_unknown_email(db):
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_key", "--email", "nobody@example.com")


@pytest.fixture
def admin_client_(client, django_user_model):
    admin = django_user_model.objects.create_superuser("admin@example.com", "admin pass 123")
    client.force_login(admin)
    return client


def test_admin_lists_keys_with_usage_and_never_the_secret(admin_client_, user):
    api_key, raw = api_keys.issue_key(user, "admin view")
    record_usage(api_key, 100, 50, "0.25")
    listing = admin_client_.get("/admin/accounts/apikey/")
    assert listing.status_code == 200
    change = admin_client_.get(f"/admin/accounts/apikey/{api_key.pk}/change/")
    page = listing.content.decode() + change.content.decode()
    assert raw not in page and api_key.hashed_key not in page
    assert "150 tokens" in change.content.decode()
    usage_link = f"/admin/billing/usagerecord/?api_key__id__exact={api_key.pk}"
    assert usage_link.replace("&", "&amp;") in change.content.decode()
    assert admin_client_.get(usage_link).status_code == 200


def test_admin_revokes_keys_with_an_action(admin_client_, user):
    api_key, _ = api_keys.issue_key(user, "to revoke")
    response = admin_client_.post(
        "/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [api_key.pk]}, follow=True
    )
    assert "1 key(s) revoked" in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


@pytest.fixture
def shared_cache(settings):
    """Lookups are cached only when the cache is shared between processes (Redis). Here the test's own
    cache stands in for it: one process, so it is shared with everything the test does."""
    settings.REDIS_URL = settings.REDIS_URL or "redis://stand-in"
    api_keys._cached.clear()
    yield
    api_keys._cached.clear()


def test_a_cached_key_needs_no_query_until_it_is_revoked(user, shared_cache):
    api_key, raw = api_keys.issue_key(user, "cached")
    assert async_to_sync(api_keys.authenticate)(raw).pk == api_key.pk
    with CaptureQueriesContext(connection) as cached:
        assert async_to_sync(api_keys.authenticate)(raw).pk == api_key.pk
    assert len(cached) == 0
    api_keys.revoke(ApiKey.objects.filter(pk=api_key.pk))
    with pytest.raises(api_keys.KeyRefused) as refused:
        async_to_sync(api_keys.authenticate)(raw)
    assert refused.value.code == "revoked_api_key"


def test_an_edit_in_admin_reaches_cached_keys(user, shared_cache, admin_client_, upstream):
    allowed = AIModel.objects.create(
        slug="test/allowed", provider=Provider.OPENAI_COMPAT, upstream_id="allowed", name="Allowed"
    )
    api_key, raw = api_keys.issue_key(user, "edited")
    assert async_to_sync(api_keys.authenticate)(raw).allowed_model_ids == frozenset()
    response = admin_client_.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        {
            "name": "edited",
            "allowed_models": [allowed.pk],
            "expires_at_0": "",
            "expires_at_1": "",
            "monthly_budget": "",
        },
    )
    assert response.status_code == 302
    assert async_to_sync(api_keys.authenticate)(raw).allowed_model_ids == frozenset([allowed.pk])


def test_without_a_shared_cache_every_lookup_reads_the_row(user, settings):
    settings.REDIS_URL = ""
    _, raw = api_keys.issue_key(user, "uncached")
    async_to_sync(api_keys.authenticate)(raw)
    with CaptureQueriesContext(connection) as queries:
        async_to_sync(api_keys.authenticate)(raw)
    assert len(queries) >= 1


def test_a_dump_of_every_table_holds_no_issued_key(logged_in, user, model, tmp_path):
    issued = [api_keys.issue_key(user, "direct", allowed_models=[model])[1]]
    page = logged_in.post("/account/api-keys/", {"name": "from the page", "monthly_budget": "3"})
    issued += KEY_PATTERN.findall(page.content.decode())
    out = io.StringIO()
    call_command("create_api_key", "--email", user.email, stdout=out, stderr=io.StringIO())
    issued.append(out.getvalue().strip().splitlines()[-1])
    assert len(set(issued)) == 3 and ApiKey.objects.count() == 3

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)  # every installed app, every model
    tables = connection.introspection.table_names()
    raw_rows = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            raw_rows.append(repr(cursor.fetchall()))
    everything = dump.getvalue() + "\n".join(raw_rows)
    assert "ahk_" in everything and len(tables) > 10  # the dump did read the keys' rows (their prefixes)
    for raw in issued:
        secret = raw[len(api_keys.KEY_PREFIX) :]
        assert raw not in everything
        assert secret[8:] not in everything  # nothing beyond the 8 characters of the shown prefix


def test_a_use_is_recorded_at_most_once_a_minute(user):
    api_key, _ = api_keys.issue_key(user, "busy")
    api_key.mark_used()
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    api_key.mark_used()
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=first - timedelta(minutes=2))
    api_key.last_used_at = first - timedelta(minutes=2)  # a minute has passed, as this copy sees it too
    api_key.mark_used()
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first


def test_a_key_marked_within_the_minute_costs_no_query(user, django_assert_num_queries):
    api_key, _ = api_keys.issue_key(user, "busy")
    api_key.mark_used()
    with django_assert_num_queries(0):
        api_key.mark_used()
    stale_copy = ApiKey.objects.get(pk=api_key.pk)
    stale_copy.last_used_at -= timedelta(minutes=2)
    with django_assert_num_queries(1):  # another copy still asks the row, which is fresh: not rewritten
        stale_copy.mark_used()
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == api_key.last_used_at
