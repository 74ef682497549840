"""The HTTP providers against the fake upstream: real sockets, real SSE."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
import weakref

import httpx
import pytest

from chat.gateway.providers import http
from chat.gateway.providers.base import ProviderError, StreamEnd, Usage
from chat.gateway.providers.gemini import GeminiProvider
from chat.gateway.providers.openai_compat import OpenAICompatProvider
from chat.gateway.router import get_provider
from chat.tests.fake_upstream import REPLY_WORDS

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Say hello again"},
]


@pytest.fixture
def compat(upstream):
    return OpenAICompatProvider("openai_compat", f"{upstream.url}/v1", "compat-test-key")


@pytest.fixture
def gemini(upstream):
    return GeminiProvider(f"{upstream.url}/v1beta", "gemini-test-key")


async def collect(provider, model: str, params: dict | None = None) -> tuple[list[str], list[StreamEnd]]:
    deltas, ends = [], []
    async for item in provider.stream(MESSAGES, model, params or {}):
        (ends if isinstance(item, StreamEnd) else deltas).append(item)
    return deltas, ends


async def deltas_before_error(provider, model: str) -> tuple[list[str], ProviderError]:
    deltas = []
    with pytest.raises(ProviderError) as caught:
        async for item in provider.stream(MESSAGES, model, {}):
            assert not isinstance(item, StreamEnd), "a failed stream must not end normally"
            deltas.append(item)
    return deltas, caught.value


# OpenAI-compatible


async def test_it_streams_the_deltas_in_order_then_one_end(compat):
    deltas, ends = await collect(compat, "fake-model")

    assert deltas == REPLY_WORDS
    assert ends == [StreamEnd(Usage(11, 6), "stop")]


async def test_it_reports_no_usage_when_the_upstream_gives_none(compat):
    deltas, ends = await collect(compat, "no-usage")

    assert "".join(deltas) == "".join(REPLY_WORDS)
    assert ends[0].usage == Usage(None, None)


async def test_it_keeps_an_explicit_zero_usage(compat):
    _, ends = await collect(compat, "zero-usage")

    assert ends[0].usage == Usage(0, 0)


async def test_it_asks_the_upstream_for_usage_in_the_stream(compat, upstream):
    await collect(compat, "fake-model")

    body = upstream.requests[-1]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == MESSAGES
    assert upstream.requests[-1]["path"] == "/v1/chat/completions"


async def test_it_sends_the_api_key_as_a_bearer_token(compat, upstream):
    await collect(compat, "fake-model")

    assert upstream.requests[-1]["headers"]["Authorization"] == "Bearer compat-test-key"


async def test_it_sends_no_authorization_without_a_key(upstream):
    keyless = OpenAICompatProvider("openai_compat", f"{upstream.url}/v1")

    await collect(keyless, "fake-model")

    assert "Authorization" not in upstream.requests[-1]["headers"]


async def test_it_forwards_the_openai_params_it_takes_and_nothing_else(compat, upstream):
    params = {
        "temperature": 0.2,
        "max_tokens": 64,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "user": "someone",
        "logit_bias": {"1": 5},
        "seed": None,
        "logprobs": True,
    }

    await collect(compat, "fake-model", params)

    body = upstream.requests[-1]["body"]
    assert {k: body[k] for k in ("temperature", "max_tokens", "top_p", "stop", "user", "logit_bias")} == {
        "temperature": 0.2,
        "max_tokens": 64,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "user": "someone",
        "logit_bias": {"1": 5},
    }
    assert not {"seed", "logprobs"} & body.keys()


async def test_it_completes_without_streaming(compat, upstream):
    completion = await compat.complete(MESSAGES, "fake-model", {"temperature": 0.5, "foo": 1})

    assert completion.text == "".join(REPLY_WORDS)
    assert completion.end == StreamEnd(Usage(11, 6), "stop")
    body = upstream.requests[-1]["body"]
    assert body["stream"] is False
    assert body["temperature"] == 0.5
    assert "foo" not in body


async def test_its_completion_keeps_missing_and_zero_usage_apart(compat):
    assert (await compat.complete(MESSAGES, "no-usage", {})).end.usage == Usage(None, None)
    assert (await compat.complete(MESSAGES, "zero-usage", {})).end.usage == Usage(0, 0)


@pytest.mark.parametrize(("model", "status"), [("fail-500", 500), ("fail-429", 429)])
async def test_it_marks_server_errors_and_rate_limits_retryable(compat, model, status):
    deltas, error = await deltas_before_error(compat, model)

    assert deltas == []
    assert (error.outcome, error.http_status, error.retryable) == (f"http_{status}", status, True)
    assert f"fake failure {status}" in str(error)


async def test_it_marks_a_bad_request_not_retryable(compat):
    _, error = await deltas_before_error(compat, "fail-400")

    assert (error.outcome, error.http_status, error.retryable) == ("http_400", 400, False)


@pytest.mark.parametrize("model", ["fail-500", "fail-429", "fail-400"])
async def test_its_completion_raises_the_same_http_errors(compat, model):
    with pytest.raises(ProviderError) as caught:
        await compat.complete(MESSAGES, model, {})

    assert caught.value.outcome == f"http_{model[5:]}"


async def test_it_times_out_when_the_upstream_stays_silent(compat, settings):
    settings.UPSTREAM_READ_TIMEOUT = 0.3

    _, error = await deltas_before_error(compat, "hang")

    assert (error.outcome, error.retryable) == ("timeout", True)


async def test_it_reports_a_refused_connection(refused_url):
    refused = OpenAICompatProvider("openai_compat", f"{refused_url}/v1", "key")

    _, error = await deltas_before_error(refused, "fake-model")

    assert (error.outcome, error.retryable) == ("connect_error", True)


async def test_its_completion_reports_a_refused_connection(refused_url):
    refused = OpenAICompatProvider("openai_compat", f"{refused_url}/v1", "key")

    with pytest.raises(ProviderError) as caught:
        await refused.complete(MESSAGES, "fake-model", {})

    assert caught.value.outcome == "connect_error"


@pytest.fixture
def misbehaving_url():
    """`misbehaving_url(answer)`: a base URL on 127.0.0.1 whose server reads a request, sends `answer` (raw
    bytes, maybe none), then each of `then` 50 ms apart, and closes the connection (with `close=False`: keeps
    it open, silent)."""
    listeners = []

    def start(answer: bytes, close: bool = True, then: list[bytes] = ()) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve():
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = listener.accept()
                    with connection:
                        connection.recv(65536)
                        connection.sendall(answer)
                        for piece in then:
                            time.sleep(0.05)
                            connection.sendall(piece)
                        if not close:
                            connection.recv(1)  # until the client gives up and closes it

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize(
    "answer", [b"", b"this is not HTTP\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{"]
)
@pytest.mark.parametrize("streamed", [True, False])
async def test_a_connection_closed_without_a_whole_answer_is_a_lost_connection(misbehaving_url, answer, streamed):
    provider = OpenAICompatProvider("openai_compat", f"{misbehaving_url(answer)}/v1", "key")

    if streamed:
        _, error = await deltas_before_error(provider, "fake-model")
    else:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(MESSAGES, "fake-model", {})
        error = caught.value

    assert (error.outcome, error.retryable) == ("connection_lost", True)


async def test_events_split_anywhere_between_the_chunks_received_are_read_whole(misbehaving_url):
    # LF, CRLF and CR line ends; pieces cut mid-line, between a CR and its LF and inside a UTF-8 character; the
    # last line unended. Each piece its own HTTP chunk, sent apart so that each is read on its own.
    body = (
        'data: {"choices": [{"delta": {"content": "Hé"}}]}\n\n'
        'data: {"choices": [{"delta": {"content": "llo"}}]}\r\n\r\n'
        ": a comment\r"
        'data: {"choices": [{"delta": {"content": " wörld"}}]}\r\r'
        "data: [DONE]"
    ).encode()
    cuts = [body.index("é".encode()) + 1, body.index(b"\r\n") + 1, body.index(b"w\xc3") + 2, len(body) - 3]
    pieces = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]
    provider = OpenAICompatProvider("openai_compat", f"{misbehaving_url(head, then=chunked)}/v1", "key")

    items = [item async for item in provider.stream(MESSAGES, "fake-model", {})]

    assert [item for item in items if not isinstance(item, StreamEnd)] == ["Hé", "llo", " wörld"]
    assert isinstance(items[-1], StreamEnd)


async def test_an_upstream_silent_mid_stream_times_out(misbehaving_url, settings):
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    event = b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    first_chunk = b"%x\r\n%s\r\n" % (len(event), event)
    provider = OpenAICompatProvider("openai_compat", f"{misbehaving_url(head + first_chunk, close=False)}/v1", "key")
    started = time.monotonic()

    deltas, error = await deltas_before_error(provider, "fake-model")

    assert deltas == ["Hi"] and (error.outcome, error.retryable) == ("timeout", True)
    assert 0.3 <= time.monotonic() - started < 1.5


async def test_a_caller_slow_to_take_the_next_piece_is_not_a_silent_upstream(compat, settings):
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    deltas = []
    async for item in compat.stream(MESSAGES, "fake-model", {}):
        if not isinstance(item, StreamEnd):
            deltas.append(item)
            await asyncio.sleep(0.2)  # the whole reply waits in the buffer: 1.2 s of no reading

    assert deltas == REPLY_WORDS


async def test_a_streamed_body_arms_no_read_timer_per_packet(compat, monkeypatch):
    loop = asyncio.get_running_loop()
    armed = []
    call_later = loop.call_later

    def counting(delay, callback, *args, **kwargs):
        armed.append(getattr(callback, "__name__", ""))
        return call_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", counting)
    deltas, _ = await collect(compat, "fake-model")

    assert deltas == REPLY_WORDS  # sent as packets of their own
    # aiohttp's, armed at the request's start, until the response's headers: not once per packet since
    assert armed.count("_on_read_timeout") <= 2


def test_a_finished_loops_client_is_closed_and_let_go(upstream):
    async def call() -> tuple[httpx.AsyncClient, asyncio.AbstractEventLoop]:
        provider = OpenAICompatProvider("openai_compat", f"{upstream.url}/v1", "key")
        await provider.complete(MESSAGES, "fake-model", {})
        return http.get_client(), asyncio.get_running_loop()

    finished = [asyncio.run(call()) for _ in range(3)]

    assert all(client.is_closed for client, _ in finished)
    assert not any(loop in http._clients for _, loop in finished)


def test_a_finished_loop_is_let_go(upstream):
    async def call() -> weakref.ref[asyncio.AbstractEventLoop]:
        provider = OpenAICompatProvider("openai_compat", f"{upstream.url}/v1", "key")
        assert (await collect(provider, "fake-model"))[0] == REPLY_WORDS  # a stream: read under the read timer
        return weakref.ref(asyncio.get_running_loop())

    finished = [asyncio.run(call()) for _ in range(3)]
    gc.collect()

    assert [loop() for loop in finished] == [None] * 3  # its client, its read timer: nothing keeps it


async def test_it_reports_a_connection_cut_after_the_deltas_it_delivered(compat):
    deltas, error = await deltas_before_error(compat, "drop-after-3")

    assert deltas == REPLY_WORDS[:3]
    assert error.outcome == "connection_lost"


async def test_it_reports_an_error_event_after_the_deltas_it_delivered(compat):
    deltas, error = await deltas_before_error(compat, "error-after-2")

    assert deltas == REPLY_WORDS[:2]
    assert error.outcome == "stream_error"
    assert "fake upstream broke mid-stream" in str(error)


async def test_openrouter_is_served_with_its_own_key_and_app_title(upstream):
    await collect(get_provider("openrouter"), "fake-model")

    request = upstream.requests[-1]
    assert request["path"] == "/openrouter/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer openrouter-test-key"
    assert request["headers"]["X-Title"] == "AI Hub"


def test_a_provider_without_its_key_or_url_is_not_offered(upstream, settings):
    settings.OPENROUTER_API_KEY = settings.GEMINI_API_KEY = settings.OPENAI_COMPAT_BASE_URL = ""
    settings.LOCAL_MODEL_ENABLED = False

    assert [get_provider(name) for name in ("openrouter", "gemini", "openai_compat", "local")] == [None] * 4


@pytest.mark.parametrize("provider", ["compat", "gemini"])
async def test_an_event_that_is_not_a_json_object_is_a_bad_response(provider, request):
    _, error = await deltas_before_error(request.getfixturevalue(provider), "bad-event")

    assert error.outcome == "bad_response"


@pytest.mark.parametrize("provider", ["compat", "gemini"])
async def test_a_reply_that_is_not_a_json_object_is_a_bad_response(provider, request):
    with pytest.raises(ProviderError) as caught:
        await request.getfixturevalue(provider).complete(MESSAGES, "bad-event", {})

    assert caught.value.outcome == "bad_response"


# Gemini


async def test_gemini_streams_over_sse_with_its_key_header(gemini, upstream):
    deltas, ends = await collect(gemini, "gemini-2.0-flash")

    assert deltas == REPLY_WORDS
    assert ends == [StreamEnd(Usage(11, 6), "stop")]
    request = upstream.requests[-1]
    assert request["path"] == "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert request["headers"]["x-goog-api-key"] == "gemini-test-key"
    assert "Authorization" not in request["headers"]


async def test_gemini_maps_the_conversation_and_params_to_its_request(gemini, upstream):
    await collect(
        gemini,
        "gemini-2.0-flash",
        {"temperature": 0.3, "top_p": 0.8, "max_tokens": 50, "stop": "END", "user": "ignored"},
    )

    assert upstream.requests[-1]["body"] == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "Say hello again"}]},
        ],
        "generationConfig": {"temperature": 0.3, "topP": 0.8, "maxOutputTokens": 50, "stopSequences": ["END"]},
    }


async def test_gemini_sends_no_config_or_system_instruction_when_there_is_none(gemini, upstream):
    await gemini.complete([{"role": "user", "content": "Hi"}], "gemini-2.0-flash", {})

    assert upstream.requests[-1]["body"] == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


async def test_gemini_completes_with_generate_content(gemini, upstream):
    completion = await gemini.complete(MESSAGES, "gemini-2.0-flash", {})

    assert completion.text == "".join(REPLY_WORDS)
    assert completion.end == StreamEnd(Usage(11, 6), "stop")
    assert upstream.requests[-1]["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert upstream.requests[-1]["headers"]["x-goog-api-key"] == "gemini-test-key"


@pytest.mark.parametrize(
    ("model", "status", "retryable"), [("fail-500", 500, True), ("fail-429", 429, True), ("fail-400", 400, False)]
)
async def test_gemini_classifies_http_errors(gemini, model, status, retryable):
    _, error = await deltas_before_error(gemini, model)

    assert (error.outcome, error.http_status, error.retryable) == (f"http_{status}", status, retryable)


async def test_gemini_reports_a_connection_cut_mid_stream(gemini):
    deltas, error = await deltas_before_error(gemini, "drop-after-2")

    assert deltas == REPLY_WORDS[:2]
    assert error.outcome == "connection_lost"


async def test_gemini_reports_an_error_event_mid_stream(gemini):
    deltas, error = await deltas_before_error(gemini, "error-after-1")

    assert deltas == REPLY_WORDS[:1]
    assert error.outcome == "stream_error"


async def test_gemini_counts_thinking_tokens_as_output(gemini):
    _, ends = await collect(gemini, "thinking")
    completion = await gemini.complete(MESSAGES, "thinking", {})

    assert ends[0].usage == completion.end.usage == Usage(11, 6 + 20)
