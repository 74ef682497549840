"""The model picker as the server renders it: every option carries what the picker shows (provider, prices
per 1M, context, free, vision, tools), and a 300-model catalogue costs no query per model."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from chat.models import AIModel, Provider
from chat.templatetags.chat_tags import context_short
from chat.tests.test_model_picker_browser import catalogue_row

pytestmark = pytest.mark.django_db


def option_of(html: str, slug: str) -> str:
    start = html.index(f'<option value="{slug}"')
    return html[start : html.index("</option>", start)]


def test_each_option_carries_its_prices_context_and_capabilities(logged_in, upstream):
    AIModel.objects.create(
        slug="fake/eyes",
        provider=Provider.OPENROUTER,
        upstream_id="eyes",
        name="Eyes",
        context_length=131_072,
        input_price_per_m=Decimal("0.15"),
        output_price_per_m=Decimal("0.60"),
        supports_images=True,
        supports_tools=True,
    )
    AIModel.objects.create(
        slug="fake/plain-free", provider=Provider.GEMINI, upstream_id="plain", name="Plain", supports_tools=False
    )
    html = logged_in.get("/chat/").content.decode()
    eyes = option_of(html, "fake/eyes")
    assert 'data-provider="OpenRouter"' in eyes
    assert 'data-price="$0.15 in / $0.60 out per 1M"' in eyes
    assert 'data-context="131K"' in eyes
    assert "data-vision" in eyes and "data-tools" in eyes and "data-free" not in eyes
    plain = option_of(html, "fake/plain-free")
    assert 'data-free="1"' in plain and 'data-provider="Google Gemini"' in plain
    assert "data-vision" not in plain and "data-tools" not in plain and "data-context" not in plain
    # The list, the button and the script are there; the <select> alone works without JavaScript.
    assert 'id="model-picker-button"' in html and 'id="model-filter"' in html and "js/model-picker.js" in html


def test_context_lengths_are_shown_short():
    assert [context_short(n) for n in (512, 8192, 131_072, 1_048_576, 2_000_000)] == [
        "512",
        "8K",
        "131K",
        "1.05M",
        "2M",
    ]


def test_a_300_model_catalogue_costs_no_query_per_model(logged_in, upstream, django_assert_max_num_queries):
    AIModel.objects.bulk_create([catalogue_row(i) for i in range(300)])
    with django_assert_max_num_queries(12):
        html = logged_in.get("/chat/").content.decode()
    assert len(re.findall(r'<option value="cat/model-\d+"', html)) == 300
