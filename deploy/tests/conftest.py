"""Fixtures of the deployment tests: the static files collected as production does, the settings of a
production process, and tools that only these tests need (nginx, prometheus)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

import pytest
from django.conf import settings

# One key for every process a test starts, long enough for ENVIRONMENT=production.
PRODUCTION_SECRET_KEY = secrets.token_urlsafe(50)


def tool(name: str) -> str:
    """The path of a program (nginx, prometheus), or a skip (a failure with REQUIRE_DEPLOY_TOOLS=1)."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if found:
        return found
    if os.environ.get("REQUIRE_DEPLOY_TOOLS") == "1":
        pytest.fail(f"{name} is missing and REQUIRE_DEPLOY_TOOLS=1")
    pytest.skip(f"{name} is missing (Debian: apt-get install {name}; REQUIRE_DEPLOY_TOOLS=1 makes this a failure)")


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory):
    """STATIC_ROOT after `collectstatic` with DEBUG=0: the manifest storage, hashed and compressed."""
    root = tmp_path_factory.mktemp("collected") / "static"
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=settings.BASE_DIR,
        env={**os.environ, **production_settings(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stderr[-2000:]
    assert (root / "staticfiles.json").exists()
    return root


def production_settings(static_root) -> dict[str, str]:
    """The environment of a production process serving http://127.0.0.1 behind nothing."""
    return {
        "DEBUG": "0",
        "ENVIRONMENT": "production",
        "SECRET_KEY": PRODUCTION_SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "STATIC_ROOT": str(static_root),
        "LOCAL_MODEL_ENABLED": "0",
        "OPENROUTER_API_KEY": "",
        "GEMINI_API_KEY": "",
        "LOG_LEVEL": "WARNING",
    }
