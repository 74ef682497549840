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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


# Versions read ahead for the request in hand (`read_ahead`), in its context: its task, the tasks it starts and
# the sync calls it makes (they run in a copy of it, which shares this dict). Each serves one read.
_read_ahead: ContextVar[dict[str, int] | None] = ContextVar("shared_state_read_ahead", default=None)


@contextmanager
def reading_ahead() -> Iterator[None]:
    """A request's span: within, `read_ahead` keeps what it reads for the reads that follow; after, nothing read
    ahead is left (asgiref's async_to_sync hands context changes back to its caller's thread)."""
    token = _read_ahead.set({})
    try:
        yield
    finally:
        _read_ahead.reset(token)


def _taken(name: str) -> int | None:
    ahead = _read_ahead.get()
    return ahead.pop(name, None) if ahead else None


def version(name: str) -> int:
    """The version `name` (0 until first bumped). Sync: one Redis round trip, none if read ahead."""
    if (ahead := _taken(name)) is not None:
        return ahead
    if not _in_redis():
        return int(cache.get(name, 0))
    return _number(client().get(cache.make_and_validate_key(name)))


async def aversion(name: str) -> int:
    """`version` from async code: an async client, no worker thread."""
    if (ahead := _taken(name)) is not None:
        return ahead
    if not _in_redis():
        return int(cache.get(name, 0))  # in-process memory: nothing to wait for
    return _number(await _async_client().get(cache.make_and_validate_key(name)))


async def read_ahead(*names: str) -> None:
    """Read these versions in one round trip for the request in hand (within `reading_ahead`; outside of
    one, nothing): its next read of each (`version` in its sync calls too) takes the value read here."""
    ahead = _read_ahead.get()
    if ahead is None or not _in_redis():
        return
    values = await _async_client().mget([cache.make_and_validate_key(name) for name in names])
    ahead.update(zip(names, map(_number, values), strict=True))


def _async_client() -> redis.asyncio.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    return client
