"""The one shared httpx.AsyncClient of this process (one per event loop: clients are loop-bound).

Its transport is aiohttp's (httpx-aiohttp), not httpcore's: httpcore's pool polls the socket of every idle
connection on each request and each response's close (`has_expired`), 15% of the gateway's CPU at 32 requests
in flight, and reads streams through anyio; aiohttp's protocol hears of a closed connection from the event loop
and parses in C. Callers still see httpx's requests, responses and errors.

A response body's reads are timed by one wake-up a tick of this loop (ReadTimer), not by aiohttp's
timer per packet received (a call_later and a cancel each: a tenth of a slow stream's CPU at one stream at a
time). Figures: BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import urllib.request
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import NoReturn

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream

MAX_CONNECTIONS = 500
KEEPALIVE_SECONDS = 30
# A silent upstream's body times out up to a tenth of its read timeout late (between these bounds).
READ_TIMER_TICKS = (0.05, 1.0)

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
        assert isinstance(response.stream, AiohttpResponseStream)
        read_timeout = request.extensions.get("timeout", {}).get("read")
        upstream = response.stream._aiohttp_response  # httpx-aiohttp 0.2's
        protocol = upstream.connection.protocol if upstream.connection is not None else None
        if read_timeout and protocol is not None:
            # The headers are in: the body's reads are timed by the ReadTimer. aiohttp's timer still pending
            # goes at the next packet, as it would have.
            protocol.read_timeout = None
        else:
            read_timeout = None
        response.stream = _Body(response.stream, upstream, read_timeout)
        return response


class _Body(httpx.AsyncByteStream):
    """An upstream body: aiohttp's errors as httpx's, its reads timed out after `read_timeout` seconds with nothing
    received (only while read: a caller slow to take the next chunk is no silent upstream)."""

    def __init__(self, stream: httpx.AsyncByteStream, upstream: aiohttp.ClientResponse, read_timeout: float | None):
        self._stream, self.upstream, self.read_timeout = stream, upstream, read_timeout
        self.waiting_since: float | None = None  # the loop's time when the read in progress began
        self.timed_out = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.read_timeout is None:
            with _httpx_errors():
                async for chunk in self._stream:
                    yield chunk
            return
        loop = asyncio.get_running_loop()
        chunks = aiter(self._stream)
        timer = ReadTimer.of(loop)
        timer.watch(self)
        try:
            while True:
                self.waiting_since = loop.time()
                try:  # not `with _httpx_errors()`: a context manager made per chunk cost more than the read
                    chunk = await anext(chunks)
                except (StopAsyncIteration, *_MAPPED) as exc:
                    if self.timed_out:  # its connection closed by the timer: whatever the read made of that
                        raise httpx.ReadTimeout(f"nothing received for {self.read_timeout} s") from exc
                    if isinstance(exc, StopAsyncIteration):
                        return
                    _raise_as_httpx(exc)
                self.waiting_since = None
                yield chunk
        finally:
            timer.forget(self)

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._stream.aclose()


class ReadTimer:
    """The bodies being read on one event loop, and the task that closes the connection of one whose read has
    waited past its timeout (running while there are bodies to watch)."""

    _of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadTimer] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:  # not holding its loop: the loop is its weak key
        self.bodies: set[_Body] = set()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ReadTimer:
        timer = cls._of_loop.get(loop)
        if timer is None:
            timer = cls._of_loop[loop] = cls()
        return timer

    def watch(self, body: _Body) -> None:
        self.bodies.add(body)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="upstream read timer")

    def forget(self, body: _Body) -> None:
        self.bodies.discard(body)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.bodies:
                shortest = min(body.read_timeout or READ_TIMER_TICKS[1] for body in self.bodies)
                await asyncio.sleep(min(max(shortest / 10, READ_TIMER_TICKS[0]), READ_TIMER_TICKS[1]))
                now = loop.time()
                for body in list(self.bodies):
                    since = body.waiting_since
                    if since is not None and body.read_timeout is not None and now - since > body.read_timeout:
                        body.timed_out = True
                        self.bodies.discard(body)
                        body.upstream.close()  # the read in progress fails now: the connection goes
        finally:
            self.task = None  # a task refers to its loop: kept, it would keep a finished loop from going


# What a request or read raises that is an httpx error or becomes one (_raise_as_httpx).
_MAPPED = (httpx.TransportError, aiohttp.ClientError, TimeoutError)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except _MAPPED as exc:
        _raise_as_httpx(exc)


def _raise_as_httpx(exc: BaseException) -> NoReturn:
    """Raise one of _MAPPED as the httpx error it is: httpx-aiohttp's errors mapped again from what aiohttp
    raised."""
    if isinstance(exc, httpx.TransportError):
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientError | TimeoutError):
            raise _as_httpx(cause) from cause
        raise exc
    assert isinstance(exc, aiohttp.ClientError | TimeoutError)
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
