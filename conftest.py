"""Fixtures shared by every app's tests."""

from __future__ import annotations

import pytest

from chat.tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(fake_upstream, settings):
    """The fake upstream, reset, wired in as the OpenAI-compatible, OpenRouter and Gemini providers."""
    fake_upstream.reset()
    settings.OPENAI_COMPAT_BASE_URL = f"{fake_upstream.url}/v1"
    settings.OPENAI_COMPAT_API_KEY = "compat-test-key"
    settings.OPENROUTER_BASE_URL = f"{fake_upstream.url}/openrouter/v1"
    settings.OPENROUTER_API_KEY = "openrouter-test-key"
    settings.GEMINI_BASE_URL = f"{fake_upstream.url}/v1beta"
    settings.GEMINI_API_KEY = "gemini-test-key"
    settings.UPSTREAM_READ_TIMEOUT = 1.0
    return fake_upstream


@pytest.fixture
def user(django_user_model):
    """A user on the Pro plan, so paid models and a few parallel requests are allowed (billing tests
    that check plan limits make their own users)."""
    from billing.models import Plan
    from billing.subscriptions import start_subscription

    alice = django_user_model.objects.create_user("alice@example.com", "correct horse battery")
    start_subscription(alice, Plan.objects.get(slug="pro"))
    return alice


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("mallory@example.com", "correct horse battery")
