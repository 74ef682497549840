"""A reply's footer opens its route: every provider tried, with outcome, status, latency and the reason it
moved on; right after the reply, also the quota left."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async

from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401  (fixtures)
from chat.tests.test_conversation_totals import socket_exchange

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def falling_back(catalogue):  # noqa: F811
    """test/fail-500 falls back to test/fake-model."""
    failing = catalogue["fail-500"]
    failing.fallback = catalogue["fake-model"]
    failing.save()
    return failing


async def test_the_page_shows_each_attempt_of_a_reply_that_fell_back(api_client, falling_back, logged_in):
    body = (await api_client.post("/api/v1/chat/completions", {"message": "Hi", "model": falling_back.slug})).json()
    assert body["message"]["status"] == "complete"

    html = (await sync_to_async(logged_in.get)(f"/chat/{body['session_id']}/")).content.decode()

    start = html.index('<details class="meta-trail">')
    trail = html[start : html.index("</details>", start)]
    assert "2 attempts (fell back)" in trail
    rows = re.findall(r"<tr class=\"outcome-([^\"]+)\">(.*?)</tr>", trail, re.S)
    assert [outcome for outcome, _ in rows] == ["http_500", "ok"]
    cells = [re.findall(r"<td>(.*?)</td>", row, re.S) for _, row in rows]
    assert cells[0][:4] == ["OpenAI-compatible", "test/fail-500", "http_500", "500"]
    assert "fake failure 500" in cells[0][5]  # the reason it moved on
    assert cells[1][:4] == ["OpenAI-compatible", "test/fake-model", "ok", "—"]
    assert all(re.fullmatch(r"\d+ ms", c[4]) for c in cells)


async def test_right_after_a_reply_its_footer_shows_the_quota_left(catalogue, user):  # noqa: F811
    from chat.models import Conversation

    conversation = await Conversation.objects.acreate(user=user, title="Quota")
    frames = await socket_exchange(user, conversation.pk, "Hi", "test/fake-model")

    # The Pro plan: 25,000,000 tokens a month, 17 of them used by this reply.
    assert "Left on your Pro plan after this reply:\n    24,999,983 tokens" in "".join(frames)


def test_a_plan_without_quotas_has_nothing_left_to_count_and_reads_no_usage(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.models import Plan
    from billing.subscriptions import start_subscription
    from chat.figures import quota_left

    start_subscription(user, Plan.objects.get(slug="enterprise"))
    with CaptureQueriesContext(connection) as queries:
        left = quota_left(user)
    assert (left["plan"], left["tokens"], left["credit"]) == ("Enterprise", None, None)
    assert not [q["sql"] for q in queries.captured_queries if "billing_usage" in q["sql"]]
