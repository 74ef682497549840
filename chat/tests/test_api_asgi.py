"""The served ASGI application: /v1 through the API's own handler (no browser middleware), with the
site's security headers and HTTPS redirect; every other path through the full middleware."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from billing.models import UsageRecord
from chat.api import asgi
from chat.api.asgi import ApiHandler
from chat.tests.api_fixtures import catalogue, issued, served  # noqa: F401
from chat.tests.fake_upstream import REPLY_WORDS

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_answers_v1_with_the_security_headers_and_no_session(catalogue, issued):
    async with served() as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {issued[1]}"},
            json={"model": "test/fake-model", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "".join(REPLY_WORDS)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "set-cookie" not in response.headers
    assert await UsageRecord.objects.filter(api_key=issued[0]).acount() == 1


async def test_it_streams_v1(catalogue, issued):
    async with served() as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {issued[1]}"},
            json={"model": "test/fake-model", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.text.endswith("data: [DONE]\n\n")


async def test_it_redirects_v1_to_https_when_the_site_does(settings):
    settings.SECURE_SSL_REDIRECT = True
    async with served(ApiHandler()) as client:  # middleware reads its settings when built
        response = await client.get("/v1/models")
    assert response.status_code == 301
    assert response.headers["Location"] == "https://testserver/v1/models"


async def test_it_answers_unknown_v1_paths_in_the_api_error_shape():
    async with served() as client:
        response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_endpoint"


async def test_it_keeps_the_login_middleware_for_pages():
    async with served() as client:
        response = await client.get("/chat/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/accounts/login/")


def test_every_site_middleware_is_decided_on_for_v1(settings):
    """A middleware added to settings is skipped on /v1 or kept only by naming it in chat/api/asgi.py."""
    decided = set(asgi.SKIPPED) | asgi.IN_LOOP | asgi.ASYNC
    assert [path for path in settings.MIDDLEWARE if path not in decided] == []
    kept = [path for path in settings.MIDDLEWARE if path not in asgi.SKIPPED]
    assert [m.__name__.removeprefix("InLoop") for m in asgi.api_middleware()] == [p.rsplit(".", 1)[1] for p in kept]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "example.middleware.RequestIdMiddleware"]
    with pytest.raises(ImproperlyConfigured, match="RequestIdMiddleware"):
        asgi.api_middleware()
