"""Fixtures for the API tests (imported by the test_api_* modules): a catalogue on the fake upstream
and issued API keys."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from django.test import AsyncClient

from accounts.api_keys import issue_key
from billing.models import Plan
from billing.subscriptions import start_subscription
from chat.models import AIModel, Provider

# Catalogue slugs -> fake upstream behaviours (see fake_upstream.py). Served by the OpenAI-compatible provider.
BEHAVIOURS = [
    "fake-model",
    "fail-500",
    "fail-400",
    "hang",
    "slow",
    "error-after-2",
    "drop-after-2",
    "zero-usage",
    "no-usage",
]


@pytest.fixture
def catalogue(upstream, settings):
    """One paid model per fake behaviour, plus a free one that 'auto' picks. The local model is off."""
    settings.LOCAL_MODEL_ENABLED = False
    models = {
        name: AIModel.objects.create(
            slug=f"test/{name}",
            provider=Provider.OPENAI_COMPAT,
            upstream_id=name,
            name=f"Test {name}",
            context_length=4096,
            input_price_per_m=Decimal("1.50"),
            output_price_per_m=Decimal("2.00"),
        )
        for name in BEHAVIOURS
    }
    models["free"] = AIModel.objects.create(
        slug="test/free", provider=Provider.OPENAI_COMPAT, upstream_id="fake-free", name="Test free", auto_priority=1
    )
    return models


@pytest.fixture
def issued(user):
    """An API key of `user`, on the Enterprise plan (no limits, paid models): (row, full key)."""
    start_subscription(user, Plan.objects.get(slug="enterprise"))
    return issue_key(user, "test key")


class KeyClient:
    """Django's AsyncClient sending an API key (its constructor's `headers` do not reach ASGI requests)."""

    def __init__(self, raw_key: str | None):
        self.client = AsyncClient()
        self.headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}

    async def get(self, path: str, **kwargs):
        return await self.client.get(path, headers=self.headers, **kwargs)

    async def post(self, path: str, body, *, content_type: str = "application/json", **kwargs):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return await self.client.post(path, data, content_type=content_type, headers=self.headers, **kwargs)

    async def request(self, method: str, path: str, body=None):
        if method == "GET":
            return await self.get(path)
        data = "" if body is None else json.dumps(body)
        return await getattr(self.client, method.lower())(
            path, data, content_type="application/json", headers=self.headers
        )


@pytest.fixture
def api_client(issued):
    return KeyClient(issued[1])


def sse_events(body: bytes) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded except the final [DONE]."""
    events = []
    for block in body.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def streamed_body(response) -> bytes:
    return b"".join([part async for part in response.streaming_content])


def served(app=None) -> httpx.AsyncClient:
    """A client of the served ASGI application (aihub.asgi: /v1 through its own handler), or of `app`."""
    from aihub.asgi import application

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app or application), base_url="http://testserver")
