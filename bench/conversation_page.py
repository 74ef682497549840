"""Server time of the chat page of a 2,000-message conversation (BENCHMARKS.md, "Long conversations").

    DATABASE_URL=postgres://aihub:aihub@127.0.0.1:5432/aihub_bench ../.venv/bin/python manage.py migrate
    DATABASE_URL=postgres://aihub:aihub@127.0.0.1:5432/aihub_bench ../.venv/bin/python bench/conversation_page.py

Makes (once) a user with a 2,000-message conversation (Markdown replies of a few lines) in the database
of DATABASE_URL, then requests its page REPEAT times through Django's test client: the whole request in
this process (middleware, session, view, queries, templates), no network. Prints the median and the 95th
percentile of the wall time, the median CPU time of this process (the figure that does not count
waiting for other processes on a busy machine, nor PostgreSQL's own work), and the queries of one request.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")
os.environ.setdefault("DEBUG", "1")  # static files without a collectstatic manifest

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from chat.models import Conversation, Message  # noqa: E402

MESSAGES = 2000
REPEAT = int(os.environ.get("REPEAT", 50))
EMAIL = "bench-long@example.com"
REPLY = "Here is what I found:\n\n- **first**, the harbour lights\n- then `the keeper`\n\n```python\nprint('hi')\n```"


def conversation() -> tuple:
    user, _ = get_user_model().objects.get_or_create(email=EMAIL)
    existing = Conversation.objects.filter(user=user, title="bench: 2,000 messages").first()
    if existing is None:
        existing = Conversation.objects.create(user=user, title="bench: 2,000 messages")
        messages = Message.objects.bulk_create(
            Message(conversation=existing, role=role, content=f"Question {n}?" if role == "user" else REPLY)
            for n, role in zip(range(MESSAGES), ["user", "assistant"] * MESSAGES, strict=False)
        )
        for previous, message in itertools.pairwise(messages):  # one path: each follows the one before it
            message.parent = previous
        Message.objects.bulk_update(messages, ["parent"], batch_size=500)
    return user, existing


def main() -> None:
    user, chat = conversation()
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)
    url = f"/chat/{chat.pk}/"
    for _ in range(3):  # warm: templates compiled, catalogue and connections in place
        assert client.get(url).status_code == 200
    timings, cpu = [], []
    for _ in range(REPEAT):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    timings.sort()
    print(
        f"{connection.vendor}, {chat.messages.count()} messages, {REPEAT} requests: "
        f"median {statistics.median(timings):.1f} ms, p95 {timings[int(len(timings) * 0.95) - 1]:.1f} ms "
        f"(CPU of this process: median {statistics.median(cpu):.1f} ms), {len(queries)} queries"
    )


if __name__ == "__main__":
    main()
