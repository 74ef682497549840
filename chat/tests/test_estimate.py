"""The cost of a message before it is sent: POST /api/v1/estimate and the composer's estimate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import UsageRecord
from chat.models import AIModel, Provider
from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "Tell me about the harbour lights, and why the old keeper painted them red and green. " * 5


@pytest.fixture
def counting(upstream):
    """A paid model whose upstream counts the prompt with its own tokenizer, as a real one does."""
    return AIModel.objects.create(
        slug="test/counting",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="counting",
        name="Counting",
        context_length=4096,
        input_price_per_m=Decimal("3.00"),
        output_price_per_m=Decimal("15.00"),
    )


async def test_the_price_range_contains_the_cost_of_the_reply_that_follows(api_client, counting):
    session_id = None
    for n in range(4):  # a session with history: the estimate counts it as it will be sent
        body = {"message": f"{n}: {QUESTION}", "model": counting.slug, "max_tokens": 300}
        if session_id is not None:
            body["session_id"] = session_id
        estimate = await api_client.post("/api/v1/estimate", body)
        assert estimate.status_code == 200, estimate.content
        figures = estimate.json()

        sent = await api_client.post("/api/v1/chat/completions", body)
        session_id = sent.json()["session_id"]

        record = await UsageRecord.objects.order_by("-id").afirst()
        low, high = Decimal(figures["cost_usd"]["min"]), Decimal(figures["cost_usd"]["max"])
        assert record.cost > 0
        assert low <= record.cost <= high, (low, record.cost, high)
        assert figures["max_output_tokens"] == 300
        assert figures["messages_sent"] == 2 * n + 1 and figures["messages_dropped"] == 0
        # The estimate's count is the prompt the upstream was given, within the tokenizer margin.
        assert abs(figures["prompt_tokens"] - record.prompt_tokens) <= figures["prompt_tokens"] * 0.1


async def test_it_stores_nothing_and_answers_bad_input_with_openai_shaped_errors(api_client, counting):
    missing = await api_client.post("/api/v1/estimate", {"model": counting.slug})
    unknown = await api_client.post("/api/v1/estimate", {"message": "Hi", "model": "nope/nope"})
    foreign = await api_client.post("/api/v1/estimate", {"message": "Hi", "session_id": 999999})
    too_long = await api_client.post("/api/v1/estimate", {"message": "word " * 5000, "model": counting.slug})

    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "message")
    assert unknown.status_code == 404
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "session_not_found")
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "context_length_exceeded")
    assert await UsageRecord.objects.acount() == 0


async def test_a_free_model_is_estimated_at_zero(api_client, catalogue):
    figures = (await api_client.post("/api/v1/estimate", {"message": "Hi", "model": "test/free"})).json()

    assert figures["cost_usd"] == {"min": "0.00000000", "max": "0.00000000"}
    assert figures["prompt_tokens"] > 0


# Files waiting in the composer (uploaded, not sent yet) count as they will be sent with the message.

NOTES = "The harbour lights were painted red and green by the old keeper in 1911, after the storm. " * 20


async def _upload(api_client, name: str, data: bytes, model: str) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = await api_client.client.post(
        "/api/v1/files", {"file": SimpleUploadedFile(name, data), "model": model}, headers=api_client.headers
    )
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


async def test_a_file_waiting_to_be_sent_adds_its_counted_tokens_and_the_reply_that_follows_fits(
    api_client, counting, media
):
    document = await _upload(api_client, "notes.txt", NOTES.encode(), counting.slug)
    body = {"message": "What do the notes say about the lights", "model": counting.slug, "max_tokens": 300}

    alone = (await api_client.post("/api/v1/estimate", body)).json()
    estimate = await api_client.post("/api/v1/estimate", {**body, "attachments": [document["id"]]})
    assert estimate.status_code == 200, estimate.content
    figures = estimate.json()
    # The chip's count is what the file adds to the prompt.
    assert figures["prompt_tokens"] - alone["prompt_tokens"] == document["tokens"]
    assert Decimal(figures["cost_usd"]["max"]) > Decimal(alone["cost_usd"]["max"])

    sent = await api_client.post("/api/v1/chat/completions", {**body, "attachments": [document["id"]]})
    assert sent.status_code == 200, sent.content
    record = await UsageRecord.objects.order_by("-id").afirst()
    low, high = Decimal(figures["cost_usd"]["min"]), Decimal(figures["cost_usd"]["max"])
    assert low <= record.cost <= high, (low, record.cost, high)
    # The upstream counted the message and the file's text as the estimate did (the same cl100k tokens).
    assert record.prompt_tokens == figures["prompt_tokens"]


async def test_an_image_waiting_to_be_sent_counts_as_an_image_part(api_client, counting, media):
    from chat.tests.sample_files import PNG

    counting.supports_images = True
    await counting.asave(update_fields=["supports_images"])
    image = await _upload(api_client, "cat.png", PNG, counting.slug)
    body = {"message": "What is in this picture", "model": counting.slug}

    alone = (await api_client.post("/api/v1/estimate", body)).json()
    figures = (await api_client.post("/api/v1/estimate", {**body, "attachments": [image["id"]]})).json()

    assert (image["kind"], figures["prompt_tokens"] - alone["prompt_tokens"]) == ("image", image["tokens"])


async def test_another_users_file_is_never_counted_and_answers_as_a_file_that_never_existed(
    api_client, counting, media, other_user
):
    from chat.models import Attachment

    foreign = await Attachment.objects.acreate(
        user=other_user, name="secret.txt", content_type="text/plain", size=6, kind="document", text=NOTES, tokens=400
    )
    body = {"message": "What do the notes say", "model": counting.slug}

    theirs = await api_client.post("/api/v1/estimate", {**body, "attachments": [foreign.pk]})
    missing = await api_client.post("/api/v1/estimate", {**body, "attachments": [foreign.pk + 1000]})
    malformed = await api_client.post("/api/v1/estimate", {**body, "attachments": "1"})

    assert (theirs.status_code, theirs.json()["error"]["code"]) == (400, "invalid_attachments")
    assert theirs.json() == missing.json()  # nothing tells their file from one that never existed
    assert "secret" not in theirs.content.decode()
    assert (malformed.status_code, malformed.json()["error"]["param"]) == (400, "attachments")
    assert await Attachment.objects.filter(pk=foreign.pk, message__isnull=True).aexists()  # left as it was


async def test_the_custom_instructions_and_the_system_prompt_count_as_they_are_sent_first(api_client, counting, user):
    from chat.models import Conversation

    user.custom_instructions = "Answer as a lighthouse keeper would, in short plain sentences. " * 10
    await user.asave(update_fields=["custom_instructions"])
    session = await Conversation.objects.acreate(user=user, system_prompt="Mention the weather. " * 10)
    body = {"message": "Why are the lights red and green", "model": counting.slug, "session_id": session.pk}

    figures = (await api_client.post("/api/v1/estimate", body)).json()
    sent = await api_client.post("/api/v1/chat/completions", body)

    assert sent.status_code == 200, sent.content
    assert figures["messages_sent"] == 2  # the system message and the question
    record = await UsageRecord.objects.order_by("-id").afirst()
    assert record.prompt_tokens == figures["prompt_tokens"]  # the upstream counted what the estimate did
