"""Fixtures of the chat tests that drive a browser against the real ASGI application.

pytest-django's live_server speaks WSGI only (no websockets), so daphne serves aihub.asgi here, in a
thread of the test process: it then uses the test database on PostgreSQL and on SQLite alike (an
in-memory SQLite database cannot be shared with a subprocess).
"""

from __future__ import annotations

import threading

import pytest

from aihub.testing import free_port, wait_until_healthy
from chat.gateway.generation import Generation

SAY_HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker):
    """daphne serving the real application on a free port, for the whole session (a Twisted reactor
    runs once per process)."""
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from twisted.internet import reactor

    from aihub.asgi import application

    port = free_port()
    server = Server(
        application,
        endpoints=build_endpoint_description_strings(host="127.0.0.1", port=port),
        signal_handlers=False,
        verbosity=0,
    )
    thread = threading.Thread(target=server.run, name="daphne", daemon=True)
    with django_db_blocker.unblock():
        thread.start()
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, seconds=10)
        yield url
        reactor.callFromThread(reactor.stop)
        thread.join(timeout=10)


@pytest.fixture
def two_message_chat(user):
    """A conversation of `user`: a question and a Markdown reply by a named model."""
    from chat.models import AIModel, Conversation, Message, Provider

    model = AIModel.objects.create(slug="fake/m", provider=Provider.OPENAI_COMPAT, upstream_id="m", name="Fake M")
    conversation = Conversation.objects.create(user=user, title="Plans for Tuesday", model=model)
    Message.objects.create(conversation=conversation, role="user", content="What is 2 + 2?")
    Message.objects.create(conversation=conversation, role="assistant", content="It is **4**.", model=model)
    return conversation


@pytest.fixture
def searxng(settings):
    """A fake SearXNG on 127.0.0.1, configured as the web search backend (a 1 s timeout)."""
    from chat.tests.fake_searxng import FakeSearch

    with FakeSearch() as fake:
        settings.WEB_SEARCH_BACKEND = "searxng"
        settings.SEARXNG_URL = fake.url
        settings.WEB_SEARCH_TIMEOUT = 1.0
        yield fake


def generation(owner, model, *, api_key=None, params=None, messages=SAY_HELLO) -> Generation:
    """A request through the gateway, as the chat page and the API make one."""
    return Generation(user=owner, model=model, messages=messages, params=params or {}, api_key=api_key)
