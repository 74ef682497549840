"""The whole chat in a real browser: headless Chromium against the real ASGI app served by daphne
(the asgi_server fixture of chat/tests/conftest.py)."""

from __future__ import annotations

import pytest

from aihub.testing import chromium_page
from chat.gateway.providers.local import CONTEXT_TOKENS, MODEL_ID
from chat.models import AIModel, Provider

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser_page(chromium_path):
    with chromium_page(chromium_path, viewport={"width": 1280, "height": 800}) as page:
        yield page


@pytest.fixture
def local_model():
    return AIModel.objects.create(
        slug="local/smollm2-135m-instruct",
        provider=Provider.LOCAL,
        upstream_id=MODEL_ID,
        name="SmolLM2 135M Instruct",
        context_length=CONTEXT_TOKENS,
        auto_priority=900,
    )


# Set before the message is sent: records whether the streaming reply had text while still streaming.
WATCH_STREAMING = """() => {
  window.sawPartialReply = false;
  new MutationObserver(() => {
    const streaming = document.querySelector('.message.status-streaming .content.streaming');
    if (streaming && streaming.textContent.length > 0) window.sawPartialReply = true;
  }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
}"""


def test_a_new_user_chats_with_the_local_model_and_finds_the_reply_after_reload(local_model, asgi_server, browser_page):
    # No ORM calls from here on: Playwright's sync API runs an event loop in this thread.
    page = browser_page
    page.goto(f"{asgi_server}/accounts/signup/")
    page.fill("input[name=email]", "newcomer@example.com")
    page.fill("input[name=password1]", "a long enough passphrase")
    page.fill("input[name=password2]", "a long enough passphrase")
    page.click("form [type=submit]")
    page.wait_for_url(f"{asgi_server}/chat/")  # the composer at once: nothing stored before a message
    page.wait_for_function("() => document.getElementById('connection-status').dataset.state === 'open'")
    page.select_option("#model-select", "local/smollm2-135m-instruct")
    assert page.locator("#chat-hint").is_visible()

    page.fill("#message-input", "first line")
    page.press("#message-input", "Shift+Enter")  # a new line, not a send
    page.keyboard.type("second line")
    assert page.input_value("#message-input") == "first line\nsecond line"
    assert page.locator(".message.user").count() == 0

    page.evaluate(WATCH_STREAMING)
    page.fill("#message-input", "Name three colours.")
    page.press("#message-input", "Enter")

    page.locator(".message.user", has_text="Name three colours.").wait_for()
    page.wait_for_url(f"{asgi_server}/chat/*/")  # stored with its first message: the chat has its address
    assert page.locator("#chat-hint").count() == 0
    assert page.input_value("#message-input") == ""
    assert page.locator("#conversation-heading").text_content() == "Name three colours."
    reply = page.locator(".message.assistant").last
    reply.locator(".meta-tokens").wait_for(timeout=120_000)
    assert page.evaluate("window.sawPartialReply"), "tokens did not arrive before the final fragment"
    assert "status-complete" in reply.get_attribute("class")
    reply_text = reply.locator(".content").inner_text().strip()
    assert reply_text
    tokens = reply.locator(".meta-tokens").inner_text()
    assert reply.locator(".meta-model").inner_text() == "SmolLM2 135M Instruct"
    assert reply.locator(".meta-cost").inner_text() == "$0"

    page.reload()
    page.locator(".message.user", has_text="Name three colours.").wait_for()
    reloaded = page.locator(".message.assistant").last
    assert reloaded.locator(".content").inner_text().strip() == reply_text
    assert reloaded.locator(".meta-tokens").inner_text() == tokens
    assert reloaded.locator(".meta-cost").inner_text() == "$0"
    assert page.locator("#conversation-list .conversation-title").first.inner_text() == "Name three colours."
    assert page.problems == []


@pytest.fixture
def many_conversations(user):
    from chat.models import Conversation

    return [Conversation.objects.create(user=user, title=f"Chat number {i}") for i in range(35)]


def test_scrolling_the_sidebar_loads_older_conversations(many_conversations, asgi_server, browser_page, user):
    page = browser_page
    page.goto(f"{asgi_server}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", "correct horse battery")
    page.click("form [type=submit]")
    page.wait_for_url(f"{asgi_server}/chat/")
    items = page.locator("#conversation-list .conversation-item")
    assert items.count() == 30
    assert items.first.inner_text().strip().startswith("Chat number 34")
    page.locator("#conversation-list .loading-more").scroll_into_view_if_needed()
    page.locator("#conversation-list", has_text="Chat number 0").wait_for()
    assert items.count() == 35
    assert page.locator("#conversation-list .loading-more").count() == 0
    assert page.problems == []
