"""Readiness: can this process serve requests? Its database, and Redis when one is configured.

Upstream providers are left out on purpose: a provider outage would take every replica out of
rotation at once. Their state is on /ops/ and in /metrics instead."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection

from aihub import shared_state


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def readiness() -> dict[str, dict]:
    """Each dependency's check: {"status": "ok" | "failing", "ms": ..., "error": ...}."""
    checks = {"database": _database}
    if shared_state.redis_configured():
        checks["redis"] = _redis
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        started = time.monotonic()
        try:
            check()
            results[name] = {"status": "ok"}
        except Exception as exc:  # any failure means "not ready", reported by type, never a 500
            results[name] = {"status": "failing", "error": type(exc).__name__}
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    return results
