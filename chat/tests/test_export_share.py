"""Exports (Markdown, JSON, the ZIP of all) and read-only share links, over HTTP with the test client."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.test import Client

from aihub.testing import logged_in_client
from chat.models import Conversation, Message, SharedLink

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(two_message_chat):
    return two_message_chat


def parse_markdown(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The title and (heading, body) of each message of an exported Markdown file."""
    title = text.splitlines()[0].removeprefix("# ")
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    messages = []
    for section in sections:
        heading, _, rest = section.partition("\n")
        body = rest.strip().split("\n\n", 1)[1]  # after the time line
        messages.append((heading, body.strip()))
    return title, messages


def test_markdown_export_parses_back_to_the_conversation(logged_in, chat):
    response = logged_in.get(f"/chat/{chat.pk}/export.md")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"] == f'attachment; filename="{chat.pk}-plans-for-tuesday.md"'
    title, messages = parse_markdown(response.content.decode())
    assert title == "Plans for Tuesday"
    assert messages == [("You", "What is 2 + 2?"), ("Assistant (Fake M)", "It is **4**.")]


def test_json_export_parses_back_to_the_conversation(logged_in, chat):
    response = logged_in.get(f"/chat/{chat.pk}/export.json")
    assert response.status_code == 200
    record = json.loads(response.content)
    assert record["title"] == "Plans for Tuesday"
    assert [(m["role"], m["content"], m["model"]) for m in record["messages"]] == [
        ("user", "What is 2 + 2?", None),
        ("assistant", "It is **4**.", "fake/m"),
    ]


def test_zip_of_all_conversations_holds_each_as_markdown_and_json(logged_in, user, chat, other_user):
    Conversation.objects.create(user=user, title="Second")
    Conversation.objects.create(user=other_user, title="Not yours")
    response = logged_in.get("/chat/export.zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = sorted(archive.namelist())
    assert len(names) == 4
    records = [json.loads(archive.read(n)) for n in names if n.startswith("json/")]
    assert sorted(r["title"] for r in records) == ["Plans for Tuesday", "Second"]
    markdown = archive.read(f"markdown/{chat.pk}-plans-for-tuesday.md").decode()
    assert parse_markdown(markdown)[1][1] == ("Assistant (Fake M)", "It is **4**.")


def test_the_zip_costs_the_same_few_queries_for_many_conversations(
    logged_in, user, chat, django_assert_max_num_queries
):
    for n in range(10):
        c = Conversation.objects.create(user=user, title=f"c{n}")
        Message.objects.create(conversation=c, role="user", content="hi")
    with django_assert_max_num_queries(8):  # session, user, conversations, messages with their models
        assert logged_in.get("/chat/export.zip").status_code == 200


def test_another_user_cannot_export_a_conversation(other_user, chat):
    mallory = logged_in_client(other_user)
    assert mallory.get(f"/chat/{chat.pk}/export.md").status_code == 404
    assert mallory.get(f"/chat/{chat.pk}/export.json").status_code == 404
    assert b"Plans for Tuesday" not in mallory.get("/chat/export.zip").content


def test_exports_need_a_login(chat):
    response = Client().get(f"/chat/{chat.pk}/export.json")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_share_link_shows_a_snapshot_without_the_owner_to_anyone(logged_in, chat, user):
    response = logged_in.post(f"/chat/{chat.pk}/share/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    link = SharedLink.objects.get()
    assert len(link.token) >= 43  # 256 random bits
    assert link.get_absolute_url() in response.content.decode()
    Message.objects.create(conversation=chat, role="user", content="added after sharing")

    page = Client().get(link.get_absolute_url())  # logged out
    assert page.status_code == 200
    html = page.content.decode()
    assert "Plans for Tuesday" in html and "It is <strong>4</strong>." in html
    assert "added after sharing" not in html  # a snapshot
    assert user.email not in html and user.email not in json.dumps(link.snapshot)
    assert '<meta name="robots" content="noindex' in html
    assert page["X-Robots-Tag"].startswith("noindex")


def test_a_revoked_link_answers_404(logged_in, chat):
    logged_in.post(f"/chat/{chat.pk}/share/")
    link = SharedLink.objects.get()
    assert b"shared-link-" in logged_in.get("/account/").content  # listed on the account page
    assert logged_in.post(f"/chat/shares/{link.pk}/revoke/").status_code == 302
    assert Client().get(link.get_absolute_url()).status_code == 404
    assert logged_in.get(link.get_absolute_url()).status_code == 404


def test_nobody_else_can_share_or_revoke(other_user, logged_in, chat):
    mallory = logged_in_client(other_user)
    assert mallory.post(f"/chat/{chat.pk}/share/").status_code == 404
    logged_in.post(f"/chat/{chat.pk}/share/")
    link = SharedLink.objects.get()
    assert mallory.post(f"/chat/shares/{link.pk}/revoke/").status_code == 404
    assert SharedLink.objects.filter(pk=link.pk).exists()
    assert b"Plans for Tuesday" not in mallory.get("/account/").content


def test_an_unshared_conversation_is_not_reachable_by_anyone_else(other_user, chat):
    assert logged_in_client(other_user).get(f"/chat/{chat.pk}/").status_code == 404
    assert Client().get("/s/not-a-real-token/").status_code == 404


def test_share_links_go_with_their_conversation(logged_in, chat):
    logged_in.post(f"/chat/{chat.pk}/share/")
    link = SharedLink.objects.get()
    logged_in.post(f"/chat/{chat.pk}/delete/")
    assert Client().get(link.get_absolute_url()).status_code == 404
