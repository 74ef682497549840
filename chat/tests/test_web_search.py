"""Web search: the backends against a fake SearXNG / Brave on 127.0.0.1, GET /api/v1/search (metered and
limited per plan), and "Search the web" on the chat socket (sources to the model, stored with the reply)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from billing.models import Plan, SearchRecord
from chat.gateway.search import sources_prompt
from chat.markdown import cite_sources
from chat.models import Message
from chat.tests.test_consumer import (  # noqa: F401 (fixtures)
    chat_with,
    connect,
    conversation,
    receive_until_final,
    session_cookie,
)

ROSES = "https://roses.example/shade"
CLIMBERS = "https://climbers.example/north-walls"


@pytest.mark.django_db(transaction=True)
def test_search_answers_title_url_and_snippet_and_leaves_a_usage_row(logged_in, user, searxng):
    response = logged_in.get("/api/v1/search", {"q": "roses for shade"})
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"title": "Roses in shade", "url": ROSES, "snippet": "Alba roses grow in half shade."},
        {"title": "Climbing roses", "url": CLIMBERS, "snippet": "Some climbers like a north wall."},
    ]  # the javascript: result is dropped
    assert searxng.requests[0]["params"] == {"q": "roses for shade", "format": "json"}
    record = SearchRecord.objects.get()
    assert (record.user, record.backend, record.status, record.results) == (user, "SearXNG", "complete", 2)


@pytest.mark.django_db(transaction=True)
def test_brave_is_the_hosted_backend(logged_in, searxng, settings):
    settings.WEB_SEARCH_BACKEND = "brave"
    settings.BRAVE_SEARCH_BASE_URL = f"{searxng.url}/res/v1"
    settings.BRAVE_SEARCH_API_KEY = "brave-test-key"
    response = logged_in.get("/api/v1/search", {"q": "roses"})
    assert [r["url"] for r in response.json()["results"]] == [ROSES, CLIMBERS]
    request = searxng.requests[0]
    assert request["path"] == "/res/v1/web/search" and request["headers"]["X-Subscription-Token"] == "brave-test-key"
    assert SearchRecord.objects.get().backend == "Brave Search"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("query", "status", "code"), [("fail", 502, "search_failed"), ("slow", 504, "search_timeout")])
def test_a_failed_search_is_an_api_error_and_still_recorded(logged_in, searxng, query, status, code):
    response = logged_in.get("/api/v1/search", {"q": query})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert SearchRecord.objects.get().status == "failed"


@pytest.mark.django_db
def test_bad_or_impossible_searches(logged_in, settings):
    assert logged_in.get("/api/v1/search").json()["error"]["param"] == "q"
    assert logged_in.get("/api/v1/search", {"q": "x" * 401}).status_code == 400
    settings.SEARXNG_URL = settings.BRAVE_SEARCH_API_KEY = ""
    response = logged_in.get("/api/v1/search", {"q": "roses"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "search_unavailable"
    assert not SearchRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_searches_are_limited_per_plan(free_user, searxng):
    from aihub.testing import logged_in_client

    Plan.objects.filter(slug="free").update(monthly_search_quota=2)
    client = logged_in_client(free_user)
    assert [client.get("/api/v1/search", {"q": "roses"}).status_code for _ in range(3)] == [200, 200, 429]
    assert "2 web searches a month" in client.get("/api/v1/search", {"q": "roses"}).json()["error"]["message"]
    assert SearchRecord.objects.filter(user=free_user).count() == 2
    assert len(searxng.requests) == 2


def test_citations_link_to_their_sources_but_not_inside_code():
    sources = [{"url": ROSES}, {"url": "https://x.example/?a=1&b=2"}]
    html = cite_sources("<p>Shade [1], walls [2], none [3]. <code>a[1]</code></p>", sources)
    assert '<a class="citation" href="https://roses.example/shade"' in html
    assert 'href="https://x.example/?a=1&amp;b=2"' in html
    assert "none [3]" in html and "<code>a[1]</code>" in html


def test_the_sources_prompt_numbers_the_results():
    prompt = sources_prompt([{"title": "T", "url": ROSES, "snippet": "S"}])
    assert f"[1] T\n{ROSES}\nS" in prompt


@pytest.mark.django_db(transaction=True)
async def test_search_on_gives_the_model_numbered_sources_and_stores_them(chat_with, upstream, searxng):  # noqa: F811
    communicator = await chat_with("cites-sources")
    await communicator.send_json_to(
        {"action": "send", "message": "Which roses like shade?", "model": "fake/cites-sources", "web_search": "on"}
    )
    frames = await receive_until_final(communicator)
    sent = upstream.requests[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert (
        f"[1] Roses in shade\n{ROSES}" in sent[0]["content"] and f"[2] Climbing roses\n{CLIMBERS}" in sent[0]["content"]
    )
    assert searxng.requests[0]["params"]["q"] == "Which roses like shade?"
    reply = await Message.objects.aget(role="assistant")
    assert [s["url"] for s in reply.sources] == [ROSES, CLIMBERS]
    assert f'<a class="citation" href="{ROSES}"' in frames[-1]
    assert await SearchRecord.objects.acount() == 1


@pytest.mark.django_db(transaction=True)
async def test_a_failing_search_lets_the_reply_go_on_and_says_so(chat_with, upstream, searxng, settings):  # noqa: F811
    settings.WEB_SEARCH_TIMEOUT = 0.3
    communicator = await chat_with("plain")
    await communicator.send_json_to({"action": "send", "message": "slow", "model": "fake/plain", "web_search": "on"})
    frames = await receive_until_final(communicator)
    assert [m["role"] for m in upstream.requests[-1]["body"]["messages"]] == ["user"]
    reply = await Message.objects.aget(role="assistant")
    assert reply.status == "complete" and reply.content == "Hello from the fake upstream."
    assert "Web search failed (SearXNG did not answer within 0.3 s)" in frames[-1]
    assert await sync_to_async(lambda: SearchRecord.objects.get().status)() == "failed"


@pytest.mark.django_db(transaction=True)
async def test_without_the_toggle_nothing_is_searched(chat_with, upstream, searxng):  # noqa: F811
    communicator = await chat_with("plain")
    await communicator.send_json_to({"action": "send", "message": "Which roses?", "model": "fake/plain"})
    await receive_until_final(communicator)
    assert searxng.requests == [] and not await SearchRecord.objects.aexists()


@pytest.mark.django_db
def test_the_schema_documents_the_search_endpoint(logged_in):
    operation = logged_in.get("/api/openapi.json").json()["paths"]["/api/v1/search"]["get"]
    assert operation["parameters"][0]["name"] == "q"
    assert {"200", "400", "429", "502", "503", "504"} <= set(operation["responses"])
