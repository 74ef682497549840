"""Files in the chat in a real browser, against the ASGI application and the fake upstream: documents whose
text reaches the model, an image sent as an image part to a model that takes images, and refused (nothing
stored) for a text-only one."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from aihub.testing import chromium_page, session_key_for
from billing.metering import count_text_tokens
from chat.attachments import document_block
from chat.models import AIModel, Attachment, Provider
from chat.tests.sample_files import PNG, pdf_with_text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def in_thread(query):
    """An ORM query from a test whose thread runs Playwright's event loop (where Django forbids it)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(query).result()


@pytest.fixture
def page(asgi_server, chromium_path, user, upstream, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    AIModel.objects.create(slug="fake/plain", provider=Provider.OPENAI_COMPAT, upstream_id="plain", name="Plain")
    AIModel.objects.create(
        slug="fake/vision", provider=Provider.OPENAI_COMPAT, upstream_id="vision", name="Vision", supports_images=True
    )
    with chromium_page(
        chromium_path, viewport={"width": 1280, "height": 900}, base_url=asgi_server, session_key=session_key_for(user)
    ) as page:
        page.goto(f"{asgi_server}/chat/")
        page.wait_for_function("() => document.getElementById('connection-status').dataset.state === 'open'")
        yield page


def attach(page, name: str, data: bytes, mime: str) -> None:
    page.set_input_files("#attachment-input", files=[{"name": name, "mimeType": mime, "buffer": data}])


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def test_a_text_file_and_a_pdf_reach_the_model(page, upstream):
    page.select_option("#model-select", "fake/plain")
    attach(page, "notes.txt", b"The launch code is 0000.", "text/plain")
    attach(page, "invoice.pdf", pdf_with_text("The invoice number is 4711"), "application/pdf")
    chips = page.locator("#attachment-chips .attachment-chip:not(.uploading)")
    chips.nth(1).wait_for()
    expected = [  # what each file adds to the prompt: its text, between the lines that name it
        count_text_tokens(document_block("notes.txt", "The launch code is 0000.")),
        count_text_tokens(document_block("invoice.pdf", "The invoice number is 4711")),
    ]
    assert [chip.locator(".attachment-tokens").inner_text() for chip in chips.all()] == [
        f"{n} tokens" for n in expected
    ]
    send(page, "What do these files say?")
    page.locator(".message.assistant.status-complete").wait_for()
    sent = upstream.requests[-1]["body"]["messages"][-1]["content"]
    assert "What do these files say?" in sent
    assert "The launch code is 0000." in sent and "The invoice number is 4711" in sent
    assert page.locator("#attachment-chips .attachment-chip").count() == 0  # sent: the composer is clear
    assert page.locator(".message.user .message-attachments li").count() == 2
    assert page.problems == []


def estimated_tokens(page) -> int:
    line = page.locator("#composer-estimate").text_content()
    match = re.match(r"≈ ([\d,]+) tokens in", line)
    assert match, line
    return int(match.group(1).replace(",", ""))


def estimate_reads(page, tokens: int) -> None:
    """Wait until the composer's estimate line counts `tokens` tokens in."""
    expected = f"≈ {tokens:,} tokens in"
    page.wait_for_function(
        "(text) => document.getElementById('composer-estimate').textContent.startsWith(text)", arg=expected
    )


def test_the_estimate_grows_by_a_file_as_soon_as_it_is_attached(page, upstream):
    page.select_option("#model-select", "fake/plain")
    page.fill("#message-input", "What does the file say")
    page.wait_for_function("() => document.getElementById('composer-estimate').textContent.includes('tokens in')")
    before = estimated_tokens(page)
    attach(page, "notes.txt", b"The launch code is 0000, and the spare key is under the third stone.", "text/plain")
    chip = page.locator("#attachment-chips .attachment-chip:not(.uploading)")
    chip.wait_for()
    added = int(chip.get_attribute("data-tokens"))
    notes = "The launch code is 0000, and the spare key is under the third stone."
    assert added == count_text_tokens(document_block("notes.txt", notes))
    assert chip.locator(".attachment-tokens").inner_text() == f"{added} tokens"  # shown before sending
    estimate_reads(page, before + added)
    chip.locator(".attachment-remove").click()  # removed: the estimate is the message's alone again
    estimate_reads(page, before)
    assert in_thread(lambda: Attachment.objects.count()) == 0
    assert page.problems == []


def test_an_image_goes_to_a_vision_model_as_an_image_part(page, upstream):
    page.select_option("#model-select", "fake/vision")
    attach(page, "cat.png", PNG, "image/png")
    page.locator("#attachment-chips .attachment-chip.image").wait_for()
    send(page, "What is in this picture?")
    page.locator(".message.assistant.status-complete").wait_for()
    text, image = upstream.requests[-1]["body"]["messages"][-1]["content"]
    assert text == {"type": "text", "text": "What is in this picture?"}
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
    assert page.problems == []


def test_an_image_for_a_text_only_model_is_refused_and_nothing_stored(page, upstream, settings):
    page.select_option("#model-select", "fake/plain")
    attach(page, "cat.png", PNG, "image/png")
    page.locator("#chat-error", has_text="takes text only").wait_for()
    assert page.locator("#attachment-chips .attachment-chip").count() == 0
    assert in_thread(lambda: Attachment.objects.count()) == 0
    media = settings.MEDIA_ROOT
    assert not os.path.exists(media) or [n for _, _, names in os.walk(media) for n in names] == []
    assert upstream.requests == []
    page.problems.clear()  # the refusal is a 422 by design
