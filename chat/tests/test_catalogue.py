"""`manage.py refresh_models` against the fake upstream's model lists."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, ManagementUtility, call_command

from chat.models import AIModel, Provider
from chat.seed import SEED_FALLBACKS, SEED_MODELS
from chat.tests.fake_upstream import LISTED_MODELS

pytestmark = pytest.mark.django_db


def refresh(*providers: str) -> None:
    call_command("refresh_models", *[arg for name in providers for arg in ("--provider", name)])


def catalogue(provider: str) -> dict[str, AIModel]:
    return {m.slug: m for m in AIModel.objects.filter(provider=provider)}


def test_it_stores_openrouter_prices_per_million_tokens(upstream):
    refresh("openrouter")

    model = AIModel.objects.get(slug="fake-model")
    assert (model.provider, model.upstream_id, model.name, model.context_length) == (
        "openrouter",
        "fake-model",
        "Fake model",
        4096,
    )
    assert model.input_price_per_m == Decimal("1.000000")
    assert model.output_price_per_m == Decimal("2.000000")
    assert isinstance(model.input_price_per_m, Decimal)
    assert not model.is_free


def test_a_free_variant_shows_as_free(upstream):
    refresh("openrouter")

    free = AIModel.objects.get(slug="fake-free:free")
    assert free.is_free
    assert list(AIModel.objects.active().free().values_list("slug", flat=True)) == ["fake-free:free"]


def test_models_no_longer_listed_are_deactivated_not_deleted(upstream):
    refresh("openrouter")
    upstream.listed_models = [m for m in LISTED_MODELS if m["id"] != "fake-model"]

    refresh("openrouter")

    gone = AIModel.objects.get(slug="fake-model")
    assert not gone.is_active
    assert AIModel.objects.get(slug="fake-free:free").is_active


def test_a_model_listed_again_comes_back_with_its_new_price(upstream):
    upstream.listed_models = []
    AIModel.objects.create(
        slug="fake-model",
        provider=Provider.OPENROUTER,
        upstream_id="fake-model",
        name="Fake model",
        is_active=False,
        auto_priority=5,
    )
    upstream.listed_models = LISTED_MODELS

    refresh("openrouter")

    model = AIModel.objects.get(slug="fake-model")
    assert model.is_active
    assert model.input_price_per_m == Decimal("1")
    assert model.auto_priority == 5  # an operator's setting survives the refresh


def test_a_refresh_leaves_other_providers_alone(upstream):
    AIModel.objects.create(
        slug="gemini/gemini-2.0-flash", provider=Provider.GEMINI, upstream_id="gemini-2.0-flash", name="Gemini"
    )

    refresh("openrouter")

    assert AIModel.objects.get(slug="gemini/gemini-2.0-flash").is_active


def test_a_model_with_a_variable_or_unreadable_price_is_not_offered(upstream):
    upstream.listed_models = [
        *LISTED_MODELS,
        {"id": "openrouter/auto", "name": "Auto router", "pricing": {"prompt": "-1", "completion": "-1"}},
        {"id": "odd/model", "name": "Odd", "pricing": {"prompt": "n/a", "completion": "0"}},
    ]

    AIModel.objects.create(
        slug="openrouter/auto", provider=Provider.OPENROUTER, upstream_id="openrouter/auto", name="Auto router"
    )

    refresh("openrouter")

    assert set(AIModel.objects.active().values_list("slug", flat=True)) == {"fake-model", "fake-free:free"}
    assert not AIModel.objects.filter(slug="odd/model").exists()
    assert not AIModel.objects.get(slug="openrouter/auto").is_active


def test_openrouters_supported_parameters_say_which_models_take_tools_and_json(upstream):
    upstream.listed_models = [
        {**LISTED_MODELS[0], "supported_parameters": ["temperature", "tools", "tool_choice"]},
        {**LISTED_MODELS[1], "supported_parameters": ["temperature", "response_format"]},
    ]
    refresh("openrouter")

    tools_only, json_only = AIModel.objects.get(slug="fake-model"), AIModel.objects.get(slug="fake-free:free")
    assert (tools_only.supports_tools, tools_only.supports_response_format) == (True, False)
    assert (json_only.supports_tools, json_only.supports_response_format) == (False, True)


def test_openai_compatible_models_get_compat_slugs(upstream):
    refresh("openai_compat")

    models = catalogue(Provider.OPENAI_COMPAT)
    assert set(models) == {"compat/fake-model", "compat/fake-free:free"}
    assert models["compat/fake-model"].upstream_id == "fake-model"
    assert models["compat/fake-model"].is_free  # a self-hosted server costs nothing per token


def test_gemini_refresh_updates_catalogued_models_only(upstream):
    AIModel.objects.create(
        slug="gemini/gemini-2.0-flash",
        provider=Provider.GEMINI,
        upstream_id="gemini-2.0-flash",
        name="Gemini",
        context_length=1000,
        is_active=False,
    )

    refresh("gemini")

    model = AIModel.objects.get(slug="gemini/gemini-2.0-flash")
    assert (model.context_length, model.is_active) == (1048576, True)
    assert AIModel.objects.count() == 1


def test_an_unreachable_provider_fails_the_command(upstream, settings, refused_url):
    settings.OPENROUTER_BASE_URL = f"{refused_url}/api/v1"

    with pytest.raises(CommandError, match="could not be refreshed"):
        refresh("openrouter")

    assert not AIModel.objects.exists()


def test_the_other_providers_are_still_refreshed_when_one_is_unreachable(upstream, settings, refused_url):
    settings.OPENROUTER_BASE_URL = f"{refused_url}/api/v1"

    with pytest.raises(CommandError):
        refresh("openrouter", "openai_compat")

    assert set(catalogue(Provider.OPENAI_COMPAT)) == {"compat/fake-model", "compat/fake-free:free"}


def test_an_unreachable_provider_exits_non_zero(upstream, settings, refused_url, capsys):
    settings.OPENROUTER_BASE_URL = f"{refused_url}/api/v1"

    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "refresh_models", "--provider", "openrouter"]).execute()

    assert exited.value.code == 1
    assert "cannot reach" in capsys.readouterr().err


def test_a_provider_answering_html_fails_the_command_without_stopping_the_others(upstream, settings):
    settings.OPENROUTER_BASE_URL = f"{upstream.url}/html/api/v1"

    with pytest.raises(CommandError):
        refresh("openrouter", "openai_compat")

    assert not catalogue(Provider.OPENROUTER)
    assert set(catalogue(Provider.OPENAI_COMPAT)) == {"compat/fake-model", "compat/fake-free:free"}


# Seeding (runs on every `make run`)


def seed() -> str:
    out = StringIO()
    call_command("seed", stdout=out, stderr=out)
    return out.getvalue()


def test_seeding_an_empty_catalogue_adds_the_seed_models_and_their_fallbacks(upstream):
    output = seed()

    assert f"catalogue: {len(SEED_MODELS)} seed models added" in output
    assert set(AIModel.objects.values_list("slug", flat=True)) >= {row[0] for row in SEED_MODELS}
    for slug, fallback in SEED_FALLBACKS.items():
        assert AIModel.objects.get(slug=slug).fallback.slug == fallback


def test_seeding_again_keeps_refreshed_prices_and_admin_edits(upstream):
    seed()
    AIModel.objects.filter(slug="openai/gpt-4o-mini").update(input_price_per_m=Decimal("0.2"), auto_priority=3)
    AIModel.objects.filter(slug="google/gemini-2.0-flash-001").update(fallback=None)

    output = seed()

    assert "catalogue: 0 seed models added" in output
    model = AIModel.objects.get(slug="openai/gpt-4o-mini")
    assert (model.input_price_per_m, model.auto_priority) == (Decimal("0.2"), 3)
    assert AIModel.objects.get(slug="google/gemini-2.0-flash-001").fallback is None


def test_seeding_also_lists_the_openai_compatible_server(upstream):
    seed()

    assert set(catalogue(Provider.OPENAI_COMPAT)) == {"compat/fake-model", "compat/fake-free:free"}


def test_seeding_goes_on_when_the_openai_compatible_server_is_down(upstream, settings, refused_url):
    settings.OPENAI_COMPAT_BASE_URL = f"{refused_url}/api/v1"

    output = seed()

    assert "openai_compat: cannot reach" in output
    assert AIModel.objects.filter(slug="local/smollm2-135m-instruct").exists()
