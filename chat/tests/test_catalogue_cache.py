"""The per-process copy of the catalogue: read without a query while nothing changes, reloaded on the
next request of every process once any process changed a model."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.models import UsageRecord
from chat.catalogue.lookup import (
    ADDED_PROVIDERS_CACHE_KEY,
    LiveCatalogue,
    UnknownModel,
    active_model,
    configured_providers,
    current,
)
from chat.catalogue.sync import refresh_gemini, refresh_openai_compat
from chat.models import AIModel, Provider, ProviderEndpoint
from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401

# transaction: the shared catalogue is kept only from reads outside a transaction.
pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(autouse=True)
def shared_cache():
    if not django_settings.REDIS_URL:
        pytest.skip("the catalogue is kept per process only with REDIS_URL, a cache all processes share")


def queries_of(lookup) -> int:
    with CaptureQueriesContext(connection) as captured:
        lookup()
    return len(captured)


def is_listed(slug: str) -> bool:
    try:
        return active_model(slug) is not None
    except UnknownModel:
        return False


def test_lookups_cost_no_query_until_a_model_is_saved(catalogue):
    model = catalogue["fake-model"]
    active_model(model.slug)
    assert queries_of(lambda: active_model(model.slug)) == 0
    model.input_price_per_m = Decimal("9")
    model.save()
    assert queries_of(lambda: active_model(model.slug)) == 2  # the whole table and the added providers, once
    assert active_model(model.slug).input_price_per_m == Decimal("9")
    assert queries_of(lambda: active_model(model.slug)) == 0


def test_providers_added_in_the_admin_come_with_the_copy_and_change_with_it(catalogue):
    assert "lab" not in configured_providers(current())
    endpoint = ProviderEndpoint.objects.create(name="lab", kind="openai_compat", base_url="http://127.0.0.1:9/v1")
    assert configured_providers(current())[-1] == "lab"
    # A request reads them from its catalogue, not from the cache (one round trip less per request)
    cache.set(ADDED_PROVIDERS_CACHE_KEY, ["not-read"], timeout=None)
    assert queries_of(lambda: configured_providers(current())) == 0
    assert "not-read" not in configured_providers(current())
    endpoint.is_active = False
    endpoint.save()
    assert "lab" not in configured_providers(current())


def test_a_deleted_model_is_gone_from_the_next_lookup(catalogue):
    assert is_listed("test/slow")
    catalogue["slow"].delete()
    assert not is_listed("test/slow")


def test_nothing_read_inside_a_transaction_is_kept(catalogue):
    with transaction.atomic():
        assert isinstance(current(), LiveCatalogue)
        AIModel.objects.filter(slug="test/hang").update(is_active=False)
        assert not is_listed("test/hang")
        transaction.set_rollback(True)
    assert is_listed("test/hang")


def test_a_refresh_deactivating_models_by_queryset_update_takes_effect(upstream):
    AIModel.objects.create(slug="compat/gone", provider=Provider.OPENAI_COMPAT, upstream_id="gone", name="Gone")
    assert is_listed("compat/gone")
    upstream.listed_models = []
    refresh_openai_compat()
    assert not is_listed("compat/gone")


def test_a_gemini_refresh_reactivating_models_by_queryset_update_takes_effect(upstream):
    AIModel.objects.create(
        slug="gemini/gemini-2.0-flash",
        provider=Provider.GEMINI,
        upstream_id="gemini-2.0-flash",
        name="Gemini",
        is_active=False,
    )
    assert not is_listed("gemini/gemini-2.0-flash")
    refresh_gemini()
    assert is_listed("gemini/gemini-2.0-flash")


def test_an_admin_list_edit_takes_effect(catalogue, admin_client):
    model = catalogue["fake-model"]
    assert is_listed(model.slug)
    response = admin_client.post(
        "/admin/chat/aimodel/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(model.pk),
            "form-0-auto_priority": "5",
            "_save": "Save",  # is_active left unticked
        },
    )
    assert response.status_code == 302
    assert not is_listed(model.slug)


async def test_a_repriced_model_is_charged_at_its_new_price_from_the_next_request(api_client, catalogue):
    model = catalogue["fake-model"]
    body = {"model": model.slug, "messages": HELLO}
    assert (await api_client.post("/v1/chat/completions", body)).status_code == 200
    model.input_price_per_m = Decimal("100")
    await model.asave()
    assert (await api_client.post("/v1/chat/completions", body)).status_code == 200
    costs = [cost async for cost in UsageRecord.objects.order_by("pk").values_list("cost", flat=True)]
    # The fake upstream reports 11 prompt and 6 completion tokens.
    assert costs == [Decimal("0.0000285"), Decimal("0.001112")]


async def test_a_deactivated_model_is_refused_by_the_next_request(api_client, catalogue):
    model = catalogue["fake-model"]
    body = {"model": model.slug, "messages": HELLO}
    assert (await api_client.post("/v1/chat/completions", body)).status_code == 200
    model.is_active = False
    await model.asave()
    response = await api_client.post("/v1/chat/completions", body)
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_a_change_made_by_another_process_takes_effect_on_the_next_lookup(catalogue):
    if connection.vendor != "postgresql":
        pytest.skip("another process needs a shared PostgreSQL database")
    model = catalogue["fake-model"]
    assert active_model(model.slug).input_price_per_m == Decimal("1.50")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    script = (
        "from chat.models import AIModel\n"
        f"model = AIModel.objects.get(pk={model.pk})\n"
        "model.input_price_per_m = 7\n"
        "model.save()\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert active_model(model.slug).input_price_per_m == Decimal("7")
