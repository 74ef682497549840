"""The one shared httpx.AsyncClient of this process (one per event loop: clients are loop-bound)."""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def get_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.UPSTREAM_CONNECT_TIMEOUT,
                read=settings.UPSTREAM_READ_TIMEOUT,
                write=settings.UPSTREAM_CONNECT_TIMEOUT,
                pool=settings.UPSTREAM_CONNECT_TIMEOUT,
            ),
            limits=httpx.Limits(max_connections=500, max_keepalive_connections=100, keepalive_expiry=30),
            follow_redirects=False,
        )
        _clients[loop] = client
    return client
