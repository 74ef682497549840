"""A Generation's stream as an async iterator, so an HTTP response can relay it.

The generation runs as its own task and hands each delta over through a queue. Whoever reads
must call `close()` when done (normally or not): it cancels the task once, which closes the
upstream connection, and waits for the generation to settle its usage record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from chat.generation import Generation

_END = object()


class GenerationStream:
    def __init__(self, generation: Generation):
        self.generation = generation
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
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
