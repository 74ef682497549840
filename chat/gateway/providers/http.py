"""The one shared httpx.AsyncClient of this process (one per event loop: clients are loop-bound).

Its transport is aiohttp's (httpx-aiohttp), not httpcore's: httpcore's pool polls the socket of every idle
connection on each request and each response's close (`has_expired`), 15% of the gateway's CPU at 32 requests
in flight, and reads streams through anyio; aiohttp's protocol hears of a closed connection from the event loop
and parses in C. Same session, every-limit plan: b 3.96 -> 3.2, d 8.7 -> 6.2, e 8.2 -> 5.5 CPU-ms/req
(BENCHMARKS.md). Callers still see httpx's requests, responses and errors.
"""

from __future__ import annotations

import asyncio
import urllib.request
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport

MAX_CONNECTIONS = 500
KEEPALIVE_SECONDS = 30

# Per loop: its client, and the task that closes it when the loop ends (held here: a pending task nobody
# holds may be collected).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


def get_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    kept = _clients.get(loop)
    if kept is None or kept[0].is_closed:
        client = httpx.AsyncClient(
            transport=UpstreamTransport(client=_session),
            timeout=httpx.Timeout(
                connect=settings.UPSTREAM_CONNECT_TIMEOUT,
                read=settings.UPSTREAM_READ_TIMEOUT,
                write=settings.UPSTREAM_CONNECT_TIMEOUT,
                pool=settings.UPSTREAM_CONNECT_TIMEOUT,
            ),
            follow_redirects=False,
        )
        closing = loop.create_task(_closed_with_the_loop(loop, client), name="upstream client")
        kept = _clients[loop] = (client, closing)
    return kept[0]


async def _closed_with_the_loop(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
    """Close the client's connections as its loop ends (the loop's end cancels its tasks, this one too):
    aiohttp logs an error for a session left open. Its entry goes too: the session refers to the loop, so
    the weak key alone would never let a finished loop go."""
    try:
        await asyncio.Event().wait()
    finally:
        if _clients.get(loop, (None,))[0] is client:
            del _clients[loop]
        await client.aclose()


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS)
    # HTTP(S)_PROXY and NO_PROXY apply as they do for httpx's own transport; aiohttp reads them (and ~/.netrc)
    # on every request when told to, so only when a proxy is set.
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=bool(urllib.request.getproxies()),
        cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps the cookies, as it did on its own transport
    )


class UpstreamTransport(AiohttpTransport):
    """httpx-aiohttp's transport, aiohttp's errors raised as the httpx errors they are: its own map makes a
    refused connection or a server's disconnect a ConnectTimeout, and leaves some unmapped."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _httpx_errors():
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream):
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._stream.aclose()


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:  # mapped by httpx-aiohttp: mapped again from what aiohttp raised
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientError | TimeoutError):
            raise _as_httpx(cause) from cause
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _as_httpx(exc) from exc


def _as_httpx(exc: aiohttp.ClientError | TimeoutError) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, TimeoutError):  # aiohttp's other timeouts (SocketTimeoutError: a read's) are TimeoutErrors
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    return httpx.RemoteProtocolError(message)  # disconnected, reset, a malformed response
