"""Streaming edges of /v1/chat/completions: failure after the first chunk, client disconnect, usage."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async

from aihub.asgi import application
from billing.models import UsageRecord
from chat.tests.api_fixtures import api_client, catalogue, issued, sse_events, streamed_body  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]


async def test_it_ends_a_broken_stream_with_an_error_chunk(api_client, catalogue, upstream):
    failing = catalogue["error-after-2"]
    failing.fallback = catalogue["fake-model"]  # must not be used: text was already sent
    await sync_to_async(failing.save)(update_fields=["fallback"])
    response = await api_client.post(
        "/v1/chat/completions", {"model": "test/error-after-2", "messages": HELLO, "stream": True}
    )
    assert response.status_code == 200
    events = sse_events(await streamed_body(response))
    assert events[-1] == "[DONE]"
    last = events[-2]
    assert last["choices"][0]["finish_reason"] == "error"
    assert last["error"]["code"] == "upstream_error"
    assert last["error"]["message"] == "The model's provider failed: the model's provider reported an error."
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text == "Hello from"
    assert [r["body"]["model"] for r in upstream.requests] == ["error-after-2"]  # nothing retried
    record = await UsageRecord.objects.aget()
    assert record.status == UsageRecord.Status.FAILED


async def test_it_reports_a_dropped_connection_after_the_first_chunk(api_client, catalogue):
    response = await api_client.post(
        "/v1/chat/completions", {"model": "test/drop-after-2", "messages": HELLO, "stream": True}
    )
    events = sse_events(await streamed_body(response))
    assert events[-2]["choices"][0]["finish_reason"] == "error" and events[-1] == "[DONE]"


@pytest.mark.parametrize("stream", [False, True])
async def test_it_keeps_an_explicit_zero_usage(api_client, catalogue, stream):
    response = await api_client.post(
        "/v1/chat/completions",
        {"model": "test/zero-usage", "messages": HELLO, "stream": stream, "stream_options": {"include_usage": True}},
    )
    if stream:
        usage = sse_events(await streamed_body(response))[-2]["usage"]
    else:
        usage = response.json()["usage"]
    assert usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    record = await UsageRecord.objects.aget()
    assert (record.prompt_tokens, record.completion_tokens, record.cost) == (0, 0, 0)


async def test_it_counts_tokens_when_the_upstream_gives_none(api_client, catalogue):
    response = await api_client.post("/v1/chat/completions", {"model": "test/no-usage", "messages": HELLO})
    usage = response.json()["usage"]
    assert usage["completion_tokens"] == 6 and usage["prompt_tokens"] > 0


class AsgiCall:
    """One HTTP request driven through the ASGI application by hand, so the client can hang up."""

    def __init__(self, path: str, body: dict, raw_key: str):
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 5000),
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {raw_key}".encode()),
            ],
        }
        self.body = json.dumps(body).encode()
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.incoming.put_nowait({"type": "http.request", "body": self.body, "more_body": False})
        self.sent: asyncio.Queue = asyncio.Queue()

    async def receive(self):
        return await self.incoming.get()

    async def send(self, message):
        await self.sent.put(message)

    def start(self) -> asyncio.Task:
        return asyncio.create_task(application(self.scope, self.receive, self.send))

    def hang_up(self) -> None:
        self.incoming.put_nowait({"type": "http.disconnect"})


async def test_a_client_disconnect_closes_the_upstream_and_meters_what_was_delivered(catalogue, issued, upstream):
    call = AsgiCall("/v1/chat/completions", {"model": "test/slow", "messages": HELLO, "stream": True}, issued[1])
    task = call.start()
    start = await asyncio.wait_for(call.sent.get(), 10)
    assert start["status"] == 200
    received = b""
    while received.count(b"data: ") < 3:
        received += (await asyncio.wait_for(call.sent.get(), 10)).get("body", b"")
    call.hang_up()
    hung_up = time.monotonic()
    await asyncio.wait_for(task, 5)
    closed = await sync_to_async(upstream.wait_for)(lambda u: u.disconnects == 1, 2.0)
    assert closed and time.monotonic() - hung_up < 1.5
    assert upstream.open_streams == 0
    delivered = sse_events(received)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in delivered if isinstance(e, dict))
    record = await UsageRecord.objects.aget()  # exactly one row
    assert record.status == UsageRecord.Status.STOPPED
    # The fake upstream sends no usage for a cut stream: the delivered text was counted here.
    assert 0 < record.completion_tokens <= len(text.split()) + 3
    assert await UsageRecord.objects.acount() == 1
