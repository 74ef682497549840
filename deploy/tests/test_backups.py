"""The README's backup runbook, run: pg_dump of a database in use, pg_restore into a fresh database,
and the app serving the restored data (accounts, API keys, conversations, usage)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from accounts.api_keys import issue_key
from aihub.testing import start_daphne, stop_process, wait_until_healthy
from chat.models import Conversation, Message

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the runbook is for PostgreSQL"),
]


def database_url(name: str) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{name}"


@pytest.fixture
def fresh_database():
    name = f"{connection.settings_dict['NAME']}_restored"
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_dump_restored_into_a_fresh_database_is_served_by_the_app(user, fresh_database, tmp_path):
    if not shutil.which("pg_dump"):
        pytest.skip("pg_dump is missing (Debian: postgresql-client)")
    conversation = Conversation.objects.create(user=user, title="Quarterly plan")
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Before the backup")
    _, raw_key = issue_key(user, "backup test")

    # The runbook's two commands.
    dump = tmp_path / "aihub.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", database_url(connection.settings_dict["NAME"])],
        check=True,
        timeout=120,
    )
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={database_url(fresh_database)}", str(dump)],
        check=True,
        timeout=120,
    )

    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": database_url(fresh_database), "LOCAL_MODEL_ENABLED": "0"}
    migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--check"], env=env, cwd=settings.BASE_DIR)
    assert migrated.returncode == 0, "the restored database misses migrations"
    process, url = start_daphne(env)
    try:
        wait_until_healthy(url, process)
        assert httpx.get(f"{url}/readyz").json()["checks"]["database"]["status"] == "ok"
        sessions = httpx.get(f"{url}/api/v1/sessions", headers={"Authorization": f"Bearer {raw_key}"})
        assert sessions.status_code == 200, sessions.text
        assert "Quarterly plan" in sessions.text
    finally:
        stop_process(process)
