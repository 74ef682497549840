"""The usage dashboard (/usage/), its CSV, the operator overview (/ops/) and the usage admin."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.api_keys import issue_key
from aihub.testing import logged_in_client
from billing.models import Plan, Subscription, UpstreamAttempt, UsageRecord

from .conftest import usage_row

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 11, 10, 12, tzinfo=UTC)


def record(owner, *, when=DAY, attempts=("ok",), **fields):
    """A usage row (see usage_row) with the upstream attempts that served it."""
    row = usage_row(owner, when=when, **fields)
    UpstreamAttempt.objects.bulk_create(
        UpstreamAttempt(usage=row, provider=row.provider, model_slug=row.model_slug, outcome=o) for o in attempts
    )
    return row


@pytest.fixture
def usage(user, other_user):
    key, _ = issue_key(user, "ci")
    record(user)
    record(user, when=DAY + timedelta(days=1), model="b/model", tokens=(100, 50), cost="0.5", api_key=key)
    record(user, when=DAY + timedelta(days=1), tokens=(1, 1), cost="0.001")
    record(user, when=DAY - timedelta(days=40))  # outside the range asked for
    record(other_user, model="a/model", tokens=(999, 999), cost="9")  # someone else's
    return key


def dashboard(client, query="start=2026-11-09&end=2026-11-12"):
    return client.get(f"/usage/?{query}")


def chart_data(response) -> dict:
    page = response.content.decode()
    start = page.index('<script id="usage-data" type="application/json">') + len(
        '<script id="usage-data" type="application/json">'
    )
    return json.loads(page[start : page.index("</script>", start)])


def test_the_dashboard_sums_the_callers_own_usage_per_day_model_and_key(logged_in, usage):
    response = dashboard(logged_in)
    data = chart_data(response)
    assert data["labels"] == ["2026-11-09", "2026-11-10", "2026-11-11", "2026-11-12"]
    assert data["tokens"] == [0, 15, 152, 0]
    assert data["cost"] == [0, 0.01, 0.501, 0]
    assert {m["label"]: m["tokens"] for m in data["models"]} == {"b/model": [0, 0, 150, 0], "a/model": [0, 15, 2, 0]}
    assert data["keys"]["labels"] == [f"ci ({usage.prefix}…)", "Chat page"]
    assert data["keys"]["tokens"] == [150, 17]
    totals = response.context["totals"]
    assert (totals["requests"], totals["tokens"], totals["cost"]) == (3, 167, Decimal("0.511"))
    assert b"chart-4.6.1.umd.min.js" in response.content and b'id="tokens-chart"' in response.content


def test_the_dashboard_aggregates_in_the_database(logged_in, usage, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):  # session, user, then one query per figure: not one per row
        dashboard(logged_in)


def test_the_dashboard_defaults_to_the_last_30_days_and_refuses_a_bad_range(logged_in, user):
    record(user, when=timezone.now())
    response = logged_in.get("/usage/")
    data = chart_data(response)
    assert len(data["labels"]) == 30 and data["labels"][-1] == timezone.now().date().isoformat()
    for day in (data["labels"][0], data["labels"][-1]):  # the chosen range is shown in the form, app format
        assert f'value="{date.fromisoformat(day):%-d %b %Y}"' in response.content.decode()
    bad = dashboard(logged_in, "start=2026-11-12&end=2026-11-01")
    assert bad.status_code == 400 and b"The start date must come before the end date." in bad.content
    assert dashboard(logged_in, "start=2024-01-01&end=2026-11-01").status_code == 400
    assert dashboard(logged_in, "start=yesterday").status_code == 400


def test_the_csv_export_has_one_row_per_day_model_and_key(logged_in, usage):
    lines = logged_in.get("/usage/export.csv?start=2026-11-09&end=2026-11-12").content.decode().splitlines()
    assert lines[0] == "date,model,provider,api_key,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd"
    assert lines[1:] == [
        "2026-11-10,a/model,openrouter,Chat page,1,10,5,15,0.01000000",
        "2026-11-11,a/model,openrouter,Chat page,1,1,1,2,0.00100000",
        f"2026-11-11,b/model,openrouter,ci ({usage.prefix}),1,100,50,150,0.50000000",
    ]
    assert logged_in.get("/usage/export.csv?start=2026-11-12&end=2026-11-01").status_code == 400


@pytest.fixture
def staff(django_user_model):
    operator = django_user_model.objects.create_user(
        "ops@example.com", "correct horse battery", is_staff=True, is_superuser=True
    )
    return logged_in_client(operator)


def test_the_operator_overview_is_for_staff_only(logged_in):
    assert logged_in.get("/ops/").status_code == 302  # to the admin login


def test_the_operator_overview_shows_requests_tokens_cost_and_error_rate_per_provider(staff, user):
    now = timezone.now()
    record(
        user, when=now - timedelta(hours=1), provider="gemini", tokens=(10, 10), cost="1", attempts=("http_500", "ok")
    )
    record(
        user,
        when=now - timedelta(hours=2),
        provider="gemini",
        status="failed",
        tokens=(0, 0),
        cost="0",
        attempts=("timeout",),
    )
    record(
        user,
        when=now - timedelta(days=3),
        provider="openrouter",
        tokens=(5, 5),
        cost="0.5",
        attempts=("ok", "cancelled"),
    )
    response = staff.get("/ops/")
    (_, day), (_, month) = response.context["windows"]
    assert [(r["provider"], r["requests"], r["failed"], r["tokens"], r["attempts"], r["errors"]) for r in day] == [
        ("gemini", 2, 1, 20, 3, 2)
    ]
    assert {r["provider"]: (r["requests"], r["attempts"], r["errors"]) for r in month} == {
        "gemini": (2, 3, 2),
        "openrouter": (1, 1, 0),
    }
    assert b"67%" in response.content  # gemini: 2 errors of 3 attempts


def test_the_usage_admin_is_read_only_with_totals_for_the_filtered_rows(staff, usage, user):
    response = staff.get("/admin/billing/usagerecord/?provider__exact=openrouter&created_at__year=2026")
    assert response.status_code == 200
    totals = response.context["usage_totals"]
    assert totals["all"]["requests"] == 5  # the four of the user and the other user's (all in 2026)
    assert {row["user__email"] for row in totals["by_user"]} == {"alice@example.com", "mallory@example.com"}
    assert b'id="usage-totals"' in response.content
    assert staff.get("/admin/billing/usagerecord/add/").status_code == 403
    for term in ("mallory", "mallory%40example", "b%2Fmod"):  # part of an email, an email, a model
        filtered = staff.get(f"/admin/billing/usagerecord/?q={term}").context["usage_totals"]["all"]
        assert (filtered["requests"], filtered["tokens"]) == ((1, 150) if term == "b%2Fmod" else (1, 1998))


def test_the_usage_admin_exports_the_selection_as_csv(staff, usage):
    ids = list(UsageRecord.objects.filter(model_slug="b/model").values_list("pk", flat=True))
    response = staff.post("/admin/billing/usagerecord/", {"action": "export_csv", "_selected_action": ids})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("created_at,user,api_key,model")
    assert len(lines) == 2 and ",b/model,openrouter,complete,100,50," in lines[1]


def test_an_operator_moves_users_to_another_plan_from_the_admin(staff, user, other_user):
    selected = Subscription.objects.filter(is_active=True, user__in=[user, other_user]).values_list("pk", flat=True)
    response = staff.post(
        "/admin/billing/subscription/", {"action": "move_to_developer", "_selected_action": list(selected)}, follow=True
    )
    assert b"2 user(s) moved to Developer." in response.content
    for person in (user, other_user):
        active = Subscription.objects.get(user=person, is_active=True)
        assert active.plan == Plan.objects.get(slug="developer")
    assert Subscription.objects.filter(user=user, is_active=False).exists()  # history kept
    assert staff.get("/admin/billing/subscription/add/").status_code == 403
