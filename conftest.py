"""Fixtures shared by every app's tests."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db.models.signals import post_migrate

from accounts.api_keys import issue_key
from aihub.testing import (
    CHROMIUM,
    app_env,
    chromium_page,
    free_port,
    logged_in_client,
    seed_plans,
    session_key_for,
    start_daphne,
    stop_process,
    wait_until_healthy,
)
from billing.models import Plan
from billing.subscriptions import start_subscription
from chat.catalogue.lookup import ADDED_PROVIDERS_CACHE_KEY
from chat.catalogue.models import AIModel, Provider
from chat.gateway import breaker
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


def _plans_after_flush(**kwargs) -> None:
    seed_plans()


# A transactional test's flush ends with post_migrate (Django re-creates content types on it): the plans
# come back then too, committed, so that the rolled-back tests after it need not seed them each time.
post_migrate.connect(_plans_after_flush, sender=apps.get_app_config("billing"), dispatch_uid="plans-after-flush")


@pytest.fixture(autouse=True)
def seeded_plans(request):
    """Every test that uses the database finds the plans the migrations seed, whatever an earlier
    transactional test flushed: ordinary tests need neither transaction=True nor serialized_rollback."""
    uses_database = request.node.get_closest_marker("django_db") is not None or any(
        name in request.fixturenames for name in ("db", "transactional_db", "live_server")
    )
    if uses_database:
        request.getfixturevalue("db")
        seed_plans()


@pytest.fixture(autouse=True)
def providers_as_new(settings):
    """Every test starts with no breaker state, no provider added in the admin (an earlier test's are
    flushed with its rows) and no retries: tests of fallback count each attempt; the retry tests
    (test_retries_and_breakers.py) turn them on."""
    settings.UPSTREAM_RETRIES = 0
    breaker.reset_all()
    cache.set(ADDED_PROVIDERS_CACHE_KEY, [], timeout=60)


@pytest.fixture(autouse=True)
def no_automatic_titles(settings):
    """No title requests after a first reply (they would be one more upstream request and usage row in
    tests counting them); the title tests (chat/tests/test_titles*.py) turn them on."""
    settings.CHAT_TITLE_MODEL = ""


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


@pytest.fixture
def free_user(django_user_model):
    """A new account: on Free, where every account starts."""
    return django_user_model.objects.create_user("fran@example.com", "correct horse battery")


@pytest.fixture
def logged_in(user):
    """A Django test client logged in as `user`."""
    return logged_in_client(user)


@pytest.fixture
def refused_url():
    """A base URL on 127.0.0.1 where nothing listens: connecting is refused."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def servers(upstream):
    """Start daphne processes of aihub.asgi against the test database (PostgreSQL: a shared one), the
    fake upstream as their OpenAI-compatible provider; `servers(count, redis_url, **environment)` gives
    their base URLs."""
    started: list[tuple[subprocess.Popen, str]] = []

    def start(count: int = 2, redis_url: str = "", **settings: str) -> list[str]:
        env = app_env(upstream.url, REDIS_URL=redis_url, OPENAI_COMPAT_API_KEY="compat-test-key", **settings)
        new = [start_daphne(env) for _ in range(count)]
        started.extend(new)
        for process, url in new:
            wait_until_healthy(url, process)
        return [url for _, url in new]

    yield start
    for process, _ in started:
        stop_process(process)


@pytest.fixture(scope="session")
def chromium_path():
    """/usr/bin/chromium, or a skip (a failure with REQUIRE_BROWSER=1) where it is missing."""
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing (set REQUIRE_BROWSER=1 to make this a failure)")
    return str(CHROMIUM)


@pytest.fixture
def logged_in_page(live_server, chromium_path):
    """Opens a headless Chromium page on the live server logged in as the given person (`page.base` is the
    server's URL, `page.problems` collects errors and 4xx/5xx responses). The session is made before the
    browser starts, since Playwright's event loop forbids ORM calls after: one page a test."""
    with contextlib.ExitStack() as pages:

        def open_page(person, *, permissions: tuple[str, ...] = ()):
            return pages.enter_context(
                chromium_page(
                    chromium_path,
                    viewport={"width": 1280, "height": 900},
                    base_url=live_server.url,
                    session_key=session_key_for(person),
                    permissions=permissions,
                )
            )

        yield open_page


# Plans, subscribers, priced models and keys: billing's tests and the gateway's tests of enforcement share them.
_numbers = itertools.count(1)


@pytest.fixture
def make_plan():
    """A plan with no limits but the ones given."""

    def make(**limits) -> Plan:
        number = next(_numbers)
        fields = dict(
            monthly_price=Decimal("10"),
            monthly_token_quota=None,
            monthly_credit_quota=None,
            requests_per_minute=None,
            tokens_per_minute=None,
            max_concurrent_streams=None,
            max_api_keys=None,
            max_output_tokens=None,
            free_models_only=False,
            sort_order=10 + number,
        )
        fields.update(limits)
        return Plan.objects.create(slug=f"test-{number}", name=f"Test {number}", **fields)

    return make


@pytest.fixture
def subscriber(django_user_model):
    """A new user on the given plan."""

    def make(plan: Plan):
        person = django_user_model.objects.create_user(f"person{next(_numbers)}@example.com", "correct horse battery")
        start_subscription(person, plan)
        return person

    return make


@pytest.fixture
def make_model(upstream):
    """A catalogue model served by the fake upstream (its upstream id picks the behaviour)."""

    def make(
        upstream_id: str = "fake-model", *, price_in: str = "1", price_out: str = "2", fallback: AIModel | None = None
    ) -> AIModel:
        return AIModel.objects.create(
            slug=f"test/{upstream_id}-{next(_numbers)}",
            provider=Provider.OPENAI_COMPAT,
            upstream_id=upstream_id,
            name=upstream_id,
            input_price_per_m=Decimal(price_in),
            output_price_per_m=Decimal(price_out),
            fallback=fallback,
            context_length=8192,
        )

    return make


@pytest.fixture
def make_key():
    def make(owner, *, budget: str | None = None):
        api_key, _ = issue_key(owner, f"key {next(_numbers)}", monthly_budget=Decimal(budget) if budget else None)
        return api_key

    return make
