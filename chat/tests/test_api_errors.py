"""Every refusal of the /v1 API: the status and an error body in OpenAI's shape."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.api_keys import generate_key, issue_key, revoke
from accounts.models import ApiKey
from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.api.validation import MAX_BODY_BYTES
from chat.tests.api_fixtures import KeyClient, api_client, catalogue, issued  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]
OK_BODY = {"model": "test/fake-model", "messages": HELLO}


def assert_error(response, status: int, code: str, error_type: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["message"]
    if error_type:
        assert error["type"] == error_type
    return error


async def test_it_refuses_a_request_without_a_key(catalogue):
    response = await KeyClient(None).post("/v1/chat/completions", OK_BODY)
    assert_error(response, 401, "missing_api_key", "authentication_error")


async def test_it_refuses_a_malformed_authorization_header(catalogue, issued):
    client = KeyClient(None)
    client.headers = {"Authorization": f"Token {issued[1]}"}
    assert_error(await client.post("/v1/chat/completions", OK_BODY), 401, "invalid_api_key")


async def test_it_refuses_an_unknown_key_with_a_valid_checksum(catalogue):
    assert_error(await KeyClient(generate_key()).post("/v1/chat/completions", OK_BODY), 401, "invalid_api_key")


async def test_it_refuses_a_mistyped_key(catalogue, issued):
    raw = issued[1]
    typo = raw[:10] + ("A" if raw[10] != "A" else "B") + raw[11:]
    assert_error(await KeyClient(typo).post("/v1/chat/completions", OK_BODY), 401, "invalid_api_key")


async def test_it_refuses_a_revoked_key_at_once(api_client, catalogue, issued):
    assert (await api_client.post("/v1/chat/completions", OK_BODY)).status_code == 200  # now cached
    await revoke_async(issued[0].pk)
    assert_error(await api_client.post("/v1/chat/completions", OK_BODY), 401, "revoked_api_key")
    assert_error(await api_client.get("/v1/models"), 401, "revoked_api_key")


async def revoke_async(pk: int) -> None:
    await sync_to_async(revoke)(ApiKey.objects.filter(pk=pk))


async def test_it_refuses_an_expired_key(catalogue, user):
    _, raw = await sync_to_async(issue_key)(user, "old", expires_at=timezone.now() - timedelta(minutes=1))
    assert_error(await KeyClient(raw).post("/v1/chat/completions", OK_BODY), 401, "expired_api_key")


async def test_it_refuses_a_model_outside_the_keys_allow_list(catalogue, user, issued):
    _, raw = await sync_to_async(issue_key)(user, "free only", allowed_models=[catalogue["free"]])
    client = KeyClient(raw)
    error = assert_error(
        await client.post("/v1/chat/completions", OK_BODY), 403, "model_not_allowed", "permission_error"
    )
    assert error["param"] == "model"
    assert_error(await client.post("/v1/chat/completions", {**OK_BODY, "model": "auto"}), 403, "model_not_allowed")
    assert (await client.post("/v1/chat/completions", {**OK_BODY, "model": "test/free"})).status_code == 200
    listed = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert listed == ["test/free"]


async def test_it_refuses_invalid_json(api_client, catalogue):
    response = await api_client.post("/v1/chat/completions", '{"model": "auto", "messages": [')
    assert_error(response, 400, "invalid_json", "invalid_request_error")


async def test_it_refuses_a_body_that_is_not_an_object(api_client, catalogue):
    assert_error(await api_client.post("/v1/chat/completions", "[1, 2]"), 400, "invalid_json")


async def test_it_refuses_missing_messages(api_client, catalogue):
    error = assert_error(
        await api_client.post("/v1/chat/completions", {"model": "auto"}), 400, "missing_required_parameter"
    )
    assert error["param"] == "messages"


async def test_it_refuses_a_missing_model(api_client, catalogue):
    error = assert_error(
        await api_client.post("/v1/chat/completions", {"messages": HELLO}), 400, "missing_required_parameter"
    )
    assert error["param"] == "model"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"model": 7}, "model"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": True}, "top_p"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": [1, 2]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": "usage"}, "stream_options"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"parallel_tool_calls": True}, "parallel_tool_calls"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"seed": 1.5}, "seed"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"user": 7}, "user"),
        ({"messages": [{"role": "tool", "tool_call_id": "never-asked", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a"}]}]}, "messages[0].tool_calls[0]"),
    ],
)
async def test_it_refuses_wrong_types_and_values(api_client, catalogue, change, param):
    response = await api_client.post("/v1/chat/completions", {**OK_BODY, **change})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("n", [2, 0, True])
async def test_it_refuses_n_other_than_one(api_client, catalogue, n):
    error = assert_error(await api_client.post("/v1/chat/completions", {**OK_BODY, "n": n}), 400, "invalid_value")
    assert error["param"] == "n"


async def test_it_refuses_an_oversized_body(api_client, catalogue, upstream):
    huge = {**OK_BODY, "messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 1)}]}
    assert_error(await api_client.post("/v1/chat/completions", huge), 413, "request_too_large", "invalid_request_error")
    assert upstream.requests == []


async def test_it_refuses_an_unknown_model(api_client, catalogue):
    error = assert_error(
        await api_client.post("/v1/chat/completions", {**OK_BODY, "model": "nope/nothing"}),
        404,
        "model_not_found",
        "invalid_request_error",
    )
    assert "nope/nothing" in error["message"]


async def test_it_refuses_the_wrong_method(api_client, catalogue):
    response = await api_client.get("/v1/chat/completions")
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


@pytest.mark.parametrize("stream", [False, True])
async def test_it_answers_502_when_every_upstream_failed(api_client, catalogue, stream):
    response = await api_client.post("/v1/chat/completions", {**OK_BODY, "model": "test/fail-500", "stream": stream})
    error = assert_error(response, 502, "upstream_error", "api_error")
    assert "500" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_it_answers_504_when_the_upstream_hangs(api_client, catalogue, stream):
    response = await api_client.post("/v1/chat/completions", {**OK_BODY, "model": "test/hang", "stream": stream})
    assert_error(response, 504, "upstream_timeout", "api_error")


@pytest.mark.parametrize("stream", [False, True])
async def test_it_falls_back_before_the_first_byte(api_client, catalogue, upstream, stream):
    failing = catalogue["fail-500"]
    failing.fallback = catalogue["fake-model"]
    await sync_to_async(failing.save)(update_fields=["fallback"])
    response = await api_client.post("/v1/chat/completions", {**OK_BODY, "model": "test/fail-500", "stream": stream})
    assert response.status_code == 200
    assert [r["body"]["model"] for r in upstream.requests] == ["fail-500", "fake-model"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_keys_allow_list_limits_its_fallbacks_too(catalogue, user, issued, upstream, stream):
    """The failing model's fallback is outside the key's allow-list: it is never asked, the request fails
    (a key that allows both falls back as usual), and the usage row's attempts show the one model."""
    failing, fallback = catalogue["fail-500"], catalogue["fake-model"]
    failing.fallback = fallback
    await sync_to_async(failing.save)(update_fields=["fallback"])
    _, limited = await sync_to_async(issue_key)(user, "the failing model only", allowed_models=[failing])
    _, both = await sync_to_async(issue_key)(user, "both models", allowed_models=[failing, fallback])
    body = {**OK_BODY, "model": "test/fail-500", "stream": stream}

    assert (await KeyClient(both).post("/v1/chat/completions", body)).status_code == 200
    assert [r["body"]["model"] for r in upstream.requests] == ["fail-500", "fake-model"]

    upstream.reset()
    assert_error(await KeyClient(limited).post("/v1/chat/completions", body), 502, "upstream_error")
    assert [r["body"]["model"] for r in upstream.requests] == ["fail-500"]
    record = await UsageRecord.objects.filter(api_key__name="the failing model only").aget()
    attempts = [a async for a in record.attempts.values_list("model_slug", "outcome")]
    assert attempts == [("test/fail-500", "http_500")]


@pytest.fixture
def two_per_minute(user):
    plan = Plan.objects.create(slug="two-rpm", name="Two a minute", requests_per_minute=2, is_public=False)
    start_subscription(user, plan)
    return plan


@pytest.mark.parametrize("stream", [False, True])
async def test_it_answers_429_with_retry_after_over_the_rate_limit(catalogue, issued, two_per_minute, upstream, stream):
    client = KeyClient(issued[1])
    body = {**OK_BODY, "stream": stream}
    for _ in range(2):
        assert (await client.post("/v1/chat/completions", body)).status_code == 200
    response = await client.post("/v1/chat/completions", body)
    error = assert_error(response, 429, "rate_limit_exceeded", "rate_limit_error")
    assert "Rate limit" in error["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert len(upstream.requests) == 2  # refused before any upstream call


async def test_it_answers_429_when_the_keys_budget_is_spent(catalogue, user, upstream):
    await sync_to_async(start_subscription)(user, await Plan.objects.aget(slug="enterprise"))
    _, raw = await sync_to_async(issue_key)(user, "tiny budget", monthly_budget=Decimal("0.000001"))
    response = await KeyClient(raw).post("/v1/chat/completions", OK_BODY)
    error = assert_error(response, 429, "budget_exceeded")
    assert "tiny budget" in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("path", ["/v1/audio/speech", "/api/v1/nothing/here"])
async def test_it_answers_unknown_endpoints_in_the_apis_shape(api_client, path):
    response = await api_client.post(path, {})
    assert_error(response, 404, "unknown_endpoint")
