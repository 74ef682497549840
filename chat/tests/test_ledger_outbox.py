"""The database goes away mid-stream: the client still gets the whole reply, its usage row is kept in the
outbox (Redis, or files where Redis is not configured) and written once the database is back
(billing.outbox, chat.upkeep). Real processes; the real PostgreSQL refuses them for a while."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from accounts.api_keys import issue_key
from aihub import shared_state
from aihub.testing import app_env, start_daphne, wait_until_healthy
from billing import outbox
from billing.models import Plan, Reservation, UsageRecord
from billing.subscriptions import start_subscription
from chat.catalogue.models import AIModel, Provider
from chat.models import Message
from chat.tests.fake_upstream import REPLY_WORDS, USAGE

from .test_crash_recovery import Reader, completion_text, kill_all, v1_stream, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the server process needs the shared database"),
]

APP_NAME = "aihub-under-test"


@contextlib.contextmanager
def database_refusing_the_app():
    """The test database refuses new connections and the app's are cut (the test's own connection stays);
    connections are allowed again on leaving."""
    db = connection.settings_dict
    admin = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"], dbname="postgres", autocommit=True
    )
    name = psycopg.sql.Identifier(db["NAME"])
    try:
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        cut = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s"
        admin.execute(cut, [APP_NAME])
        yield
    finally:
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
        admin.close()


@pytest.fixture(autouse=True)
def empty_outbox():
    """No entry left by another test (Redis is shared by the test run), none left for the next."""
    if settings.REDIS_URL:
        shared_state.client().delete(outbox.REDIS_KEY)
    yield
    if settings.REDIS_URL:
        shared_state.client().delete(outbox.REDIS_KEY)


def app_environment(upstream_url: str, outbox_dir: Path, **overrides: str) -> dict[str, str]:
    env = app_env(
        upstream_url,
        LEDGER_OUTBOX_DIR=str(outbox_dir),
        HEARTBEAT_SECONDS="1",
        SWEEP_SECONDS="1",
        SETTLE_RETRIES="2",
        SETTLE_RETRY_SECONDS="0.2",
        DATABASE_POOL_TIMEOUT="1",
        **overrides,
    )
    env["DATABASE_URL"] += f"?application_name={APP_NAME}"  # the connections the outage cuts
    return env


def outbox_entries(directory: Path | None) -> int:
    if directory is not None:
        return len(list(directory.glob("*.json")))
    return shared_state.client().hlen(outbox.REDIS_KEY)


@pytest.mark.parametrize("kept_in", ["redis", "files"])
def test_a_stream_that_ends_while_the_database_is_down_is_metered_when_it_is_back(kept_in, upstream, user, tmp_path):
    if kept_in == "redis" and not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    AIModel.objects.create(
        slug="test/steady",
        provider=Provider.OPENAI_COMPAT,
        upstream_id="steady",
        name="Steady",
        input_price_per_m=Decimal(1),
        output_price_per_m=Decimal(2),
    )
    start_subscription(user, Plan.objects.get(slug="pro"))  # a limited plan: its reservation waits for the row
    _, key = issue_key(user, "outage")
    directory = tmp_path if kept_in == "files" else None
    env = app_environment(upstream.url, tmp_path, **({"REDIS_URL": ""} if directory else {}))
    server, url = start_daphne(env)
    try:
        wait_until_healthy(url, server)
        reader = v1_stream(url, key, "test/steady")
        with database_refusing_the_app():
            reader.join(30)
            # The client was told the truth: the whole reply, ended normally.
            assert reader.events[-1] == "[DONE]" and completion_text(reader.events) == "".join(REPLY_WORDS) * 2
            assert wait_for(lambda: outbox_entries(directory) == 1, 10)
            assert not UsageRecord.objects.exists() and Reservation.objects.count() == 1
        assert wait_for(UsageRecord.objects.exists, 15)  # drained by the app's upkeep
        usage = UsageRecord.objects.get()
        assert usage.status == UsageRecord.Status.COMPLETE and usage.model_slug == "test/steady"
        assert (usage.prompt_tokens, usage.completion_tokens) == (USAGE["prompt_tokens"], USAGE["completion_tokens"])
        assert usage.tokens_source == UsageRecord.Source.REPORTED
        assert [a.outcome for a in usage.attempts.all()] == ["ok"]
        assert wait_for(lambda: outbox_entries(directory) == 0, 5)
        assert not Reservation.objects.exists()
    finally:
        kill_all([server])


def test_a_chat_reply_that_ends_while_the_database_is_down_is_told_whole_and_stored_when_it_is_back(
    upstream, user, tmp_path
):
    """The REST stream's reply row waits with its usage row: the client's last event says the reply as its
    request left it, and the upkeep's drain stores it."""
    AIModel.objects.create(slug="test/steady", provider=Provider.OPENAI_COMPAT, upstream_id="steady", name="Steady")
    _, key = issue_key(user, "outage")
    server, url = start_daphne(app_environment(upstream.url, tmp_path))  # the outbox: Redis if configured, else files
    try:
        wait_until_healthy(url, server)
        reader = Reader(url, "/api/v1/chat/stream", {"message": "Hi", "model": "test/steady"}, key)
        reader.start()
        assert reader.started.wait(10)
        with database_refusing_the_app():
            reader.join(30)
            end = json.loads(reader.events[-2])
            assert reader.events[-1] == "[DONE]" and end["type"] == "end"
            whole = "".join(REPLY_WORDS) * 2
            assert (end["message"]["status"], end["message"]["content"]) == ("complete", whole)
            assert end["message"]["usage"]["completion_tokens"] == USAGE["completion_tokens"]
            reply = Message.objects.get(pk=end["message"]["id"])
            assert reply.status == Message.Status.STREAMING and not UsageRecord.objects.exists()
        assert wait_for(lambda: Message.objects.get(pk=reply.pk).status == Message.Status.COMPLETE, 15)
        assert Message.objects.get(pk=reply.pk).content == whole
        usage = UsageRecord.objects.get(request_id=reply.usage_id)
        assert usage.status == UsageRecord.Status.COMPLETE and usage.completion_tokens == USAGE["completion_tokens"]
        assert not Reservation.objects.exists()
    finally:
        kill_all([server])
