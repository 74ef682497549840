"""'Search the web' in a real browser against the ASGI application, a fake SearXNG and the fake upstream."""

from __future__ import annotations

import pytest

from aihub.testing import chromium_page, session_key_for
from chat.models import AIModel, Provider
from chat.tests.fake_searxng import RESULTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(asgi_server, chromium_path, user, upstream, searxng):
    AIModel.objects.create(
        slug="fake/cites", provider=Provider.OPENAI_COMPAT, upstream_id="cites-sources", name="Citing model"
    )
    with chromium_page(
        chromium_path, viewport={"width": 1280, "height": 900}, base_url=asgi_server, session_key=session_key_for(user)
    ) as page:
        page.goto(f"{asgi_server}/chat/")
        page.wait_for_function("() => document.getElementById('connection-status').dataset.state === 'open'")
        page.select_option("#model-select", "fake/cites")
        yield page


def test_the_reply_shows_numbered_citations_linking_to_the_results(page, upstream):
    page.check("#web-search-toggle")
    page.fill("#message-input", "Which roses like shade?")
    page.press("#message-input", "Enter")
    citations = page.locator(".message.assistant a.citation")
    citations.first.wait_for()
    assert [(c.inner_text(), c.get_attribute("href")) for c in citations.all()] == [
        ("[1]", RESULTS[0]["url"]),
        ("[2]", RESULTS[1]["url"]),
    ]
    sources = page.locator(".message.assistant .sources a.source-link")
    assert [s.get_attribute("href") for s in sources.all()] == [RESULTS[0]["url"], RESULTS[1]["url"]]
    assert "Roses in shade" in upstream.requests[-1]["body"]["messages"][0]["content"]
    assert page.problems == []


def test_a_failed_search_is_said_on_the_page_and_the_reply_goes_on(page):
    page.check("#web-search-toggle")
    page.fill("#message-input", "fail")
    page.press("#message-input", "Enter")
    page.locator(".message.assistant .search-note", has_text="Web search failed").wait_for()
    assert "Alba roses take half shade" in page.locator(".message.assistant .content").inner_text()
    assert page.problems == []
