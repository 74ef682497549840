"""The account page: plan and this period's usage, summed from the usage records."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import rollups
from billing.models import Plan, UsageRecord
from billing.subscriptions import current_subscription, start_subscription

pytestmark = pytest.mark.django_db


def record(user, model_slug: str, prompt: int, completion: int, cost: str, created_at=None) -> UsageRecord:
    row = UsageRecord.objects.create(
        user=user,
        model_slug=model_slug,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=Decimal(cost),
        latency_ms=100,
        status=UsageRecord.Status.COMPLETE,
    )
    if created_at is not None:  # the field is set on create: moved after
        UsageRecord.objects.filter(pk=row.pk).update(created_at=created_at)
        row.refresh_from_db()
    rollups.add(row)  # written here, not by metering: its rollup too, at the row's time
    return row


@pytest.fixture
def usage(user, other_user):
    record(user, "openai/gpt-4o-mini", 1000, 500, "0.00045")
    record(user, "openai/gpt-4o-mini", 2000, 250, "0.00045")
    record(user, "local/smollm2-135m-instruct", 300, 40, "0")
    last_period = current_subscription(user).current_period_start - timedelta(days=1)
    record(user, "openai/gpt-4o-mini", 99_000, 99_000, "9", created_at=last_period)  # not counted
    record(other_user, "openai/gpt-4o-mini", 77_000, 77_000, "7")  # someone else's


def test_it_shows_the_plan(logged_in, user):
    start_subscription(user, Plan.objects.get(slug="developer"))
    html = logged_in.get("/account/").content.decode()
    assert '<span id="plan-name">Developer</span>' in html


def test_it_sums_this_periods_usage(logged_in, usage):
    html = logged_in.get("/account/").content.decode()
    assert '<dd id="usage-requests">3</dd>' in html
    assert '<dd id="usage-tokens">4,090</dd>' in html
    assert "3,300 in · 790 out" in html
    assert '<dd id="usage-cost">$0.0009</dd>' in html


def test_it_breaks_usage_down_by_model(logged_in, usage):
    html = logged_in.get("/account/").content.decode()
    assert "<tr><td>openai/gpt-4o-mini</td><td>2</td><td>3,000</td><td>750</td><td>$0.0009</td></tr>" in html
    assert "<tr><td>local/smollm2-135m-instruct</td><td>1</td><td>300</td><td>40</td><td>$0</td></tr>" in html


def test_it_says_when_nothing_was_used(logged_in):
    assert "No requests yet this period." in logged_in.get("/account/").content.decode()


@pytest.fixture
def compat_model(upstream):
    from chat.models import AIModel, Provider

    return AIModel.objects.create(slug="fake/chat", provider=Provider.OPENAI_COMPAT, upstream_id="m", name="Fake chat")


def test_it_saves_the_default_model_for_new_chats(logged_in, user, compat_model):
    assert 'name="default_model"' in logged_in.get("/account/").content.decode()
    response = logged_in.post("/account/chat-preferences/", {"default_model": compat_model.pk})
    assert response.status_code == 302 and response["Location"] == "/account/"
    user.refresh_from_db()
    assert user.default_model == compat_model
    logged_in.post("/account/chat-preferences/", {"default_model": ""})
    user.refresh_from_db()
    assert user.default_model is None


def test_it_refuses_a_default_model_outside_the_catalogue(logged_in, user, compat_model):
    compat_model.is_active = False
    compat_model.save()
    response = logged_in.post("/account/chat-preferences/", {"default_model": compat_model.pk})
    assert response.status_code == 422
    assert "Select a valid choice" in response.content.decode()
    user.refresh_from_db()
    assert user.default_model is None


def test_it_saves_custom_instructions(logged_in, user):
    response = logged_in.post("/account/chat-preferences/", {"default_model": "", "custom_instructions": "Be brief."})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.custom_instructions == "Be brief."
    assert "Be brief." in logged_in.get("/account/").content.decode()
    too_long = logged_in.post("/account/chat-preferences/", {"default_model": "", "custom_instructions": "x" * 8001})
    assert too_long.status_code == 422


def test_the_theme_button_cycles_auto_dark_light_and_goes_back(logged_in, user):
    assert "data-theme" not in logged_in.get("/chat/").content.decode()[:200]  # auto: as the device
    response = logged_in.post("/account/theme/", {"next": "/usage/"})
    assert response.status_code == 302 and response["Location"] == "/usage/"
    user.refresh_from_db()
    assert user.theme == "dark"
    assert '<html lang="en" data-theme="dark">' in logged_in.get("/chat/").content.decode()
    logged_in.post("/account/theme/", {"next": "/chat/"})
    user.refresh_from_db()
    assert user.theme == "light"
    response = logged_in.post("/account/theme/", {"next": "https://evil.example/"})
    assert response["Location"] == "/account/"  # never off the site
    user.refresh_from_db()
    assert user.theme == "system"
