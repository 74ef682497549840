"""Running a Generation for an HTTP response: its stream as an async iterator, failures as ApiError.

The generation runs as its own task and hands each delta over through a queue. Whoever reads
must call `close()` when done (normally or not): it cancels the task once, which closes the
upstream connection, and waits for the generation to settle its usage record.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from django.http import StreamingHttpResponse

from aihub import lanes
from chat.gateway.generation import Generation

from .errors import failure_error

_END = object()


class GenerationStream:
    def __init__(self, generation: Generation):
        self.generation = generation
        self._queue: asyncio.Queue = asyncio.Queue()
        # A context of its own: the view may run under async_to_sync (a sync middleware in the chain), whose
        # thread executor quits when the view returns; a task inheriting it could then not reach the database
        # to settle (the reply left streaming, no usage row, the reservation kept).
        self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def _run(self) -> None:
        try:
            # Its database calls in a thread of their own, not the process's shared one; each is a
            # database_sync_to_async call, which gives its connection back itself.
            async with lanes.lane(release_connection=False):
                await self.generation.stream(self._queue.put)
        finally:
            self._queue.put_nowait(_END)

    async def next_delta(self) -> str | None:
        """The next piece of text; None once the generation finished. Raises what the generation raised."""
        item = await self._queue.get()
        if item is _END:
            await self._task  # re-raises the generation's failure, if any
            self._queue.put_nowait(_END)  # later calls see the end again
            return None
        return item

    async def deltas(self) -> AsyncIterator[str]:
        while (delta := await self.next_delta()) is not None:
            yield delta

    async def close(self) -> None:
        if not self._task.done():
            self._task.cancel()  # once: a second cancel could leak the pooled upstream connection
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


async def release_request_connection() -> None:
    """Give the request thread's database connection back to the process's pool before a generation runs.

    The view's ORM calls (the key, the session) ran in the request's own thread, whose connection Django
    gives back only when the response ends. A stream's generation runs as a task of its own and does its
    database work in other threads (admission, checkpoints, the settlement), each taking a pooled
    connection for a moment: with the request's kept for the whole stream, as many streams as the pool
    holds would leave none for their admissions, which would then wait (PoolTimeout) though nothing
    uses the connections."""
    await sync_to_async(close_old_connections)()


async def open_generation_stream(generation: Generation) -> tuple[GenerationStream, str]:
    """Start the stream and wait for its first delta: a failure before it (after the fallback chain)
    becomes an ApiError, answered with its own status instead of a 200 stream."""
    await release_request_connection()
    stream = GenerationStream(generation)
    try:
        first = await stream.next_delta()
    except BaseException as exc:
        await stream.close()
        error = failure_error(exc) if isinstance(exc, Exception) else None
        if error is None:
            raise
        raise error from None
    return stream, first or ""


def sse_response(chunks) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass each event on at once
    return response


def sse_event(payload: dict | str, event_id: int | None = None) -> bytes:
    """One event; with an id, a browser's EventSource sends it back as Last-Event-ID when it reconnects."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), cls=DjangoJSONEncoder)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {data}\n\n".encode()


async def complete(generation: Generation) -> str:
    """The whole reply; a failure (after the fallback chain) or a refused limit becomes an ApiError.
    (It runs in the request's thread context, whose connection its database calls give back.)"""
    try:
        return await generation.complete()
    except Exception as exc:
        error = failure_error(exc)
        if error is None:
            raise
        raise error from None
