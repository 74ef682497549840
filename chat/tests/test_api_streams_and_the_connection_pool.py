"""A request gives its database connection back to the process's pool while the upstream answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from aihub.testing import wait_for
from billing.models import UsageRecord
from chat.tests.api_fixtures import catalogue, issued  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the connection pool is PostgreSQL's")
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "json"])
def test_more_requests_in_flight_than_pooled_connections_all_complete(streamed, catalogue, issued, servers):  # noqa: F811
    # psycopg's pool keeps 4 connections at least; 8 replies of about 10 s each, and a thread waits 2 s at most
    [url] = servers(1, DATABASE_POOL_MAX_SIZE="4", DATABASE_POOL_TIMEOUT="2")
    body = {"model": "test/slow", "stream": streamed, "messages": [{"role": "user", "content": "Tell me a story"}]}

    def ask(_: int) -> tuple[int, bool]:
        headers = {"Authorization": f"Bearer {issued[1]}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            response = client.post("/v1/chat/completions", json=body)
        ended = (
            "data: [DONE]" in response.text if streamed else response.json()["choices"][0]["finish_reason"] == "stop"
        )
        return response.status_code, ended

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(ask, range(8)))
    assert outcomes == [(200, True)] * 8
    complete = UsageRecord.objects.filter(user=issued[0].user, status=UsageRecord.Status.COMPLETE)
    assert wait_for(lambda: complete.count() == 8, 5)  # a completion's row follows its response
