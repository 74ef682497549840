"""What browser apps and the seed's frontend rely on: CORS for the APIs (allowed origins by setting,
none by default), GET /api/v1/chat/stream for EventSource (session only from this site's own pages)
and POST /api/v1/sessions. The browser itself runs them in test_api_browser.py."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from billing.models import UsageRecord
from chat.models import AIModel, Conversation, Message, Provider
from chat.tests.api_fixtures import api_client, catalogue, issued, served, sse_events, streamed_body  # noqa: F401
from chat.tests.fake_upstream import REPLY_WORDS

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "".join(REPLY_WORDS)
APP = "http://app.example.test"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@pytest.fixture
def session_client(user):
    client = AsyncClient()
    client.force_login(user)
    return client


# Through the served application: /v1 has its own ASGI handler and middleware (chat/api/asgi.py).
PATHS = ("/v1/chat/completions", "/api/v1/sessions")


@pytest.mark.parametrize("path", PATHS)
async def test_a_preflight_from_an_allowed_origin_is_answered_with_the_cors_headers(settings, path):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    async with served() as client:
        response = await client.options(path, headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert {"authorization", "content-type"} <= set(response.headers["Access-Control-Allow-Headers"].split(", "))
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers  # the session never goes cross-origin


@pytest.mark.parametrize("path", PATHS)
async def test_no_origin_is_allowed_by_default(settings, path):
    assert settings.CORS_ALLOWED_ORIGINS == []
    async with served() as client:
        response = await client.options(path, headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_an_origin_not_in_the_setting_gets_no_cors_headers(settings, issued):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    evil = "http://evil.example.test"
    async with served() as client:
        preflight = await client.options("/v1/chat/completions", headers={**PREFLIGHT, "Origin": evil})
        answer = await client.get("/v1/models", headers={"Authorization": f"Bearer {issued[1]}", "Origin": evil})
    assert answer.status_code == 200
    assert (
        "Access-Control-Allow-Origin" not in preflight.headers and "Access-Control-Allow-Origin" not in answer.headers
    )


async def test_the_answer_to_an_allowed_origin_names_it_and_exposes_retry_after(settings, issued):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    async with served() as client:
        response = await client.get("/v1/models", headers={"Authorization": f"Bearer {issued[1]}", "Origin": APP})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


async def test_pages_outside_the_apis_get_no_cors_headers(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    async with served() as client:
        response = await client.get("/api/openapi.json", headers={"Origin": APP})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_eventsource_get_streams_an_exchange_with_the_reply_id_on_every_event(api_client, catalogue):
    response = await api_client.get("/api/v1/chat/stream", data={"prompt": "Say hello", "model": "test/fake-model"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    blocks = [block.split("\n") for block in (await streamed_body(response)).decode().strip().split("\n\n")]
    reply = await Message.objects.aget(role="assistant")
    assert all(lines[0] == f"id: {reply.pk}" for lines in blocks)
    events = sse_events("\n\n".join(lines[1] for lines in blocks).encode() + b"\n\n")
    assert events[0] == {"type": "start", "session_id": reply.conversation_id, "message_id": reply.pk}
    assert "".join(e["content"] for e in events if isinstance(e, dict) and e["type"] == "delta") == REPLY
    assert events[-2]["message"]["status"] == "complete" and events[-1] == "[DONE]"
    assert await UsageRecord.objects.acount() == 1


async def test_eventsource_get_continues_a_session(api_client, catalogue, upstream):
    first = (await api_client.post("/api/v1/chat/completions", {"message": "One", "model": "test/fake-model"})).json()
    query = {"prompt": "Two", "model": "test/fake-model", "session_id": str(first["session_id"])}
    await streamed_body(await api_client.get("/api/v1/chat/stream", data=query))
    assert [m["content"] for m in upstream.requests[-1]["body"]["messages"]] == ["One", REPLY, "Two"]


async def test_a_reconnecting_eventsource_is_told_to_stop_not_answered_again(api_client, catalogue, upstream):
    response = await api_client.client.get(
        "/api/v1/chat/stream",
        data={"prompt": "Say hello"},
        headers={**api_client.headers, "Last-Event-ID": "7"},
    )
    assert response.status_code == 204
    assert upstream.requests == [] and await Message.objects.acount() == 0


@pytest.mark.parametrize(
    ("query", "param"),
    [({}, "prompt"), ({"prompt": "  "}, "prompt"), ({"prompt": "hi", "session_id": "x"}, "session_id")],
)
async def test_eventsource_get_refuses_a_bad_query(api_client, catalogue, query, param):
    response = await api_client.get("/api/v1/chat/stream", data=query)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {"Origin": "http://testserver"}],
    ids=["same-origin", "typed-in", "own-origin"],
)
async def test_eventsource_get_takes_the_session_from_this_sites_own_pages(session_client, catalogue, headers):
    response = await session_client.get(
        "/api/v1/chat/stream", data={"prompt": "Say hello", "model": "test/fake-model"}, headers=headers
    )
    assert response.status_code == 200
    await streamed_body(response)
    assert await UsageRecord.objects.acount() == 1


@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "http://evil.example.test"}, {}],
    ids=["cross-site", "same-site", "other-origin", "unsaid"],
)
async def test_eventsource_get_refuses_the_session_from_anywhere_else(session_client, catalogue, upstream, headers):
    response = await session_client.get("/api/v1/chat/stream", data={"prompt": "Say hello"}, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "cross_site_session"
    assert upstream.requests == [] and await Message.objects.acount() == 0


async def test_an_api_key_streams_from_anywhere(api_client, catalogue):
    response = await api_client.client.get(
        "/api/v1/chat/stream",
        data={"prompt": "Say hello", "model": "test/fake-model"},
        headers={**api_client.headers, "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 200
    await streamed_body(response)


async def test_it_creates_an_empty_session_then_chats_in_it(api_client, catalogue, user):
    response = await api_client.post("/api/v1/sessions", {"title": "Planning", "model": "test/fake-model"})
    assert response.status_code == 201, response.content
    session = response.json()
    assert (session["title"], session["model"], session["messages"]) == ("Planning", "test/fake-model", [])
    conversation = await Conversation.objects.aget(pk=session["id"])
    assert conversation.user_id == user.pk
    detail = (await api_client.get(f"/api/v1/sessions/{session['id']}")).json()
    assert detail["id"] == session["id"] and detail["messages"] == []
    reply = await api_client.post("/api/v1/chat/completions", {"message": "Hi", "session_id": session["id"]})
    assert reply.json()["session_id"] == session["id"]


async def test_a_session_needs_no_body(api_client, catalogue):
    response = await api_client.client.post(
        "/api/v1/sessions", "", content_type="application/json", headers=api_client.headers
    )
    assert response.status_code == 201
    assert (response.json()["title"], response.json()["model"]) == ("New chat", None)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"title": ""}, 400, "title"),
        ({"title": "x" * 201}, 400, "title"),
        ({"model": 3}, 400, "model"),
        ({"model": "nope/none"}, 404, "model"),
    ],
)
async def test_it_refuses_a_bad_new_session(api_client, catalogue, body, status, param):
    response = await api_client.post("/api/v1/sessions", body)
    assert response.status_code == status
    assert response.json()["error"]["param"] == param
    assert await Conversation.objects.acount() == 0


async def test_a_new_session_by_session_login_must_pass_csrf(user, catalogue):
    client = AsyncClient(enforce_csrf_checks=True)
    await sync_to_async(client.force_login)(user)
    refused = await client.post("/api/v1/sessions", "{}", content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    await client.get("/api/docs")
    token = client.cookies["csrftoken"].value
    accepted = await client.post(
        "/api/v1/sessions", "{}", content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 201


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_stream_outliving_its_view_still_settles_its_reply_and_usage(catalogue, issued, method):
    """Through the served application and its whole middleware chain: the reply (about 2.4 s) is
    stored and metered after the view has long returned its streaming response."""
    await AIModel.objects.acreate(
        slug="test/steady", provider=Provider.OPENAI_COMPAT, upstream_id="steady", name="Steady"
    )
    headers = {"Authorization": f"Bearer {issued[1]}"}
    asked = {"message": "Say hello", "model": "test/steady"}
    async with served() as client:
        if method == "POST":
            response = await client.post("/api/v1/chat/stream", json=asked, headers=headers, timeout=30)
        else:
            query = {"prompt": asked["message"], "model": asked["model"]}
            response = await client.get("/api/v1/chat/stream", params=query, headers=headers, timeout=30)
    data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    end = json.loads(data[-2])
    assert end["type"] == "end"
    assert (end["message"]["status"], end["message"]["content"]) == ("complete", REPLY * 2)
    record = await UsageRecord.objects.aget()
    assert (record.status, record.completion_tokens) == ("complete", 6)
