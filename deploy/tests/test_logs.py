"""Structured logs: JSON lines with the request id that is on the usage row and sent upstream; no
prompt, reply, key or password in them."""

from __future__ import annotations

import json
import logging

import pytest

from billing.models import UsageRecord
from chat.tests.api_fixtures import api_client, catalogue, issued  # noqa: F401
from deploy.logs import JsonFormatter, RedactSecrets, RequestId, logging_config

pytestmark = pytest.mark.django_db

PROMPT = "my very private question about the merger"


def formatted(record: logging.LogRecord) -> str:
    RequestId().filter(record)
    RedactSecrets().filter(record)
    return JsonFormatter().format(record)


@pytest.mark.django_db(transaction=True)
async def test_a_request_logs_one_json_line_with_the_request_id_it_sent_upstream(
    api_client, catalogue, issued, upstream, caplog
):
    with caplog.at_level(logging.INFO, logger="aihub.requests"):
        response = await api_client.post(
            "/v1/chat/completions", {"model": "test/fake-model", "messages": [{"role": "user", "content": PROMPT}]}
        )
    assert response.status_code == 200
    record = await UsageRecord.objects.aget()
    lines = [json.loads(formatted(r)) for r in caplog.records if r.name == "aihub.requests"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == str(record.request_id)
    assert upstream.requests[-1]["headers"]["X-Request-ID"] == str(record.request_id)
    assert line["message"] == "model request complete"
    assert (line["model"], line["provider"], line["prompt_tokens"], line["completion_tokens"]) == (
        "test/fake-model",
        "openai_compat",
        11,
        6,
    )
    everything = "\n".join(formatted(r) for r in caplog.records)
    assert PROMPT not in everything and "Hello from the fake upstream" not in everything
    assert issued[1] not in everything


@pytest.mark.parametrize(
    "message",
    [
        "calling with Authorization: Bearer ahk_0123456789abcdefghijklmnopqrstuv",
        "key=ahk_0123456789abcdefghijklmnopqrstuv",
        "upstream said: invalid api_key sk-or-v1-0123456789abcdef",
        "login failed, password=hunter2hunter2",
        "gemini x-goog-api-key: AIzaSyA-0123456789abcdefg",
    ],
)
def test_keys_tokens_and_passwords_are_masked(message):
    line = json.loads(formatted(logging.LogRecord("x", logging.WARNING, "", 0, message, (), None)))
    for secret in ("ahk_0123456789", "sk-or-v1", "hunter2", "AIzaSyA"):
        assert secret not in line["message"]
    assert "[redacted]" in line["message"]


def test_production_logs_json_and_development_text():
    assert logging_config("json", "INFO")["handlers"]["console"]["formatter"] == "json"
    assert logging_config("text", "INFO")["handlers"]["console"]["formatter"] == "text"
