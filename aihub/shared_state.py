"""What server processes share: whether Redis is configured, and version numbers in it.

A process that keeps a copy of something (the catalogue, API key lookups) reads that thing's version
on each request and drops its copy when the number moved; whoever changes it bumps the number.
Without Redis (REDIS_URL empty) the cache is per process and cannot see other processes' changes:
callers then keep no copies (`redis_configured()` is the one switch for that).

Versions are read from Redis directly, not through Django's cache.get (which builds a client per
call: four times the CPU). Django's Redis cache stores integers unpickled, so the value is the number.
A cache of another kind (a test's in-process stand-in) is read through Django.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import cache as once_per_process

import redis
import redis.asyncio
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def bump(name: str) -> None:
    """Move the version `name` on (every process sees it on its next read)."""
    cache.add(name, 0, timeout=None)
    cache.incr(name)


@once_per_process
def client() -> redis.Redis:
    """This process's Redis client (sync), for what is kept in Redis itself rather than Django's cache."""
    return redis.Redis.from_url(settings.REDIS_URL)


# Async clients are bound to their event loop.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = weakref.WeakKeyDictionary()


def _number(value: bytes | str | None) -> int:
    return int(value) if value is not None else 0


def _in_redis() -> bool:
    return isinstance(caches["default"], RedisCache)


def version(name: str) -> int:
    """The version `name` (0 until first bumped). Sync: one Redis round trip."""
    if not _in_redis():
        return int(cache.get(name, 0))
    return _number(client().get(cache.make_and_validate_key(name)))


async def aversion(name: str) -> int:
    """`version` from async code: an async client, no worker thread."""
    if not _in_redis():
        return int(cache.get(name, 0))  # in-process memory: nothing to wait for
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    return _number(await client.get(cache.make_and_validate_key(name)))
