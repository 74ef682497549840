"""The OpenAI-compatible /v1 API: completions streamed and not, the model list, parameters passed on."""

from __future__ import annotations

import pytest

from billing.models import UsageRecord
from chat.tests.api_fixtures import api_client, catalogue, issued, sse_events, streamed_body  # noqa: F401
from chat.tests.fake_upstream import REPLY_WORDS, USAGE

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "".join(REPLY_WORDS)
HELLO = [{"role": "user", "content": "Say hello"}]


async def post(client, body: dict):
    return await client.post("/v1/chat/completions", body)


async def test_it_answers_a_completion_with_usage(api_client, catalogue, issued):
    response = await post(api_client, {"model": "test/fake-model", "messages": HELLO})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "test/fake-model"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": REPLY}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == USAGE
    record = await UsageRecord.objects.aget()
    assert (record.api_key_id, record.prompt_tokens, record.completion_tokens) == (issued[0].pk, 11, 6)


async def test_it_streams_chunks_then_usage_then_done(api_client, catalogue):
    response = await post(
        api_client,
        {"model": "test/fake-model", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = sse_events(await streamed_body(response))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == REPLY
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    assert await UsageRecord.objects.acount() == 1


async def test_it_sends_no_usage_chunk_unless_asked(api_client, catalogue):
    response = await post(api_client, {"model": "test/fake-model", "messages": HELLO, "stream": True})
    chunks = sse_events(await streamed_body(response))[:-1]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_it_passes_generation_parameters_upstream(api_client, catalogue, upstream):
    params = {"temperature": 0.3, "max_tokens": 42, "top_p": 0.9, "stop": ["\n\n", "END"]}
    await post(api_client, {"model": "test/fake-model", "messages": HELLO, "n": 1, **params})
    sent = upstream.requests[-1]["body"]
    assert {name: sent[name] for name in params} == params
    assert sent["model"] == "fake-model"


async def test_it_routes_auto_to_a_free_model(api_client, catalogue):
    response = await post(api_client, {"model": "auto", "messages": HELLO})
    assert response.status_code == 200
    assert response.json()["model"] == "test/free"


async def test_it_lists_models_in_openai_format_with_pricing(api_client, catalogue):
    response = await api_client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert "auto" in by_id
    model = by_id["test/fake-model"]
    assert model["object"] == "model"
    assert model["pricing"] == {"prompt": "0.0000015", "completion": "0.000002"}
    assert model["context_length"] == 4096


async def test_it_shows_one_model_by_its_id(api_client, catalogue):
    response = await api_client.get("/v1/models/test/fake-model")
    assert response.status_code == 200 and response.json()["id"] == "test/fake-model"
    missing = await api_client.get("/v1/models/test/none")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


async def test_paths_with_a_newline_get_the_apis_json_404(api_client, catalogue):
    model = await api_client.get("/v1/models/test/none%0A9")
    assert model.status_code == 404 and model.json()["error"]["code"] == "model_not_found"
    for path in ("/v1/no%0Asuch", "/api/v1/no%0Asuch"):
        unknown = await api_client.get(path)
        assert unknown.status_code == 404 and unknown.json()["error"], path
