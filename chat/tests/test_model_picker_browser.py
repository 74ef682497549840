"""The model picker with a 300-model catalogue, in headless Chromium at a laptop's and a phone's size:
type to filter, grouped by provider, tags, keyboard, and the chosen model is the one the message goes to."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from aihub.testing import chromium_page, session_key_for
from chat.models import AIModel, Message, Provider
from chat.tests.fake_upstream import REPLY_WORDS
from chat.tests.test_browser_daily_use import LAPTOP, PHONE, in_thread, open_new_chat
from chat.titles import clean_title

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROVIDERS = [Provider.OPENROUTER, Provider.GEMINI, Provider.OPENAI_COMPAT]
OPTIONS = "#model-options .picker-option"
SHOWN = "#model-options .picker-option:not([hidden])"


def catalogue_row(i: int) -> AIModel:
    """Model i of 300: a third free, every fifth takes images, every fourth no tools."""
    free = i % 3 == 0
    return AIModel(
        slug=f"cat/model-{i:03}",
        provider=PROVIDERS[i % 3],
        upstream_id=f"model-{i:03}",
        name=f"Catalogue model {i:03}",
        context_length=8192 * (1 + i % 16),
        input_price_per_m=Decimal(0) if free else Decimal("0.15") * (1 + i % 7),
        output_price_per_m=Decimal(0) if free else Decimal("0.60") * (1 + i % 7),
        supports_images=i % 5 == 0,
        supports_tools=i % 4 != 0,
    )


@pytest.fixture
def catalogue_of_300(upstream):
    AIModel.objects.bulk_create([catalogue_row(i) for i in range(300)])
    AIModel.objects.create(
        slug="cat/zephyr",
        provider=Provider.OPENROUTER,
        upstream_id="zephyr",
        name="Zephyr Vision Pro",
        context_length=1_048_576,
        input_price_per_m=Decimal("2.50"),
        output_price_per_m=Decimal("10"),
        supports_images=True,
    )
    return 301


@pytest.fixture(params=[LAPTOP, PHONE], ids=["laptop", "phone"])
def chat_page(request, asgi_server, chromium_path, user):
    with chromium_page(
        chromium_path, viewport=request.param, base_url=asgi_server, session_key=session_key_for(user)
    ) as page:
        yield page


def texts(page, selector: str) -> list[str]:
    """The elements' text as written (inner_text would give it as styled, upper case)."""
    return page.eval_on_selector_all(selector, "items => items.map(i => i.textContent)")


def shown_values(page) -> list[str]:
    return page.eval_on_selector_all(SHOWN, "items => items.map(i => i.dataset.value)")


def test_the_picker_filters_a_300_model_catalogue_by_typing(catalogue_of_300, chat_page):
    page = chat_page
    open_new_chat(page)
    assert page.locator("#model-select").bounding_box()["width"] <= 1  # off screen, still the form's value
    button = page.locator("#model-picker-button")
    assert button.inner_text().startswith("auto")
    button.click()
    assert page.evaluate("document.activeElement.id") == "model-filter"
    assert page.locator(OPTIONS).count() == catalogue_of_300 + 1  # and auto
    assert texts(page, "#model-options .picker-group-label") == [
        "OpenRouter",
        "Google Gemini",
        "OpenAI-compatible",
    ]
    panel = page.locator("#model-picker-panel").bounding_box()
    width = page.viewport_size["width"]
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= width  # fits the screen, on a phone too

    started = time.monotonic()
    page.fill("#model-filter", "zephyr")
    assert shown_values(page) == ["cat/zephyr"]
    filtered_ms = (time.monotonic() - started) * 1000
    zephyr = page.locator(SHOWN)
    assert zephyr.locator(".picker-tag").all_inner_texts() == [
        "$2.50 in / $10.00 out per 1M",
        "1.05M context",
        "vision",
        "tools",
    ]
    assert texts(page, "#model-options .picker-group:not([hidden]) .picker-group-label") == ["OpenRouter"]
    assert filtered_ms < 1000

    # Every word must match: name, id, provider, or the tags.
    page.fill("#model-filter", "vision gemini")
    expected = sorted(f"cat/model-{i:03}" for i in range(300) if i % 5 == 0 and PROVIDERS[i % 3] == "gemini")
    assert sorted(shown_values(page)) == expected
    page.fill("#model-filter", "free vision")
    expected = sorted(f"cat/model-{i:03}" for i in range(300) if i % 15 == 0)
    assert sorted(v for v in shown_values(page) if v != "auto") == expected
    assert page.locator("#model-picker-count").inner_text() == f"{len(expected)} of {catalogue_of_300 + 1} models"
    page.fill("#model-filter", "zephyr gemini")
    assert shown_values(page) == []
    assert page.locator("#model-picker-empty").is_visible()

    # Keyboard: the first match is active, ↓ moves, Enter picks it and closes; the <select> follows.
    page.fill("#model-filter", "catalogue model 12")
    first, second = shown_values(page)[:2]
    assert page.get_attribute("#model-filter", "aria-activedescendant") == page.locator(SHOWN).first.get_attribute("id")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert page.locator("#model-picker-panel").is_hidden()
    assert page.input_value("#model-select") == second != first
    assert button.inner_text().startswith(in_thread(lambda: AIModel.objects.get(slug=second).name))
    assert page.evaluate("document.activeElement.id") == "model-picker-button"

    # Escape closes without changing anything; ↓ on the button opens it again at the chosen model.
    page.keyboard.press("ArrowDown")
    assert page.locator("#model-picker-panel").is_visible()
    assert page.locator(".picker-option.active").get_attribute("data-value") == second
    page.keyboard.type("zephyr")
    page.keyboard.press("Escape")
    assert page.locator("#model-picker-panel").is_hidden()
    assert page.input_value("#model-select") == second
    assert page.problems == []


def test_the_chosen_model_writes_the_reply_and_is_remembered(catalogue_of_300, upstream, user, chat_page, settings):
    settings.CHAT_TITLE_MODEL = "auto"  # and a free model titles the chat (chat.titles)
    page = chat_page
    open_new_chat(page)
    page.click("#model-picker-button")
    page.fill("#model-filter", "zephyr")
    page.locator(SHOWN).click()  # by pointer too
    assert page.input_value("#model-select") == "cat/zephyr"
    page.fill("#message-input", "Hello there")
    page.press("#message-input", "Enter")
    page.locator(".message.assistant.status-complete").wait_for()
    assert upstream.requests[0]["body"]["model"] == "zephyr"
    reply_model = in_thread(lambda: Message.objects.get(role="assistant").model.slug)
    assert reply_model == "cat/zephyr"
    # The title arrives live in the header and the tab (after the reply, from a free model).
    title = clean_title("".join(REPLY_WORDS))
    page.locator("#conversation-heading", has_text=title).wait_for()
    page.wait_for_function("title => document.title === `${title} · AI Hub`", arg=title)
    assert page.locator(".conversation-title").inner_text() == title
    assert upstream.requests[-1]["body"]["model"] == "model-000"  # auto's free model: the first of the catalogue
    page.goto(f"{page.base}/chat/")  # a new chat starts with the last model used
    assert page.locator("#model-picker-button").inner_text().startswith("Zephyr Vision Pro")
    assert page.problems == []
