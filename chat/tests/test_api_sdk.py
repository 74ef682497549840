"""The official openai SDK against a real server process (`manage.py serve`, the production server, on a free port).

The server gets a database of its own (a PostgreSQL database next to the test database, or an
SQLite file), set up with the project's own commands: migrate, then a user and models, then
create_api_key. Everything the test checks crosses a real socket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
import psycopg
import pytest
from django.conf import settings

from aihub.testing import start_server, stop_process, wait_until_healthy
from chat.tests.fake_upstream import (
    REPLY_WORDS,
    TOOL_ANSWER_PREFIX,
    TOOL_ARGUMENTS,
    USAGE,
    embedding_tokens,
    fake_vector,
)

REPLY = "".join(REPLY_WORDS)
HELLO = [{"role": "user", "content": "Say hello"}]
BASE_DIR = Path(settings.BASE_DIR)

SETUP_SCRIPT = """
from decimal import Decimal
from accounts.models import User
from billing.models import Plan
from billing.subscriptions import start_subscription
from chat.models import AIModel
user = User.objects.create_user("sdk@example.com", "sdk password 1234")
start_subscription(user, Plan.objects.get(slug="enterprise"))
for name in ("fake-model", "slow", "error-after-2"):
    AIModel.objects.create(slug="test/" + name, provider="openai_compat", upstream_id=name, name=name,
                           input_price_per_m=Decimal("1.50"), output_price_per_m=Decimal("2"))
AIModel.objects.create(slug="test/gemini", provider="gemini", upstream_id="gemini-fake", name="gemini",
                       input_price_per_m=Decimal("1.50"), output_price_per_m=Decimal("2"), supports_images=True)
AIModel.objects.create(slug="test/vision", provider="openai_compat", upstream_id="vision-model", name="vision",
                       supports_images=True)
AIModel.objects.create(slug="test/embed", provider="openai_compat", upstream_id="fake-embed", name="embed",
                       kind="embedding", input_price_per_m=Decimal("0.02"))
"""

REVOKE_SCRIPT = """
from accounts.api_keys import hash_key, revoke
from accounts.models import ApiKey
revoke(ApiKey.objects.filter(hashed_key=hash_key({raw!r})))
"""


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def server_env(fake_upstream, tmp_path_factory):
    env = {
        **os.environ,
        "DEBUG": "1",
        "OPENAI_COMPAT_BASE_URL": f"{fake_upstream.url}/v1",
        "OPENAI_COMPAT_API_KEY": "compat-test-key",
        "OPENROUTER_API_KEY": "",
        "GEMINI_BASE_URL": f"{fake_upstream.url}/v1beta",
        "GEMINI_API_KEY": "gemini-test-key",
        "LOCAL_MODEL_ENABLED": "0",
        "UPSTREAM_READ_TIMEOUT": "2",
    }
    database_url = os.environ.get("DATABASE_URL", "")
    postgres = database_url.startswith("postgres")
    if postgres:
        parts = urlsplit(database_url)
        name = f"test_{parts.path.lstrip('/')}_sdk_{os.getpid()}"
        admin_url = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp_path_factory.mktemp('sdk') / 'server.sqlite3'}"
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", SETUP_SCRIPT)
    yield env
    if postgres:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory):
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    process, url = start_server(server_env, log)
    wait_until_healthy(url, process)
    yield url
    stop_process(process)
    log.close()


@pytest.fixture
def new_key(server_env):
    def issue(name: str = "sdk") -> str:
        return manage(server_env, "create_api_key", "--email", "sdk@example.com", "--name", name).splitlines()[-1]

    return issue


@pytest.fixture
def sdk(server, new_key, fake_upstream):
    fake_upstream.reset()
    return openai.OpenAI(base_url=f"{server}/v1", api_key=new_key(), max_retries=0)


def test_the_sdk_lists_models(sdk):
    ids = [model.id for model in sdk.models.list()]
    assert ids[0] == "auto"
    assert {"test/fake-model", "test/slow", "test/error-after-2", "test/gemini"} <= set(ids)
    assert sdk.models.retrieve("test/fake-model").id == "test/fake-model"


def test_the_sdk_gets_a_completion_with_its_parameters_passed_on(sdk, fake_upstream):
    completion = sdk.chat.completions.create(
        model="test/fake-model", messages=HELLO, temperature=0.2, max_tokens=30, top_p=0.5, stop=["zz"], n=1
    )
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == USAGE["total_tokens"]
    sent = fake_upstream.requests[-1]["body"]
    assert (sent["temperature"], sent["max_tokens"], sent["top_p"], sent["stop"]) == (0.2, 30, 0.5, ["zz"])


def test_the_sdk_streams_with_a_usage_chunk(sdk):
    stream = sdk.chat.completions.create(
        model="test/fake-model", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == USAGE["prompt_tokens"]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def _streamed_reply(stream) -> tuple[str, list[dict], str]:
    """Text, tool calls and finish reason of a streamed reply, put together as an SDK user does."""
    text, calls, finish = [], {}, None
    for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = piece.id or call["id"]
                call["name"] = (piece.function.name if piece.function else None) or call["name"]
                call["arguments"] += (piece.function.arguments if piece.function else None) or ""
            finish = choice.finish_reason or finish
    tool_calls = [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for _, c in sorted(calls.items())
    ]
    return "".join(text), tool_calls, finish


@pytest.mark.parametrize("model", ["test/fake-model", "test/gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_the_sdk_completes_a_tool_calling_round_trip(sdk, fake_upstream, model, stream):
    """The model asks for the tool, the client runs it and sends the result, the model answers."""
    asked = sdk.chat.completions.create(model=model, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], stream=stream)
    if stream:
        _, tool_calls, finish = _streamed_reply(asked)
    else:
        finish = asked.choices[0].finish_reason
        tool_calls = [
            call.model_dump(include={"id", "type", "function"}) for call in asked.choices[0].message.tool_calls
        ]
    assert finish == "tool_calls"
    (call,) = tool_calls
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == json.loads(TOOL_ARGUMENTS)

    city = json.loads(call["function"]["arguments"])["city"]
    messages = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"city": city, "temperature_c": 21})},
    ]
    answer = sdk.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], stream=stream)
    if stream:
        text, _, finish = _streamed_reply(answer)
    else:
        text, finish = answer.choices[0].message.content, answer.choices[0].finish_reason
    assert finish == "stop"
    assert text.startswith(TOOL_ANSWER_PREFIX) and "21" in text
    sent = fake_upstream.requests[-1]["body"]
    if model == "test/gemini":
        assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    else:
        assert sent["tools"] == [WEATHER_TOOL] and sent["messages"][-1]["tool_call_id"] == call["id"]


def test_the_sdk_asks_for_json_and_names_a_parameter_it_cannot_have(sdk, fake_upstream):
    completion = sdk.chat.completions.create(
        model="test/fake-model", messages=HELLO, response_format={"type": "json_object"}
    )
    assert json.loads(completion.choices[0].message.content)
    assert fake_upstream.requests[-1]["body"]["response_format"] == {"type": "json_object"}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="test/fake-model", messages=HELLO, logprobs=True)
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "logprobs")


def test_the_sdk_gets_embeddings_from_the_upstream_and_they_are_metered(server, new_key, fake_upstream):
    raw = new_key("embeddings")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=raw, max_retries=0)
    texts = ["The quick brown fox", "jumps"]
    before = _requests_so_far(server, raw)

    result = client.embeddings.create(model="test/embed", input=texts)  # the SDK asks for base64

    assert [item.embedding for item in result.data] == [fake_vector(text) for text in texts]
    assert result.usage.prompt_tokens == embedding_tokens(texts)
    assert fake_upstream.requests[-1]["path"] == "/v1/embeddings"
    after = _requests_so_far(server, raw)
    assert after["requests"] == before["requests"] + 1
    assert after["prompt_tokens"] - before["prompt_tokens"] == embedding_tokens(texts)
    assert after["completion_tokens"] == before["completion_tokens"]


# A 1x1 PNG.
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="  # noqa: E501 (one image)
LOOK = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
        ],
    }
]


def test_the_sdk_sends_an_image_part_that_the_upstream_receives(sdk, fake_upstream):
    completion = sdk.chat.completions.create(model="test/vision", messages=LOOK)
    assert completion.choices[0].message.content == REPLY
    assert fake_upstream.requests[-1]["body"]["messages"] == LOOK


def test_an_image_part_reaches_gemini_as_inline_data(sdk, fake_upstream):
    sdk.chat.completions.create(model="test/gemini", messages=LOOK)
    parts = fake_upstream.requests[-1]["body"]["contents"][0]["parts"]
    assert parts[0] == {"text": "What is in this picture?"}
    assert parts[1]["inlineData"] == {"mimeType": "image/png", "data": PNG_DATA_URL.split(",", 1)[1]}


def test_a_text_only_model_refuses_an_image_part_naming_it(sdk, fake_upstream):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="test/fake-model", messages=LOOK)
    assert (refused.value.code, refused.value.param) == ("model_not_multimodal", "messages[0].content[1]")
    assert "takes text only" in refused.value.message
    with pytest.raises(openai.BadRequestError) as bad_url:
        sdk.chat.completions.create(
            model="test/vision",
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}],
        )
    assert bad_url.value.param == "messages[0].content[0]"
    assert fake_upstream.requests == []


def test_the_sdk_raises_the_apis_errors(sdk, server):
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.chat.completions.create(model="nope/none", messages=HELLO)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="test/fake-model", messages=HELLO, n=2)
    bad_key = openai.OpenAI(base_url=f"{server}/v1", api_key="ahk_" + "x" * 38, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    text = []
    with pytest.raises(openai.APIError, match="the model's provider reported an error"):
        for chunk in sdk.chat.completions.create(model="test/error-after-2", messages=HELLO, stream=True):
            text.append(chunk.choices[0].delta.content or "")
    assert "".join(text) == "Hello from"


def test_a_key_revoked_by_another_process_is_refused_at_once(server, server_env, new_key):
    raw = new_key("to revoke")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=raw, max_retries=0)
    assert client.chat.completions.create(model="test/fake-model", messages=HELLO).choices
    manage(server_env, "shell", "-c", REVOKE_SCRIPT.format(raw=raw))
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="test/fake-model", messages=HELLO)
    assert refused.value.code == "revoked_api_key"


def _requests_so_far(server: str, raw: str) -> dict:
    return httpx.get(f"{server}/api/v1/stats", headers={"Authorization": f"Bearer {raw}"}).json()["totals"]


def test_a_client_hanging_up_mid_stream_closes_the_upstream_and_is_metered_once(server, new_key, fake_upstream):
    raw = new_key("disconnect")
    fake_upstream.reset()
    before = _requests_so_far(server, raw)
    events = 0
    with httpx.Client(timeout=10) as client:
        with client.stream(
            "POST",
            f"{server}/v1/chat/completions",
            headers={"Authorization": f"Bearer {raw}"},
            json={"model": "test/slow", "messages": HELLO, "stream": True},
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                events += line.startswith("data: ")
                if events == 3:
                    break
    hung_up = time.monotonic()
    assert fake_upstream.wait_for(lambda u: u.disconnects == 1, 1.5)
    assert time.monotonic() - hung_up < 1.5
    deadline = time.monotonic() + 5
    while (after := _requests_so_far(server, raw))["requests"] == before["requests"] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # a second record, if one were written, would have arrived by now
    after = _requests_so_far(server, raw)
    assert after["requests"] == before["requests"] + 1
    delivered = after["completion_tokens"] - before["completion_tokens"]
    assert 0 < delivered < 50  # what was sent before the hang-up, not the 50 chunks of a full reply
