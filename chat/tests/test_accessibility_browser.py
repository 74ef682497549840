"""axe-core (axe-playwright-python) on the pages people use every day (the chat and, reached from it, usage,
API keys, billing and the account), in headless Chromium at a laptop's and a phone's size: no serious or
critical violation. The chat's own ASGI server (websockets) serves them all."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from aihub.testing import chromium_page, session_key_for
from billing.tests.conftest import usage_row
from chat.models import AIModel, Conversation, Message, Provider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
BLOCKING = {"serious", "critical"}


@pytest.fixture
def lived_in(user, upstream):
    """An account with a conversation (code block, a stopped reply), a model to pick, usage and an API key."""
    from accounts.api_keys import issue_key

    model = AIModel.objects.create(
        slug="fake/model", provider=Provider.OPENAI_COMPAT, upstream_id="m", name="Fake model", context_length=8192
    )
    conversation = Conversation.objects.create(user=user, title="Plans", model=model, pinned=True)
    Message.objects.create(conversation=conversation, role="user", content="Show me code")
    Message.objects.create(
        conversation=conversation, role="assistant", content="Here:\n\n```python\nprint(1)\n```\n", model=model
    )
    Message.objects.create(conversation=conversation, role="assistant", content="Half", status="stopped")
    Conversation.objects.create(user=user, title="Another chat")
    usage_row(user, model="fake/model")
    issue_key(user, "laptop")
    return conversation


@pytest.fixture(params=[LAPTOP, PHONE], ids=["laptop", "phone"])
def page(request, asgi_server, chromium_path, user, lived_in):
    with chromium_page(
        chromium_path, viewport=request.param, base_url=asgi_server, session_key=session_key_for(user)
    ) as page:
        yield page


def blocking_violations(page, path: str | None = None) -> list[str]:
    """axe's serious and critical violations on the page at `path` (None: as it is now), one line per element."""
    if path is not None:
        page.goto(f"{page.base}{path}")
        page.wait_for_load_state("networkidle")
    results = Axe().run(page)
    return [
        f"{path or page.url}: {v['id']} ({v['impact']}) {node['target']}: {node['failureSummary'][:240]}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
        for node in v["nodes"][:5]
    ]


def test_no_serious_or_critical_violation_on_the_pages_used_every_day(page, lived_in):
    found = []
    for path in (
        "/chat/",
        f"/chat/{lived_in.pk}/",
        "/usage/",
        "/usage/activity/",
        "/account/api-keys/",
        "/billing/",
        "/account/",
    ):
        found += blocking_violations(page, path)
    # The open menus and the model picker's list too.
    page.goto(f"{page.base}/chat/{lived_in.pk}/")
    page.click("#model-picker-button")
    found += blocking_violations(page)
    assert not found, "\n".join(found)
    assert page.problems == []


def tab_stops(page, presses: int) -> list[str]:
    """What Tab reaches, in order: each element by its id, else what it is part of."""
    stops = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        stops.append(
            page.evaluate(
                """() => { const e = document.activeElement;
                 if (e.id) return e.id;
                 if (e.closest('.conversation-actions')) return 'conversation-menu';
                 return e.className || e.tagName.toLowerCase(); }"""
            )
        )
    return stops


def test_the_chat_page_is_usable_by_keyboard_alone(page, lived_in):
    page.goto(f"{page.base}/chat/{lived_in.pk}/")
    phone = page.viewport_size["width"] < 760
    controls = {"model-picker-button", "message-input", "send-button", "shortcuts-button"}
    sidebar = {"new-chat", "conversation-search", "conversation-menu", f"conversation-{lived_in.pk}-title"}
    page.locator("body").focus()
    stops = tab_stops(page, 45)
    assert controls <= set(stops)
    if phone:  # the closed drawer takes no Tab stops; ☰ opens it, and then its chats are reached
        assert not sidebar & set(stops) and "sidebar-toggle" in stops
        page.focus("#sidebar-toggle")
        page.keyboard.press("Enter")
        assert page.evaluate("document.body.classList.contains('sidebar-open')")
        stops = tab_stops(page, 10)
    assert sidebar <= set(stops)
    # The model picker by keyboard: open, filter, pick.
    page.focus("#model-picker-button")
    page.keyboard.press("Enter")
    page.keyboard.type("fake")
    page.keyboard.press("Enter")
    assert page.input_value("#model-select") == "fake/model"
    # A chat's ⋯ menu by keyboard: Enter opens it, its Pin is the next stops away.
    page.focus(f"#conversation-{lived_in.pk} .conversation-actions summary")
    page.keyboard.press("Enter")
    assert page.locator(f"#conversation-{lived_in.pk} .conversation-menu").is_visible()
    assert page.problems == []
