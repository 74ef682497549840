"""ENVIRONMENT: staging and production refuse to start with DEBUG on or without their own secret key,
and `check --deploy` is clean with the settings a deployment uses."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

GOOD_KEY = secrets.token_urlsafe(50)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ENVIRONMENT")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**environment, "ALLOWED_HOSTS": "aihub.example.com", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_a_deployment_refuses_debug(environment):
    result = manage("check", ENVIRONMENT=environment, DEBUG="1", SECRET_KEY=GOOD_KEY)
    assert result.returncode != 0
    assert f"DEBUG must be off when ENVIRONMENT={environment}" in result.stderr


@pytest.mark.parametrize(
    "key",
    ["", "short-key", "dev-insecure-key-only-for-debug-never-in-production-0123456789", "django-insecure-" + "x" * 50],
)
def test_production_refuses_a_missing_short_or_development_key(key):
    result = manage("check", DEBUG="0", SECRET_KEY=key)  # ENVIRONMENT defaults to production with DEBUG off
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_an_unknown_environment_is_refused():
    result = manage("check", ENVIRONMENT="prod", DEBUG="0", SECRET_KEY=GOOD_KEY)
    assert result.returncode != 0
    assert "ENVIRONMENT must be development, staging or production" in result.stderr


def test_the_deploy_check_is_clean_in_production():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0", SECRET_KEY=GOOD_KEY)
    assert result.returncode == 0, result.stderr
