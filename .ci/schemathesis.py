"""Schemathesis against a live server: the API schema (/api/openapi.json) must be what the server does.

Starts the fake upstream (chat/tests/fake_upstream.py) and the production server (`manage.py serve`)
on a database of its own, issues a key on the Enterprise plan (no limits: the limit statuses 402/403/429
are documented, not provoked),
then runs every Schemathesis check twice: with a fixed seed, and with a random one that is printed
for replay (SCHEMATHESIS_SEED=<n> runs that one alone). Bounded in examples per operation and in
time. Fails on any Schemathesis failure and on any traceback in the server's log.

    .venv/bin/python .ci/schemathesis.py
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")
os.environ.setdefault("DEBUG", "1")  # this process only reads the settings (start_server wants BASE_DIR)

FIXED_SEED = 20261202
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))  # per operation and phase
SECONDS = int(os.environ.get("SCHEMATHESIS_SECONDS", "300"))  # per run
SETUP = """
from accounts.api_keys import issue_key
from billing.models import Plan
from billing.subscriptions import start_subscription
from django.contrib.auth import get_user_model
user = get_user_model().objects.create_user("schemathesis@example.com", "correct horse battery")
start_subscription(user, Plan.objects.get(slug="enterprise"))
print(issue_key(user, "schemathesis")[1])
"""


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def schemathesis(url: str, key: str, seed: int) -> int:
    # No --checks: Schemathesis 4 runs every check by default, and the CLI option would override the
    # one per-operation exception in schemathesis.toml.
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(ROOT / ".ci" / "schemathesis.toml"),
        "run",
        f"{url}/api/openapi.json",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(seed),
        "--header",
        f"Authorization: Bearer {key}",
        "--request-timeout",
        "10",
        "--max-response-time",
        "15",  # a hang, not the jitter of a loaded CI machine
        "--workers",
        "1",  # Python 3.11's ast (Hypothesis describes its filters with it) is not safe across threads
        "--max-failures",
        "20",
    ]
    print(f"\n== schemathesis, seed {seed} (replay: SCHEMATHESIS_SEED={seed} python .ci/schemathesis.py)", flush=True)
    try:
        return subprocess.run(command, cwd=ROOT, timeout=SECONDS, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"schemathesis did not finish in {SECONDS} s", flush=True)
        return 1


def main() -> int:
    from aihub.testing import start_server, stop_process, wait_until_healthy
    from chat.tests.fake_searxng import FakeSearch
    from chat.tests.fake_upstream import FakeUpstream

    upstream = FakeUpstream().start()
    search = FakeSearch().__enter__()
    workdir = Path(tempfile.mkdtemp(prefix="aihub-schemathesis-"))
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "LOCAL_MODEL_ENABLED": "0",
        "OPENAI_COMPAT_BASE_URL": f"{upstream.url}/v1",
        "OPENROUTER_API_KEY": "",
        "GEMINI_API_KEY": "",
        "PROVIDER_CHAIN": "openai_compat",
        "UPSTREAM_READ_TIMEOUT": "3",
        "WEB_SEARCH_BACKEND": "searxng",
        "SEARXNG_URL": search.url,
    }
    env.pop("REDIS_URL", None)  # its own in-memory layer and cache: nothing shared with other runs
    manage(env, "migrate", "--noinput")
    manage(env, "seed")
    key = manage(env, "shell", "-c", SETUP).strip().splitlines()[-1]
    log_path = workdir / "server.log"
    with open(log_path, "w") as log:
        server, url = start_server(env, log)
        try:
            wait_until_healthy(url, server)
            replay = os.environ.get("SCHEMATHESIS_SEED")
            seeds = [int(replay)] if replay else [FIXED_SEED, random.SystemRandom().randrange(2**32)]
            failed = [seed for seed in seeds if schemathesis(url, key, seed) != 0]
        finally:
            stop_process(server)
            upstream.stop()
            search.__exit__(None, None, None)
    server_log = log_path.read_text()
    if "Traceback" in server_log:
        print(f"\nThe server logged a traceback:\n{server_log}", flush=True)
        return 1
    if failed:
        print(f"\nSchemathesis failed with seed(s) {failed}", flush=True)
        return 1
    print(f"\nSchemathesis passed with seeds {seeds}; no traceback in the server's log", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
