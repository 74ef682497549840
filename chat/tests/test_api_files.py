"""Files through the REST API: POST /api/v1/files with an API key, then a message that names them."""

from __future__ import annotations

import pytest
from django.test import Client

from chat.models import AIModel, Attachment, Provider
from chat.tests.api_fixtures import issued  # noqa: F401 (fixture)
from chat.tests.sample_files import PNG, pdf_with_text

# The API views are async: their ORM work runs in other threads, which on PostgreSQL needs real commits.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(issued, settings, tmp_path):  # noqa: F811
    settings.MEDIA_ROOT = str(tmp_path)
    return Client(headers={"Authorization": f"Bearer {issued[1]}"})


@pytest.fixture
def plain(upstream):
    return AIModel.objects.create(slug="fake/plain", provider=Provider.OPENAI_COMPAT, upstream_id="plain", name="Plain")


def test_an_uploaded_pdf_is_read_and_sent_with_a_message(api, plain, upstream):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post(
        "/api/v1/files",
        {"file": SimpleUploadedFile("invoice.pdf", pdf_with_text("Invoice 4711")), "model": "fake/plain"},
    )
    assert response.status_code == 201
    file = response.json()
    assert (file["name"], file["kind"], file["tokens"] > 0) == ("invoice.pdf", "document", True)
    reply = api.post(
        "/api/v1/chat/completions",
        {"message": "What is the invoice number?", "model": "fake/plain", "attachments": [file["id"]]},
        content_type="application/json",
    )
    assert reply.status_code == 200
    assert "Invoice 4711" in upstream.requests[-1]["body"]["messages"][-1]["content"]
    assert Attachment.objects.get().message.content == "What is the invoice number?"


def test_refusals_are_api_errors(api, plain, other_user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    image = api.post("/api/v1/files", {"file": SimpleUploadedFile("cat.png", PNG), "model": "fake/plain"})
    assert image.status_code == 400 and image.json()["error"]["code"] == "upload_refused"
    assert "takes text only" in image.json()["error"]["message"]
    assert api.post("/api/v1/files", {}).json()["error"]["param"] == "file"
    foreign = Attachment.objects.create(
        user=other_user, name="x.txt", content_type="text/plain", size=1, kind="document", text="x", file="x"
    )
    reply = api.post(
        "/api/v1/chat/completions",
        {"message": "hi", "model": "fake/plain", "attachments": [foreign.pk]},
        content_type="application/json",
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "attachments"


def test_the_schema_documents_uploads_and_attachments(api):
    schema = api.get("/api/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/api/v1/files"]["post"]["requestBody"]["content"]
    assert "attachments" in schema["components"]["schemas"]["ExchangeRequest"]["properties"]
