"""The chat page as people use it all day, in headless Chromium at a laptop's and a phone's size, against
the real ASGI application (asgi_server) and the fake upstream."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection, connections

from aihub.testing import chromium_page, session_key_for
from billing.models import UsageRecord
from chat.models import AIModel, Conversation, Provider

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def in_thread(query):
    """Run an ORM query from a test whose thread runs Playwright's event loop (where Django forbids it)."""

    def run():
        try:
            return query()
        finally:
            connections.close_all()  # this thread's connection, or the test database outlives the test

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def slow_model(upstream):
    return AIModel.objects.create(slug="fake/slow", provider=Provider.OPENAI_COMPAT, upstream_id="slow", name="Slow")


@pytest.fixture(params=[LAPTOP, PHONE], ids=["laptop", "phone"])
def chat_page(request, asgi_server, chromium_path, user):
    """A logged-in page at a laptop's and at a phone's size; `page.base` is the server."""
    with chromium_page(
        chromium_path,
        viewport=request.param,
        base_url=asgi_server,
        session_key=session_key_for(user),
        permissions=("clipboard-read", "clipboard-write"),
    ) as page:
        yield page


def open_new_chat(page):
    page.goto(f"{page.base}/chat/")
    page.wait_for_function("() => document.getElementById('connection-status').dataset.state === 'open'")


def show_sidebar(page):
    """On a phone the sidebar is a drawer behind ☰."""
    if page.viewport_size["width"] < 760:
        page.click("#sidebar-toggle")


def test_a_refused_message_stays_in_the_composer(slow_model, chat_page):
    page = chat_page
    open_new_chat(page)
    too_long = "word " * 6_401  # 32,005 characters: over the limit
    page.fill("#message-input", too_long)
    page.press("#message-input", "Enter")
    page.locator("#chat-error", has_text="That message is too long").wait_for()
    assert page.input_value("#message-input") == too_long
    assert page.locator(".message.user").count() == 0

    page.select_option("#model-select", "fake/slow")
    page.fill("#message-input", "A short one")
    page.press("#message-input", "Enter")
    page.locator(".message.user", has_text="A short one").wait_for()
    page.wait_for_function("() => document.getElementById('message-input').value === ''")
    assert page.locator("#chat-error").inner_text() == ""  # the banner cleared by the next success
    page.locator("#chat-status.busy").wait_for()  # the start reaches every tab through the channel layer
    page.keyboard.press("Escape")
    page.locator(".badge.stopped").wait_for()
    assert page.problems == []


def test_send_becomes_stop_in_the_same_place_and_escape_stops(slow_model, chat_page):
    page = chat_page
    open_new_chat(page)
    page.select_option("#model-select", "fake/slow")
    send_box = page.locator("#send-button").bounding_box()
    assert not page.locator("#stop-button").is_visible()
    page.fill("#message-input", "Tell me a long story")
    page.press("#message-input", "Enter")
    page.locator(".message.assistant .content.streaming:not(:empty)").wait_for()
    assert not page.locator("#send-button").is_visible()
    stop_box = page.locator("#stop-button").bounding_box()
    assert abs(stop_box["x"] + stop_box["width"] - send_box["x"] - send_box["width"]) < 2
    assert abs(stop_box["y"] - send_box["y"]) < 2
    page.keyboard.press("Escape")
    page.locator(".badge.stopped", has_text="Stopped — partial reply kept").wait_for()
    assert page.locator("#send-button").is_visible() and not page.locator("#stop-button").is_visible()
    assert page.problems == []


def test_three_new_chat_clicks_store_no_conversation(user, chat_page):
    page = chat_page
    open_new_chat(page)
    for _ in range(3):
        show_sidebar(page)
        page.click("#new-chat")
        page.wait_for_url(f"{page.base}/chat/")
        page.locator("#message-input").wait_for()
    assert page.locator("#conversation-list").inner_text().strip() == "No conversations yet."
    assert in_thread(lambda: Conversation.objects.filter(user=user).count()) == 0
    assert page.problems == []


@pytest.fixture
def steady_model(upstream):
    """Replies in about 2.4 s (12 pieces 0.2 s apart)."""
    return AIModel.objects.create(
        slug="fake/steady", provider=Provider.OPENAI_COMPAT, upstream_id="steady", name="Steady"
    )


STEADY_TEXT = "Hello from the fake upstream." * 2
REPLY = ".message.assistant .content"


def send_and_see_it_start(page, text: str, model: str):
    page.select_option("#model-select", model)
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")
    page.locator(".message.assistant .content.streaming:not(:empty)").wait_for()
    page.wait_for_url(f"{page.base}/chat/*/")


def test_a_reply_continues_through_a_reload_and_is_complete_after_it(steady_model, chat_page):
    page = chat_page
    open_new_chat(page)
    send_and_see_it_start(page, "Take your time", "fake/steady")
    page.reload()
    # The reopened page shows the text so far and the reply still being written, then all of it.
    page.wait_for_function(
        "() => { const r = document.querySelector('.message.assistant .content.streaming');"
        " return r && r.textContent.startsWith('Hello'); }"
    )
    assert page.locator("#chat-status.busy").count() == 1
    page.locator(".message.assistant.status-complete").wait_for(timeout=10_000)
    assert page.locator(REPLY).last.inner_text().strip() == STEADY_TEXT
    assert page.locator("#send-button").is_visible()
    assert page.problems == []


def test_two_tabs_stream_one_reply(steady_model, chat_page):
    first = chat_page
    open_new_chat(first)
    send_and_see_it_start(first, "Both of you", "fake/steady")
    second = first.context.new_page()
    second.problems = []
    second.on("console", lambda m: m.type == "error" and second.problems.append(m.text))
    second.goto(first.url)
    for page in (first, second):
        page.locator(".message.assistant.status-complete").wait_for(timeout=10_000)
        assert page.locator(REPLY).last.inner_text().strip() == STEADY_TEXT
    assert first.problems == [] and second.problems == []


@pytest.mark.skipif(
    connection.vendor != "postgresql" or not settings.REDIS_URL,
    reason="two server processes need a shared PostgreSQL database and Redis as the channel layer",
)
def test_a_reload_served_by_the_other_process_shows_the_stream_and_stops_it(slow_model, servers, user, chat_page):
    first, second = servers(2, settings.REDIS_URL)
    page = chat_page  # its session cookie is for 127.0.0.1, whatever the port
    page.goto(f"{first}/chat/")
    page.wait_for_function("() => document.getElementById('connection-status').dataset.state === 'open'")
    page.select_option("#model-select", "fake/slow")
    page.fill("#message-input", "Tell me a long story")
    page.press("#message-input", "Enter")
    page.locator(".message.assistant .content.streaming:not(:empty)").wait_for()
    page.wait_for_url(f"{first}/chat/*/")

    page.goto(second + urlparse(page.url).path)  # the reload lands on the other process
    streaming = "document.querySelector('.message.assistant .content.streaming')"
    page.wait_for_function(f"() => {streaming} && {streaming}.textContent.startsWith('Hello from')")
    so_far = page.evaluate(f"() => {streaming}.textContent.length")
    page.wait_for_function(f"() => {streaming}.textContent.length > {so_far}")  # and it keeps coming
    page.click("#stop-button")
    page.locator(".badge.stopped", has_text="Stopped — partial reply kept").wait_for()
    records = in_thread(lambda: list(UsageRecord.objects.filter(user=user).values_list("status", flat=True)))
    assert records == [UsageRecord.Status.STOPPED]
    assert page.problems == []


CODE = 'def greet(name):\n    return f"Hello {name} <3"\n'


@pytest.fixture
def chat_with_code(user):
    """A conversation whose reply holds a Python code block."""
    from chat.models import Message

    conversation = Conversation.objects.create(user=user, title="Code")
    Message.objects.create(conversation=conversation, role="user", content="Write a greeting function")
    Message.objects.create(conversation=conversation, role="assistant", content=f"Here:\n\n```python\n{CODE}```\n")
    return conversation


def test_a_code_block_is_highlighted_and_copy_puts_its_text_on_the_clipboard(chat_with_code, chat_page):
    page = chat_page
    page.goto(f"{page.base}/chat/{chat_with_code.pk}/")
    block = page.locator(".message.assistant .code-block")
    assert block.locator(".code-lang").inner_text() == "python"
    keyword = block.locator("pre span.k", has_text="def")
    assert keyword.count() == 1
    assert keyword.evaluate("e => getComputedStyle(e).color") != block.locator("pre").evaluate(
        "e => getComputedStyle(e).color"
    )  # coloured unlike plain code
    block.locator("button.copy-code").click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()).length > 0")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    assert block.locator("button.copy-code").inner_text() == "Copied"

    page.locator(".message.user .message-tools button[data-copy-target]").click()  # every message has its copy button
    page.wait_for_function("async () => (await navigator.clipboard.readText()) === 'Write a greeting function'")
    assert page.problems == []


@pytest.fixture
def quick_model(upstream):
    return AIModel.objects.create(slug="fake/quick", provider=Provider.OPENAI_COMPAT, upstream_id="quick", name="Quick")


def test_the_system_prompt_reaches_the_upstream_and_stays_with_the_chat(quick_model, upstream, chat_page):
    page = chat_page
    open_new_chat(page)
    page.select_option("#model-select", "fake/quick")
    page.click(".system-prompt summary")
    page.fill("#system-prompt", "Answer like a pirate.")
    page.fill("#message-input", "Where is the treasure?")
    page.press("#message-input", "Enter")
    page.locator(".message.assistant.status-complete").wait_for()
    received = upstream.requests[-1]["body"]["messages"]  # what the fake upstream was sent
    assert received[0] == {"role": "system", "content": "Answer like a pirate."}
    assert received[-1] == {"role": "user", "content": "Where is the treasure?"}
    page.reload()
    assert page.input_value("#system-prompt") == "Answer like a pirate."
    assert page.problems == []


@pytest.fixture
def phone_page(asgi_server, chromium_path, user):
    with chromium_page(chromium_path, viewport=PHONE, base_url=asgi_server, session_key=session_key_for(user)) as page:
        yield page


def test_the_phone_drawer_closes_on_a_tap_beside_it_its_close_button_and_escape(phone_page):
    page = phone_page
    open_new_chat(page)
    sidebar = page.locator("#sidebar")

    def drawer_is_open() -> bool:
        return page.evaluate("document.body.classList.contains('sidebar-open')")

    for close in ("backdrop", "button", "escape"):
        page.click("#sidebar-toggle")
        page.wait_for_function("() => document.body.classList.contains('sidebar-open')")
        assert page.locator("#sidebar-toggle").get_attribute("aria-expanded") == "true"
        page.wait_for_timeout(200)  # the slide-in
        assert sidebar.bounding_box()["x"] == 0
        if close == "backdrop":
            page.mouse.click(370, 400)  # beside the drawer (300 px wide)
        elif close == "button":
            page.click("#drawer-close")
        else:
            page.keyboard.press("Escape")
        page.wait_for_function("() => !document.body.classList.contains('sidebar-open')")
        assert not drawer_is_open()
    assert page.problems == []


@pytest.mark.parametrize(
    "link, path", [("Usage", "/usage/"), ("API keys", "/account/api-keys/"), ("Billing", "/billing/")]
)
def test_every_page_is_reached_from_a_phone_and_fits_its_width(link, path, phone_page):
    page = phone_page
    open_new_chat(page)
    assert not page.locator(".topbar nav a.secondary").first.is_visible()  # no room for them all
    page.click("#account-menu summary")
    page.locator("#account-menu .account-menu-items a", has_text=link).click()
    page.wait_for_url(f"{page.base}{path}")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # tables and charts fit
    assert page.problems == []


def background_of(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


LIGHT_BG, DARK_BG = "rgb(246, 247, 249)", "rgb(17, 19, 24)"


def test_dark_mode_follows_the_device_then_the_saved_choice_charts_included(chat_page):
    page = chat_page
    page.emulate_media(color_scheme="dark")
    open_new_chat(page)
    assert background_of(page) == DARK_BG  # auto: as the device
    page.emulate_media(color_scheme="light")
    assert background_of(page) == LIGHT_BG
    with page.expect_navigation():
        page.click("#theme-switch")  # auto -> dark, saved
    assert background_of(page) == DARK_BG
    page.goto(f"{page.base}/usage/")
    page.wait_for_load_state("networkidle")
    assert background_of(page) == DARK_BG
    assert page.evaluate("Chart.defaults.color") == "#a0a6b3"  # the charts' text in the dark theme's colour
    with page.expect_navigation():
        page.click("#theme-switch")  # dark -> light, even on a dark device
    page.emulate_media(color_scheme="dark")
    page.wait_for_load_state("networkidle")
    assert background_of(page) == LIGHT_BG
    assert page.evaluate("Chart.defaults.color") == "#636878"  # the light theme's --muted
    assert page.problems == []


def test_a_rename_updates_the_heading_and_the_tab_title_at_once(chat_with_code, chat_page):
    page = chat_page
    page.goto(f"{page.base}/chat/{chat_with_code.pk}/")
    show_sidebar(page)
    item = page.locator(f"#conversation-{chat_with_code.pk}")
    item.locator("summary").click()  # the ⋯ menu, shown on touch screens too
    item.locator("input[name=title]").fill("Greeting helpers")
    item.locator("button", has_text="Rename").click()
    page.locator("#conversation-heading", has_text="Greeting helpers").wait_for()
    page.wait_for_function("() => document.title === 'Greeting helpers · AI Hub'")
    assert page.problems == []


def test_question_mark_lists_the_shortcuts_and_escape_closes_the_list(chat_page):
    page = chat_page
    open_new_chat(page)
    page.locator("#message-input").type("?")  # typed in the message: just a character
    assert not page.locator("#shortcuts").is_visible()
    page.locator("#message-input").fill("")
    page.locator("#conversation-heading").click()  # out of the composer
    page.keyboard.press("?")
    dialog = page.locator("#shortcuts")
    dialog.wait_for()
    assert "Shift + Enter" in dialog.inner_text() and "Stop the reply" in dialog.inner_text()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.click("#shortcuts-button")  # the same list by mouse or keyboard focus
    dialog.wait_for()
    page.click("#shortcuts-close")
    dialog.wait_for(state="hidden")
    assert page.problems == []
