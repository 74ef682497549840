"""The cache's Redis connections are the process's, not each thread's: Django's ASGI handler runs each
request in a new thread, which opened a connection of its own before."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.core.cache import caches


@pytest.fixture(autouse=True)
def redis_cache():
    if not settings.REDIS_URL:
        pytest.skip("the cache is in Redis only with REDIS_URL")


def test_requests_in_new_threads_reuse_the_processs_connections():
    seen = []
    clients = set()

    def one_request():  # as Django runs a request's sync code: a thread of its own, its own cache object
        cache = caches["default"]
        cache.set("redis-cache-test", "shared", timeout=60)
        # The id Redis gave the connection this thread's cache uses
        seen.append((id(cache), cache.get("redis-cache-test"), cache._cache.get_client().client_id()))
        clients.add(id(cache._cache.get_client()))

    for _ in range(20):
        thread = threading.Thread(target=one_request)
        thread.start()
        thread.join()

    assert [value for _, value, _ in seen] == ["shared"] * 20
    assert len({cache_id for cache_id, _, _ in seen}) > 1  # Django's cache objects are still per thread
    assert len({connection for _, _, connection in seen}) == 1  # one connection served them all in turn
    assert len(clients) == 1  # and one client over it (Django built one per call)
