"""Uploads over HTTP (the test client): accepted types and their text, the plan's limits (nothing stored
when refused), images only for models that take them, serving to the owner only (never HTML or SVG
inline), deletion with the conversation."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from aihub.testing import logged_in_client
from billing.models import Plan
from chat import attachments
from chat.models import AIModel, Attachment, Conversation, Message, Provider
from chat.tests.sample_files import PNG, docx_with_text, pdf_with_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def stored_files(media) -> list[str]:
    return [name for _, _, names in os.walk(media) for name in names]


@pytest.fixture
def models():
    text_only = AIModel.objects.create(slug="fake/text", provider=Provider.OPENAI_COMPAT, upstream_id="t", name="Text")
    vision = AIModel.objects.create(
        slug="fake/vision", provider=Provider.OPENAI_COMPAT, upstream_id="v", name="Vision", supports_images=True
    )
    return text_only, vision


def upload(client, name: str, data: bytes, model: str = "fake/text"):
    return client.post("/chat/attachments/", {"file": SimpleUploadedFile(name, data), "model": model})


@pytest.mark.parametrize(
    ("name", "data", "text"),
    [
        ("notes.md", b"# Notes\nThe launch code is 0000.", "# Notes\nThe launch code is 0000."),
        ("data.csv", b"a,b\n1,2\n", "a,b\n1,2\n"),
        ("report.pdf", pdf_with_text("The invoice number is 4711"), "The invoice number is 4711"),
        ("letter.docx", docx_with_text("Dear reader, hello."), "Dear reader, hello."),
    ],
)
def test_documents_are_stored_with_their_text_and_token_count(logged_in, user, media, models, name, data, text):
    response = upload(logged_in, name, data)
    assert response.status_code == 200
    attachment = Attachment.objects.get()
    assert (attachment.user, attachment.name, attachment.kind, attachment.text) == (user, name, "document", text)
    assert attachment.tokens > 0 and f"{attachment.tokens} tokens" in response.content.decode()
    assert name not in attachment.file.name  # a random path, nothing of the uploaded name
    assert len(stored_files(media)) == 1


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("tool.exe", b"MZ\x90\x00binary", "not accepted"),
        ("latin.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
        ("broken.pdf", b"%PDF-1.4 not really", "could not be read"),
        ("empty.txt", b"   ", "no text"),
    ],
)
def test_wrong_files_are_refused_and_nothing_is_stored(logged_in, media, models, name, data, why):
    response = upload(logged_in, name, data)
    assert response.status_code == 422 and why in response.content.decode()
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_the_plans_size_and_storage_limits_hold(free_user, media, models):
    client = logged_in_client(free_user)
    Plan.objects.filter(slug="free").update(max_upload_bytes=100, upload_storage_bytes=150)
    too_big = upload(client, "big.txt", b"x" * 101)
    assert too_big.status_code == 422 and "takes files up to" in too_big.content.decode()
    assert upload(client, "a.txt", b"x" * 100).status_code == 200
    full = upload(client, "b.txt", b"y" * 60)
    assert full.status_code == 422 and "would take more than the Free plan" in full.content.decode()
    assert Attachment.objects.count() == 1 and len(stored_files(media)) == 1


def test_an_image_needs_a_model_that_takes_images(logged_in, media, models):
    refused = upload(logged_in, "cat.png", PNG, "fake/text")
    assert refused.status_code == 422 and "takes text only" in refused.content.decode()
    assert not Attachment.objects.exists() and stored_files(media) == []
    assert upload(logged_in, "cat.png", PNG, "fake/vision").status_code == 200
    image = Attachment.objects.get()
    assert (image.kind, image.content_type) == ("image", "image/png")


def test_files_per_message_and_the_model_are_checked_again_at_send(user, media, models):
    client = logged_in_client(user)
    Plan.objects.filter(slug="pro").update(max_files_per_message=1)
    upload(client, "a.txt", b"one")
    upload(client, "b.png", PNG, "fake/vision")
    ids = list(Attachment.objects.values_list("pk", flat=True))
    with pytest.raises(attachments.UploadRefused, match="up to 1 files"):
        attachments.to_send(user, ids, models[1])
    with pytest.raises(attachments.UploadRefused, match="takes text only"):
        attachments.to_send(user, ids[1:], models[0])
    assert [a.name for a in attachments.to_send(user, ids[1:], models[1])] == ["b.png"]


def test_only_the_owner_gets_an_attachment(logged_in, other_user, media, models):
    upload(logged_in, "secret.txt", b"the vault code is 1234")
    attachment = Attachment.objects.get()
    response = logged_in.get(attachment.get_absolute_url())
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"the vault code is 1234"
    assert logged_in_client(other_user).get(attachment.get_absolute_url()).status_code == 404
    assert logged_in_client(other_user).post(f"/chat/attachments/{attachment.pk}/remove/").status_code == 404


@pytest.mark.parametrize("name", ["page.html", "drawing.svg"])
def test_html_and_svg_are_never_served_inline(logged_in, media, models, name):
    upload(
        logged_in, name, b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(1)</script></svg>"
    )
    response = logged_in.get(Attachment.objects.get().get_absolute_url())
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response["Content-Security-Policy"]


def test_an_image_is_shown_inline_to_its_owner(logged_in, media, models):
    upload(logged_in, "cat.png", PNG, "fake/vision")
    response = logged_in.get(Attachment.objects.get().get_absolute_url())
    assert response["Content-Type"] == "image/png" and response["Content-Disposition"].startswith("inline")


def test_attachments_go_with_their_conversation(logged_in, user, media, models):
    upload(logged_in, "notes.txt", b"keep me")
    conversation = Conversation.objects.create(user=user, title="With a file")
    message = Message.objects.create(conversation=conversation, role="user", content="see file")
    attachments.attach(list(Attachment.objects.all()), message)
    assert len(stored_files(media)) == 1
    logged_in.post(f"/chat/{conversation.pk}/delete/")
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_an_edited_message_keeps_its_files_and_they_go_with_the_last_row(logged_in, user, media, models):
    from chat.conversations import add_user_message, history_for

    upload(logged_in, "notes.txt", b"The launch code is 0000.")
    conversation = Conversation.objects.create(user=user, title="With a file")
    message = Message.objects.create(conversation=conversation, role="user", content="What is the code?")
    attachments.attach(list(Attachment.objects.all()), message)
    Message.objects.create(conversation=conversation, role="assistant", content="0000")

    edit, reply, _ = add_user_message(conversation, "What is the code, in words?", models[0], edit_of=message.pk)

    [entry] = history_for(conversation, reply)
    assert "in words?" in entry["content"] and "The launch code is 0000." in entry["content"]
    assert [a.name for a in edit.attachments.all()] == ["notes.txt"] == [a.name for a in message.attachments.all()]
    assert len(stored_files(media)) == 1  # one stored file, two rows
    edit.delete()  # a row goes: the file stays for the other one
    assert len(stored_files(media)) == 1
    logged_in.post(f"/chat/{conversation.pk}/delete/")
    assert not Attachment.objects.exists() and stored_files(media) == []


def test_the_history_carries_documents_as_text_and_images_as_parts(logged_in, user, media, models):
    from chat.conversations import history_for

    upload(logged_in, "notes.txt", b"The launch code is 0000.")
    upload(logged_in, "cat.png", PNG, "fake/vision")
    conversation = Conversation.objects.create(user=user, title="Files")
    message = Message.objects.create(conversation=conversation, role="user", content="What is in these?")
    attachments.attach(list(Attachment.objects.all()), message)
    reply = Message.objects.create(conversation=conversation, role="assistant", model=models[1], status="streaming")
    [entry] = history_for(conversation, reply)
    text, image = entry["content"]
    assert "What is in these?" in text["text"] and "The launch code is 0000." in text["text"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    reply.model = models[0]  # a text-only model is told the image's name only
    [entry] = history_for(conversation, reply)
    assert isinstance(entry["content"], str) and "not shown to this text-only model" in entry["content"]


@pytest.mark.django_db(transaction=True)  # start_exchange runs in a worker thread: a connection of its own
def test_a_new_conversation_is_started_in_three_inserts_with_the_history_history_for_reads(
    logged_in, user, media, models
):
    from asgiref.sync import async_to_sync
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.conversations import history_for, start_exchange

    model = models[1]  # takes images: the history holds both kinds of file
    upload(logged_in, "notes.txt", b"The launch code is 0000.")
    upload(logged_in, "cat.png", PNG, "fake/vision")
    files = attachments.to_send(user, [a.pk for a in Attachment.objects.all()], model)

    with CaptureQueriesContext(connection) as queries:
        exchange = async_to_sync(start_exchange)(
            user=user, conversation=None, text="What is in these?", model=model, files=files, system_prompt="Be brief."
        )

    statements = [q["sql"].split(" ", 3)[:3] for q in queries.captured_queries]
    inserts = [words[2] for words in statements if words[0] == "INSERT"]
    assert inserts == ['"chat_conversation"', '"chat_message"', '"chat_message"']
    assert [
        words[0] for words in statements if words[0] not in ("INSERT", "BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")
    ] == [
        "UPDATE",  # the files onto the message
        "SELECT",  # the owner's custom instructions
    ]
    conversation = Conversation.objects.get()
    assert (conversation.title, conversation.system_prompt, conversation.model) == (
        "What is in these?",
        "Be brief.",
        model,
    )
    assert [m.parent_id for m in conversation.messages.order_by("id")] == [None, exchange.user_message.pk]
    assert exchange.title_changed and not exchange.branched
    assert exchange.generation.messages == [{"role": "system", "content": "Be brief."}] + history_for(
        conversation, exchange.reply
    )


def test_a_live_share_link_serves_its_files_until_revoked(logged_in, user, media, models):
    from django.test import Client

    from chat.models import SharedLink

    upload(logged_in, "notes.txt", b"shared words")
    upload(logged_in, "other.txt", b"never shared")
    conversation = Conversation.objects.create(user=user, title="Shared with a file")
    message = Message.objects.create(conversation=conversation, role="user", content="see file")
    notes, other = Attachment.objects.order_by("pk")
    attachments.attach([notes], message)
    logged_in.post(f"/chat/{conversation.pk}/share/")
    link = SharedLink.objects.get()
    page = Client().get(link.get_absolute_url()).content.decode()
    assert f"/s/{link.token}/files/{notes.pk}/" in page and "notes.txt" in page
    served = Client().get(f"/s/{link.token}/files/{notes.pk}/")
    assert b"".join(served.streaming_content) == b"shared words"
    assert served["Content-Disposition"].startswith("attachment;")
    assert Client().get(f"/s/{link.token}/files/{other.pk}/").status_code == 404  # not in this conversation
    logged_in.post(f"/chat/shares/{link.pk}/revoke/")
    assert Client().get(f"/s/{link.token}/files/{notes.pk}/").status_code == 404


def test_uploads_never_sent_are_dropped_after_a_day(logged_in, media, models):
    from datetime import timedelta

    from django.utils import timezone

    upload(logged_in, "forgotten.txt", b"left behind")
    Attachment.objects.update(created_at=timezone.now() - timedelta(days=2))
    upload(logged_in, "fresh.txt", b"to send")
    assert [a.name for a in Attachment.objects.all()] == ["fresh.txt"]
    assert len(stored_files(media)) == 1


def test_auto_takes_images_only_when_a_free_vision_model_it_can_reach_is_there(settings, models):
    """A free vision model whose provider is not configured does not count: sent to 'auto', the image
    found no candidate and the API answered 502 (Schemathesis found it)."""
    settings.OPENROUTER_API_KEY = ""
    settings.OPENAI_COMPAT_BASE_URL = "http://127.0.0.1:9/v1"  # configured (never called here)
    settings.LOCAL_MODEL_ENABLED = False
    AIModel.objects.all().update(input_price_per_m=1, output_price_per_m=1)
    AIModel.objects.create(
        slug="openrouter/vision", provider=Provider.OPENROUTER, upstream_id="v", name="V", supports_images=True
    )
    assert not attachments.takes_images(None)
    AIModel.objects.filter(slug="fake/vision").update(input_price_per_m=0, output_price_per_m=0)
    assert attachments.takes_images(None)
