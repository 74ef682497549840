"""The APIs from a real browser (headless Chromium against daphne): a web app on another origin calls
/v1/chat/completions with fetch after a CORS preflight, allowed or refused by CORS_ALLOWED_ORIGINS;
the developer guide streams GET /api/v1/chat/stream with an EventSource into its page."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

from aihub.testing import chromium_page, session_key_for, wait_for
from billing.models import UsageRecord
from chat.models import Message
from chat.tests.api_fixtures import catalogue, issued  # noqa: F401
from chat.tests.fake_upstream import REPLY_WORDS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

REPLY = "".join(REPLY_WORDS)
APP_FILES = Path(__file__).with_name("cross_origin")


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def other_origin():
    """A web app's own server: another port, so another origin, serving cross_origin/ as it is."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(APP_FILES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def app_result(chromium_path: str, page_url: str) -> str:
    with chromium_page(chromium_path, viewport={"width": 800, "height": 600}) as page:
        page.goto(page_url)
        page.wait_for_function("() => document.getElementById('result').textContent !== 'pending'", timeout=15000)
        return page.text_content("#result")


def test_a_web_app_on_an_allowed_origin_calls_the_api_with_fetch(
    asgi_server, other_origin, chromium_path, catalogue, issued, upstream, settings
):
    settings.CORS_ALLOWED_ORIGINS = [other_origin]
    query = urlencode({"api": asgi_server, "key": issued[1], "model": "test/fake-model"})

    result = app_result(chromium_path, f"{other_origin}/page.html?{query}")

    assert result == f"answered 200: {REPLY}"
    assert wait_for(lambda: UsageRecord.objects.filter(api_key=issued[0]).exists(), 5)  # it follows the response
    assert UsageRecord.objects.filter(api_key=issued[0]).count() == 1


def test_a_web_app_on_an_origin_not_allowed_is_refused_at_the_preflight(
    asgi_server, other_origin, chromium_path, catalogue, issued, upstream, settings
):
    settings.CORS_ALLOWED_ORIGINS = ["http://127.0.0.1:1"]  # another origin only
    query = urlencode({"api": asgi_server, "key": issued[1], "model": "test/fake-model"})

    result = app_result(chromium_path, f"{other_origin}/page.html?{query}")

    assert result == "refused: TypeError"  # fetch's network error: the browser never sent the POST
    assert upstream.requests == []
    assert not UsageRecord.objects.exists()


def test_the_guide_streams_a_reply_with_an_eventsource(asgi_server, chromium_path, catalogue, user, upstream):
    session_key = session_key_for(user)
    with chromium_page(
        chromium_path, viewport={"width": 1280, "height": 900}, base_url=asgi_server, session_key=session_key
    ) as page:
        page.goto(f"{asgi_server}/api/guide")
        page.fill("#stream-demo-prompt", "Say hello")
        page.click("#stream-demo button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('stream-demo-status').textContent.startsWith('Done')", timeout=15000
        )
        output = page.text_content("#stream-demo-output")
        problems = page.problems

    assert output == REPLY
    assert problems == []
    reply = Message.objects.get(role="assistant")
    assert (reply.content, reply.status, reply.conversation.user_id) == (REPLY, "complete", user.pk)
    assert UsageRecord.objects.count() == 1
    assert [r["body"]["messages"][-1]["content"] for r in upstream.requests] == ["Say hello"]
