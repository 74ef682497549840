"""The served ASGI application: /v1 through the API's own handler (no browser middleware), with the
site's security headers and HTTPS redirect; every other path through the full middleware."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured

from accounts.api_keys import issue_key
from aihub.asgi import application
from billing.models import Plan, Reservation, UsageRecord
from billing.subscriptions import start_subscription
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


async def test_a_completion_is_answered_before_its_usage_row_is_written_and_the_row_has_the_answers_usage(
    catalogue, user
):
    """The caller does not wait for the ledger: the row is written once the body is sent, in the same
    call (a server finishing or stopping waits for it), and the reservation meters it until then."""
    await sync_to_async(start_subscription)(user, await Plan.objects.aget(slug="developer"))
    key, raw_key = await sync_to_async(issue_key)(user, "test key")
    body = json.dumps({"model": "test/fake-model", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    answered = asyncio.Event()
    sent: list[dict] = []
    ledger_when_answered: list[tuple[int, int]] = []

    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if requests:
            return requests.pop()
        await answered.wait()  # as uvicorn: the request is over once its response is
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            usage_rows = await UsageRecord.objects.filter(api_key=key).acount()
            ledger_when_answered.append((usage_rows, await Reservation.objects.filter(user=user).acount()))
            answered.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {raw_key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await application(scope, receive, send)

    assert sent[0]["status"] == 200
    assert ledger_when_answered == [(0, 1)]  # answered with no usage row yet, under its reservation
    row = await UsageRecord.objects.aget(api_key=key)
    assert row.status == UsageRecord.Status.COMPLETE
    assert await Reservation.objects.filter(user=user).acount() == 0
    answer = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert answer["usage"] == {
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
    }
    assert row.completion_tokens > 0
