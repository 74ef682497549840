"""`manage.py serve` (what the image runs) at SIGTERM: no new connections, open API streams finish
and are metered complete, chat sockets are closed with 1012 and their replies kept and metered as
stopped, then the process exits."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.db import connection

from accounts.api_keys import issue_key
from aihub.testing import app_env, session_cookie_header, start_server, wait_until_healthy
from billing.metering import count_text_tokens
from billing.models import Plan, Reservation, UsageRecord
from billing.subscriptions import start_subscription
from chat.catalogue.models import AIModel, Provider
from chat.models import Message
from chat.tests.fake_upstream import REPLY_WORDS, SLOW_CHUNKS
from chat.tests.test_crash_recovery import FULL_SLOW_REPLY, ChatSocket

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the server process needs the shared database"),
]


def stops_listening(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
        except httpx.ConnectError:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_lets_an_open_stream_finish_and_refuses_new_connections(upstream, user):
    AIModel.objects.create(
        slug="test/slow", provider=Provider.OPENAI_COMPAT, upstream_id="slow", name="Slow", input_price_per_m=Decimal(1)
    )
    start_subscription(user, Plan.objects.get(slug="enterprise"))
    _, key = issue_key(user, "drain")
    server, url = start_server(app_env(upstream.url), drain=30)
    try:
        wait_until_healthy(url, server)
        chunks: list[str] = []
        first = threading.Event()

        def stream() -> None:
            body = {"model": "test/slow", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30) as reply:
                for line in reply.iter_lines():
                    if line.startswith("data: "):
                        chunks.append(line)
                        first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(10)
        server.send_signal(signal.SIGTERM)
        assert stops_listening(url, seconds=5)
        reader.join(timeout=30)
        assert chunks[-1] == "data: [DONE]"
        text = "".join(
            choice["delta"].get("content", "")
            for chunk in chunks[:-1]
            for choice in json.loads(chunk.removeprefix("data: "))["choices"]
        )
        assert text == "".join(REPLY_WORDS) * (SLOW_CHUNKS // len(REPLY_WORDS))  # the whole reply
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
    record = UsageRecord.objects.get()
    assert record.status == UsageRecord.Status.COMPLETE


def test_sigterm_closes_chat_sockets_with_service_restart_and_meters_their_replies(upstream, free_user):
    AIModel.objects.create(slug="test/slow", provider=Provider.OPENAI_COMPAT, upstream_id="slow", name="Slow (free)")
    server, url = start_server(app_env(upstream.url), drain=30)
    try:
        wait_until_healthy(url, server)
        chat = ChatSocket(url, "/ws/chat/new/", session_cookie_header(free_user).decode())
        chat.send({"message": "Tell me a long story", "model": "test/slow"})
        deadline = time.monotonic() + 10
        while not Message.objects.filter(role=Message.Role.ASSISTANT, content__regex=".{20}").exists():
            assert time.monotonic() < deadline, "no reply streams"
            time.sleep(0.1)
        server.send_signal(signal.SIGTERM)
        assert chat.close_code() == 1012  # "service restart": the page reconnects, to another replica
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.status == Message.Status.STOPPED and FULL_SLOW_REPLY.startswith(reply.content)
    usage = UsageRecord.objects.get()
    assert usage.request_id == reply.usage_id and usage.status == UsageRecord.Status.STOPPED
    assert usage.completion_tokens == count_text_tokens(reply.content) > 0
    assert not Reservation.objects.exists()


def test_an_idle_server_wakes_about_once_a_second(upstream):
    server, url = start_server(app_env(upstream.url))

    def event_loop_wakeups() -> int:  # the main thread's voluntary context switches
        status = Path(f"/proc/{server.pid}/task/{server.pid}/status").read_text()
        return int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))

    try:
        wait_until_healthy(url, server)
        time.sleep(1)
        before = event_loop_wakeups()
        time.sleep(4)
        assert event_loop_wakeups() - before < 20  # uvicorn's own tick: 40 in 4 s
        server.send_signal(signal.SIGTERM)
        assert stops_listening(url, seconds=1)  # the stop signal wakes it at once
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
