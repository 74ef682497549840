"""Django's Redis cache with one connection pool per process, shared by every thread.

Django keeps a cache object per thread (and asyncio context), each with a connection pool of its own, and
its ASGI handler runs each request's sync code in a new thread: every request that touched the cache (the
breakers, the rate limits, an added provider's lookup) opened a Redis connection, with its handshake on
both sides, and left it to the garbage collector. redis-py's pools are thread-safe (and reset themselves
in a forked child), so one pool per server serves all of a process's threads.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_pools: dict[tuple[str, str], Any] = {}
_pools_lock = threading.Lock()
# One redis-py client per pool too: Django builds one per cache call (0.1-0.2 ms of CPU each: its table of
# response callbacks), and a client over a pool is thread-safe (it takes a connection per command).
_clients: dict[int, Any] = {}


class SharedPoolClient(RedisCacheClient):
    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = _clients.get(id(pool))
        if client is None:
            with _pools_lock:
                client = _clients.get(id(pool))
                if client is None:
                    client = _clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client

    def _get_connection_pool(self, write: bool) -> Any:
        client: Any = self  # Django's own attributes, which its type stubs leave out
        server = client._servers[client._get_connection_pool_index(write)]
        key = (server, repr(sorted(client._pool_options.items())))
        pool = _pools.get(key)
        if pool is None:
            with _pools_lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = _pools[key] = client._pool_class.from_url(server, **client._pool_options)
        return pool


class SharedPoolRedisCache(RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolClient
