"""Requests served through the gateway as billing sees them: one day's requests in one rollup row, and
the activity log listing chat-page and API requests with the dashboard's totals."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from accounts.api_keys import issue_key
from aihub.testing import logged_in_client
from billing.models import UsageDaily, UsageRecord

from .conftest import generation

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_requests_of_one_day_add_up_in_one_rollup_row(user, make_model):
    model = make_model()
    for _ in range(4):
        async_to_sync(generation(user, model).complete)()
    assert UsageDaily.objects.count() == 1
    assert UsageDaily.objects.totals()["requests"] == 4
    assert UsageDaily.objects.totals() == UsageRecord.objects.totals()


@pytest.mark.django_db(transaction=True)  # requests served in other threads
async def test_the_activity_log_lists_chat_and_api_requests_with_the_dashboards_totals(user, make_model):
    from django.test import AsyncClient

    model = await sync_to_async(make_model)()
    api_key, raw_key = await sync_to_async(issue_key)(user, "nightly job")
    await generation(user, model).complete()  # what the chat page runs
    response = await AsyncClient().post(
        "/v1/chat/completions",
        {"model": model.slug, "messages": [{"role": "user", "content": "Say hello"}]},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    assert response.status_code == 200

    def pages():
        client = logged_in_client(user)
        return client.get("/usage/?range=7d"), client.get("/usage/activity/?range=7d")

    dashboard, activity = await sync_to_async(pages)()
    html = activity.content.decode()
    rows = activity.context["page"].object_list
    assert [(r.api_key_id, r.model_slug) for r in rows] == [(api_key.pk, model.slug), (None, model.slug)]
    assert "Chat page" in html and "API · nightly job" in html
    totals = dashboard.context["totals"]
    assert activity.context["log_totals"] == totals and totals["requests"] == 2 and totals["cost"] > 0
