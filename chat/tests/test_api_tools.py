"""Tool calling, structured output and every other OpenAI parameter on /v1: passed on to the provider
that takes it (translated for Gemini), or refused with a 400 naming it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from billing import metering
from billing.models import UsageRecord
from chat.catalogue.lookup import catalogue_changed
from chat.models import AIModel, Provider
from chat.tests.api_fixtures import api_client, catalogue, issued, sse_events, streamed_body  # noqa: F401
from chat.tests.fake_upstream import JSON_REPLY, TOOL_ANSWER_PREFIX, TOOL_ARGUMENTS

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL_RESULT = '{"temperature_c": 21}'


@pytest.fixture
def gemini_model(catalogue):
    return AIModel.objects.create(
        slug="test/gemini",
        provider=Provider.GEMINI,
        upstream_id="gemini-fake",
        name="Test Gemini",
        input_price_per_m=Decimal("1"),
        output_price_per_m=Decimal("1"),
    )


async def post(client, body: dict):
    return await client.post("/v1/chat/completions", body)


def answered(call: dict) -> list[dict]:
    """The conversation after the model's tool call: the call, then the tool's result."""
    return [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT},
    ]


def streamed_tool_calls(chunks: list[dict]) -> list[dict]:
    """Tool call pieces put together as a client does: by index, id and name once, arguments appended."""
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for piece in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(
                    piece["index"], {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
                )
                call["id"] = piece.get("id") or call["id"]
                call["function"]["name"] = piece["function"].get("name") or call["function"]["name"]
                call["function"]["arguments"] += piece["function"].get("arguments", "")
    return [calls[index] for index in sorted(calls)]


@pytest.mark.parametrize("model", ["test/fake-model", "test/gemini"])
async def test_a_tool_call_and_its_answer_go_round_without_streaming(api_client, upstream, gemini_model, model):
    response = await post(api_client, {"model": model, "messages": ASK, "tools": [WEATHER_TOOL], "tool_choice": "auto"})
    assert response.status_code == 200, response.content
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == json.loads(TOOL_ARGUMENTS)
    assert choice["message"]["content"] is None

    response = await post(api_client, {"model": model, "messages": answered(call), "tools": [WEATHER_TOOL]})
    assert response.status_code == 200, response.content
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"].startswith(TOOL_ANSWER_PREFIX)
    assert "21" in choice["message"]["content"]
    assert await UsageRecord.objects.acount() == 2


@pytest.mark.parametrize("model", ["test/fake-model", "test/gemini"])
async def test_a_tool_call_streams_as_openai_streams_it(api_client, upstream, gemini_model, model):
    response = await post(
        api_client,
        {
            "model": model,
            "messages": ASK,
            "tools": [WEATHER_TOOL],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status_code == 200, response.content
    chunks = sse_events(await streamed_body(response))[:-1]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["tool_calls"][0]["index"] == 0
    assert first["tool_calls"][0]["function"]["name"] == "get_weather" and first["tool_calls"][0]["id"]
    (call,) = streamed_tool_calls(chunks)
    assert json.loads(call["function"]["arguments"]) == json.loads(TOOL_ARGUMENTS)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0

    response = await post(
        api_client, {"model": model, "messages": answered(call), "tools": [WEATHER_TOOL], "stream": True}
    )
    chunks = sse_events(await streamed_body(response))[:-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.startswith(TOOL_ANSWER_PREFIX) and "21" in text


async def test_the_openai_compatible_upstream_gets_the_tools_as_sent(api_client, upstream, catalogue):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    await post(
        api_client,
        {
            "model": "test/fake-model",
            "messages": ASK,
            "tools": [WEATHER_TOOL],
            "tool_choice": choice,
            "parallel_tool_calls": False,
        },
    )
    sent = upstream.requests[-1]["body"]
    assert (sent["tools"], sent["tool_choice"], sent["parallel_tool_calls"]) == ([WEATHER_TOOL], choice, False)


async def test_gemini_gets_function_declarations_and_the_results_as_function_responses(
    api_client, upstream, gemini_model
):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    await post(api_client, {"model": "test/gemini", "messages": ASK, "tools": [WEATHER_TOOL], "tool_choice": choice})
    sent = upstream.requests[-1]["body"]
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],
                }
            ]
        }
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}

    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}
    await post(api_client, {"model": "test/gemini", "messages": answered(call), "tools": [WEATHER_TOOL]})
    contents = upstream.requests[-1]["body"]["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temperature_c": 21}}}],
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_json_mode_reaches_the_upstream_and_json_comes_back(api_client, upstream, catalogue, stream):
    response = await post(
        api_client,
        {"model": "test/fake-model", "messages": ASK, "response_format": {"type": "json_object"}, "stream": stream},
    )
    assert upstream.requests[-1]["body"]["response_format"] == {"type": "json_object"}
    if stream:
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in sse_events(await streamed_body(response))[:-1]
        )
    else:
        text = response.json()["choices"][0]["message"]["content"]
    assert json.loads(text) == json.loads(JSON_REPLY)


async def test_gemini_gets_a_json_schema_as_its_response_schema(api_client, upstream, gemini_model):
    schema = {"type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"]}
    response = await post(
        api_client,
        {
            "model": "test/gemini",
            "messages": ASK,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
            "seed": 7,
            "presence_penalty": 0.5,
        },
    )
    config = upstream.requests[-1]["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == schema
    assert (config["seed"], config["presencePenalty"]) == (7, 0.5)
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == json.loads(JSON_REPLY)


async def test_the_other_openai_parameters_are_passed_on(api_client, upstream, catalogue):
    params = {
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "user": "u-1",
    }
    response = await post(api_client, {"model": "test/fake-model", "messages": ASK, **params})
    assert response.status_code == 200
    sent = upstream.requests[-1]["body"]
    assert {name: sent[name] for name in params} == params


@pytest.mark.parametrize(
    ("param", "value"),
    [("logprobs", True), ("functions", [{"name": "f"}]), ("store", True), ("temprature", 0.5), ("audio", {})],
)
async def test_a_parameter_this_api_does_not_take_is_refused_by_name(api_client, upstream, catalogue, param, value):
    response = await post(api_client, {"model": "test/fake-model", "messages": ASK, param: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", param)
    assert param in error["message"]
    assert upstream.requests == []


async def test_an_absent_or_false_parameter_asks_for_nothing(api_client, upstream, catalogue):
    response = await post(api_client, {"model": "test/fake-model", "messages": ASK, "logprobs": False, "store": None})
    assert response.status_code == 200


async def test_a_model_without_tools_refuses_them_by_name(api_client, upstream, catalogue):
    await AIModel.objects.filter(slug="test/fake-model").aupdate(supports_tools=False, supports_response_format=False)
    for param, value in (("tools", [WEATHER_TOOL]), ("response_format", {"type": "json_object"})):
        response = await post(api_client, {"model": "test/fake-model", "messages": ASK, param: value})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param
    assert upstream.requests == []
    assert await UsageRecord.objects.acount() == 0


async def test_a_provider_that_cannot_take_a_parameter_refuses_it_by_name(api_client, upstream, gemini_model):
    response = await post(api_client, {"model": "test/gemini", "messages": ASK, "logit_bias": {"1": 1}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logit_bias"
    assert upstream.requests == []


async def test_auto_picks_a_free_model_that_takes_tools_or_refuses(api_client, upstream, catalogue):
    response = await post(api_client, {"model": "auto", "messages": ASK, "tools": [WEATHER_TOOL]})
    assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
    await AIModel.objects.filter(slug="test/free").aupdate(supports_tools=False)
    await sync_to_async(catalogue_changed)()  # a queryset update sends no signal; the admin's save does
    response = await post(api_client, {"model": "auto", "messages": ASK, "tools": [WEATHER_TOOL]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools"


async def test_a_fallback_that_cannot_take_the_tools_is_skipped(api_client, upstream, catalogue):
    failing, fallback = catalogue["fail-500"], catalogue["fake-model"]
    failing.fallback = fallback
    await failing.asave()
    await AIModel.objects.filter(pk=fallback.pk).aupdate(supports_tools=False)
    response = await post(api_client, {"model": "test/fail-500", "messages": ASK, "tools": [WEATHER_TOOL]})
    assert response.status_code == 502
    assert [r["body"]["model"] for r in upstream.requests] == ["fail-500"]


async def test_tool_definitions_and_calls_are_metered_when_the_upstream_gives_no_usage(api_client, upstream, catalogue):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}
    messages = answered(call)
    response = await post(api_client, {"model": "test/no-usage", "messages": messages, "tools": [WEATHER_TOOL]})
    assert response.status_code == 200
    record = await UsageRecord.objects.aget()
    without_tools = metering.count_prompt_tokens([{"role": m["role"], "content": m["content"] or ""} for m in messages])
    assert record.prompt_tokens == metering.count_prompt_tokens(messages, [WEATHER_TOOL]) > without_tools

    await UsageRecord.objects.all().adelete()
    response = await post(api_client, {"model": "test/no-usage", "messages": ASK, "tools": [WEATHER_TOOL]})
    record = await UsageRecord.objects.aget()
    assert record.completion_tokens == metering.count_text_tokens("get_weather" + TOOL_ARGUMENTS)
