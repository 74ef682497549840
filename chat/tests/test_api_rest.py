"""The REST API under /api/v1: exchanges stored in sessions, sessions (own only), models, stats,
session login with CSRF, and the schema and docs pages."""

from __future__ import annotations

import html
import json
from datetime import timedelta
from decimal import Decimal

import httpx
import jsonschema
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import AsyncClient
from django.utils import timezone

from billing import rollups
from billing.models import Plan, UpstreamAttempt, UsageRecord
from billing.subscriptions import start_subscription
from chat.models import Conversation, Message
from chat.tests.api_fixtures import KeyClient, api_client, catalogue, issued, sse_events, streamed_body  # noqa: F401
from chat.tests.fake_upstream import REPLY_WORDS

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "".join(REPLY_WORDS)


async def test_it_stores_an_exchange_in_a_new_session(api_client, catalogue, user, issued):
    response = await api_client.post(
        "/api/v1/chat/completions", {"message": "Say hello", "model": "test/fake-model", "temperature": 0.5}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["message"]["content"] == REPLY and body["message"]["status"] == "complete"
    assert body["message"]["usage"] == {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    conversation = await Conversation.objects.aget(pk=body["session_id"])
    assert conversation.user_id == user.pk and conversation.title == "Say hello"
    roles = [(m.role, m.content) async for m in conversation.messages.all()]
    assert roles == [("user", "Say hello"), ("assistant", REPLY)]
    record = await UsageRecord.objects.aget()
    reply = await conversation.messages.aget(role="assistant")
    assert (record.request_id, record.api_key_id) == (reply.usage_id, issued[0].pk)


async def test_it_continues_a_session_with_its_history(api_client, catalogue, upstream):
    first = (await api_client.post("/api/v1/chat/completions", {"message": "One", "model": "test/fake-model"})).json()
    second = await api_client.post(
        "/api/v1/chat/completions", {"message": "Two", "model": "test/fake-model", "session_id": first["session_id"]}
    )
    assert second.json()["session_id"] == first["session_id"]
    sent = upstream.requests[-1]["body"]["messages"]
    assert sent == [
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "Two"},
    ]


async def test_it_does_not_continue_someone_elses_session(api_client, catalogue, other_user):
    theirs = await Conversation.objects.acreate(user=other_user)
    response = await api_client.post("/api/v1/chat/completions", {"message": "hi", "session_id": theirs.pk})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert await Message.objects.filter(conversation=theirs).acount() == 0


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({}, 400, "message"),
        ({"message": "   "}, 400, "message"),
        ({"message": 5}, 400, "message"),
        ({"message": "hi", "session_id": "1"}, 400, "session_id"),
        ({"message": "hi", "model": "nope"}, 404, "model"),
        ({"message": "hi", "temperature": "warm"}, 400, "temperature"),
    ],
)
async def test_it_refuses_a_bad_exchange(api_client, catalogue, body, status, param):
    response = await api_client.post("/api/v1/chat/completions", body)
    assert response.status_code == status
    assert response.json()["error"]["param"] == param
    assert await Message.objects.acount() == 0


async def test_it_streams_an_exchange_as_json_events(api_client, catalogue):
    response = await api_client.post("/api/v1/chat/stream", {"message": "Say hello", "model": "test/fake-model"})
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = sse_events(await streamed_body(response))
    assert events[0]["type"] == "start" and events[-1] == "[DONE]"
    assert "".join(e["content"] for e in events if isinstance(e, dict) and e["type"] == "delta") == REPLY
    end = events[-2]
    assert end["type"] == "end" and end["message"]["content"] == REPLY and end["message"]["status"] == "complete"
    stored = await Message.objects.aget(pk=events[0]["message_id"])
    assert stored.content == REPLY


async def test_a_broken_stream_ends_with_the_failed_reply(api_client, catalogue):
    response = await api_client.post("/api/v1/chat/stream", {"message": "hi", "model": "test/error-after-2"})
    end = sse_events(await streamed_body(response))[-2]
    assert end["message"]["status"] == "failed"
    # The upstream's own error text is kept for the operators, not passed on to the client.
    assert end["message"]["error"] == "the model's provider reported an error"
    assert "mid-stream" in (await UpstreamAttempt.objects.aget()).error
    assert end["message"]["content"] == "Hello from"


async def test_a_stream_failing_before_its_first_byte_gets_an_error_status(api_client, catalogue):
    response = await api_client.post("/api/v1/chat/stream", {"message": "hi", "model": "test/fail-500"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


async def test_it_lists_only_the_callers_sessions_a_page_at_a_time(api_client, user, other_user, issued):
    for index in range(5):
        await Conversation.objects.acreate(user=user, title=f"mine {index}")
    await Conversation.objects.acreate(user=other_user, title="theirs")
    first = (await api_client.get("/api/v1/sessions?per_page=2")).json()
    assert (first["total"], first["page"], first["has_more"]) == (5, 1, True)
    assert [s["title"] for s in first["data"]] == ["mine 4", "mine 3"]
    last = (await api_client.get("/api/v1/sessions?per_page=2&page=3")).json()
    assert [s["title"] for s in last["data"]] == ["mine 0"] and last["has_more"] is False
    bad = await api_client.get("/api/v1/sessions?per_page=1000")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "per_page"


async def test_it_shows_renames_and_deletes_an_own_session(api_client, user):
    conversation = await Conversation.objects.acreate(user=user, title="Old")
    await Message.objects.acreate(conversation=conversation, role="user", content="hello")
    shown = (await api_client.get(f"/api/v1/sessions/{conversation.pk}")).json()
    assert shown["title"] == "Old" and [m["content"] for m in shown["messages"]] == ["hello"]
    renamed = await api_client.request("PATCH", f"/api/v1/sessions/{conversation.pk}", {"title": "  New  "})
    assert renamed.status_code == 200 and renamed.json()["title"] == "New"
    empty = await api_client.request("PATCH", f"/api/v1/sessions/{conversation.pk}", {"title": ""})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "title"
    deleted = await api_client.request("DELETE", f"/api/v1/sessions/{conversation.pk}")
    assert deleted.status_code == 204
    assert not await Conversation.objects.filter(pk=conversation.pk).aexists()


TITLES = ["New", "  New  ", "", "   ", "a\x00b", "\x00", "x" * 200, "x" * 201]


async def test_a_session_title_is_refused_exactly_when_the_schema_refuses_it(api_client, user):
    """Both title fields (new session, rename) against their documented constraints: Schemathesis found
    a NUL title the schema allowed and the server refused."""
    schema = (await api_client.get("/api/openapi.json")).json()
    created = schema["components"]["schemas"]["NewSession"]["properties"]["title"]
    renamed = schema["paths"]["/api/v1/sessions/{id}"]["patch"]["requestBody"]["content"]["application/json"]
    conversation = await Conversation.objects.acreate(user=user, title="Old")
    for field, send in (
        (created, lambda title: api_client.post("/api/v1/sessions", {"title": title})),
        (
            renamed["schema"]["properties"]["title"],
            lambda title: api_client.request("PATCH", f"/api/v1/sessions/{conversation.pk}", {"title": title}),
        ),
    ):
        valid = jsonschema.Draft4Validator({k: v for k, v in field.items() if k != "nullable"})
        for title in TITLES:
            response = await send(title)
            assert (response.status_code < 300) == valid.is_valid(title), (title, response.status_code)
            assert response.status_code in (200, 201, 400), response.status_code


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_it_hides_other_peoples_sessions(api_client, other_user, method):
    theirs = await Conversation.objects.acreate(user=other_user, title="Theirs")
    response = await api_client.request(method, f"/api/v1/sessions/{theirs.pk}", {"title": "Mine now"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert (await Conversation.objects.aget(pk=theirs.pk)).title == "Theirs"


async def test_it_lists_models(api_client, catalogue):
    body = (await api_client.get("/api/v1/models")).json()
    assert body["object"] == "list" and "test/fake-model" in {m["id"] for m in body["data"]}


async def test_it_sums_the_callers_usage_by_model_and_day(api_client, user, other_user, issued):
    now = timezone.now()

    rows = [
        (user, "a", 10, "0.10", now),
        (user, "a", 20, "0.20", now - timedelta(days=1)),
        (user, "b", 5, "1.00", now),
        (user, "a", 99, "9", now - timedelta(days=40)),
        (other_user, "a", 1000, "50", now),
    ]
    for owner, slug, tokens, cost, when in rows:
        record = await UsageRecord.objects.acreate(
            user=owner,
            model_slug=slug,
            prompt_tokens=tokens,
            completion_tokens=1,
            cost=Decimal(cost),
            status="complete",
        )
        await UsageRecord.objects.filter(pk=record.pk).aupdate(created_at=when)
    await sync_to_async(rollups.rebuild)()  # the rows are written here, not by metering: their rollups too
    body = (await api_client.get("/api/v1/stats?days=7")).json()
    assert body["totals"] == {
        "requests": 3,
        "prompt_tokens": 35,
        "completion_tokens": 3,
        "total_tokens": 38,
        "cost_usd": "1.30000000",
    }
    assert {row["model"]: row["requests"] for row in body["by_model"]} == {"a": 2, "b": 1}
    by_day = {row["day"]: row["total_tokens"] for row in body["by_day"]}
    assert by_day == {(now - timedelta(days=1)).date().isoformat(): 21, now.date().isoformat(): 17}
    assert (await api_client.get("/api/v1/stats?days=0")).status_code == 400


async def test_session_login_works_for_reads(user, catalogue):
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    response = await client.get("/api/v1/models")
    assert response.status_code == 200
    assert (await AsyncClient().get("/api/v1/models")).status_code == 401


async def test_session_writes_must_pass_csrf(user, catalogue):
    client = AsyncClient(enforce_csrf_checks=True)
    await sync_to_async(client.force_login)(user)
    body = '{"message": "hi", "model": "test/fake-model"}'
    refused = await client.post("/api/v1/chat/completions", body, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert await Message.objects.acount() == 0
    await client.get("/api/docs")  # any page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = await client.post(
        "/api/v1/chat/completions", body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 200, accepted.content


async def test_a_bearer_key_needs_no_csrf_token(issued, catalogue):
    client = AsyncClient(enforce_csrf_checks=True)
    response = await client.post(
        "/api/v1/chat/completions",
        '{"message": "hi", "model": "test/fake-model"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {issued[1]}"},
    )
    assert response.status_code == 200


async def test_a_session_cannot_use_the_openai_api(user, catalogue):
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    response = await client.get("/v1/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


async def test_it_serves_the_openapi_schema_and_docs(catalogue):
    client = AsyncClient()
    schema = (await client.get("/api/openapi.json")).json()
    assert schema["openapi"].startswith("3.")
    assert schema["servers"] == [{"url": "http://testserver"}]
    assert {
        "/v1/chat/completions",
        "/v1/models",
        "/api/v1/chat/completions",
        "/api/v1/chat/stream",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/api/v1/models",
        "/api/v1/stats",
    } <= set(schema["paths"])
    docs = (await client.get("/api/docs")).content.decode()
    assert "redoc-2.5.1.standalone.js" in docs and 'spec-url="/api/openapi.json"' in docs
    guide = html.unescape((await client.get("/api/guide")).content.decode())
    assert 'base_url="http://testserver/v1"' in guide and 'baseURL: "http://testserver/v1"' in guide


@pytest.mark.parametrize("path", ["/api/v1/chat/completions", "/api/v1/chat/stream"])
async def test_a_request_refused_by_the_plan_stores_nothing(api_client, catalogue, user, path):
    plan = await Plan.objects.acreate(slug="one-rpm", name="One a minute", requests_per_minute=1, is_public=False)
    await sync_to_async(start_subscription)(user, plan)
    first = await api_client.post(path, {"message": "one", "model": "test/fake-model"})
    assert first.status_code == 200
    session_id = (await Conversation.objects.aget()).pk
    for body in ({"message": "two"}, {"message": "three", "session_id": session_id}):
        refused = await api_client.post(path, {**body, "model": "test/fake-model"})
        assert refused.status_code == 429 and refused["Retry-After"]
        assert "Rate limit" in refused.json()["error"]["message"]
    assert await Conversation.objects.acount() == 1
    assert [m.content async for m in Message.objects.filter(role="user")] == ["one"]


async def test_a_free_plan_gets_403_for_a_paid_model(catalogue, user, issued):
    await sync_to_async(start_subscription)(user, await Plan.objects.aget(slug="free"))
    response = await KeyClient(issued[1]).post(
        "/v1/chat/completions", {"model": "test/fake-model", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a server process needs a shared PostgreSQL database")
def test_deleting_a_session_mid_stream_ends_the_stream_with_one_usage_row_and_no_reservation(catalogue, user, servers):
    from accounts.api_keys import issue_key
    from billing.models import Reservation

    [url] = servers(1)
    headers = {"Authorization": f"Bearer {issue_key(user, 'pro key')[1]}"}  # Pro: the request is reserved
    body = {"message": "Tell me a story", "model": "test/slow"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        with client.stream("POST", "/api/v1/chat/stream", json=body) as response:
            lines = response.iter_lines()
            head = [next(lines) for _ in range(6)]  # the start event and a delta
            session_id = json.loads(head[0].removeprefix("data: "))["session_id"]
            assert Reservation.objects.filter(user=user).count() == 1
            assert client.delete(f"/api/v1/sessions/{session_id}").status_code == 204
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]  # the stream ends
    end = events[-1]
    assert end["type"] == "end" and end["message"]["status"] == "complete"
    records = list(UsageRecord.objects.filter(user=user))
    assert len(records) == 1 and records[0].status == UsageRecord.Status.COMPLETE
    assert end["message"]["usage"]["completion_tokens"] == records[0].completion_tokens > 0
    assert not Reservation.objects.filter(user=user).exists()
    assert not Conversation.objects.filter(pk=session_id).exists()
