"""Lanes: the worker threads that run a request's sync code (asgiref's thread-sensitive `sync_to_async`,
Channels' `database_sync_to_async`), kept for the process's life instead of made per request.

Django's ASGI handler gives every request a thread of its own (a `ThreadSensitiveContext`: a new
executor and thread, shut down and joined as the request ends: a tenth of a non-streamed API request's
CPU in a py-spy profile), and code outside a request (chat sockets, reply writers) gets none: all of a process's socket
database calls then queue on one thread, in turn. A lane keeps what the thread-sensitive rule is for (a
request's sync calls run one at a time, in one thread) with threads made once: a request or reply takes
an idle lane for its duration and gives it back; past `SYNC_THREADS` lanes busy, requests share them
(their calls then take turns in that lane's thread, as each request's calls already do).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_started
from django.db import close_old_connections, reset_queries

logger = logging.getLogger(__name__)

# The jobs of the request being served that wait for its response to be sent (`after_response`).
_after_response: ContextVar[list[Callable[[], Awaitable[None]]] | None] = ContextVar("after_response", default=None)


class Lane:
    """One worker thread (made at its first call) and how many requests use it now."""

    def __init__(self, number: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lane-{number}")
        self.users = 0


_lanes: list[Lane] = []
_idle: list[Lane] = []
_turns = itertools.count()


def _take() -> Lane:
    if _idle:
        lane = _idle.pop()
    elif len(_lanes) < settings.SYNC_THREADS:
        lane = Lane(len(_lanes))
        _lanes.append(lane)
    else:
        lane = _lanes[next(_turns) % len(_lanes)]
    lane.users += 1
    return lane


def _give_back(lane: Lane) -> None:
    lane.users -= 1
    if lane.users == 0:
        _idle.append(lane)


@asynccontextmanager
async def lane(*, release_connection: bool = True) -> AsyncIterator[None]:
    """Within: this task's thread-sensitive sync calls run in one lane (tasks it starts must end within).
    At the end the lane's database connection goes back to the pool (a request's: Django's request_finished
    does it), or lanes that ran an async ORM call would keep the pool's connections from other threads."""
    taken = _take()
    try:
        async with ThreadSensitiveContext(executor=taken.executor):
            try:
                yield
            finally:
                if release_connection:
                    await sync_to_async(close_old_connections)()
    finally:
        _give_back(taken)


def _no_thread_hop_at_request_start() -> None:
    """Django's request_started receivers are sync (closing the thread's old database connections, emptying
    DEBUG's query log): under ASGI they cost every request a thread hop before its view. A lane's connection
    is given back as each use of the lane ends (request_finished, `lane`), so a request's start finds none to
    close; DEBUG's query log is a bounded deque."""
    request_started.disconnect(close_old_connections)
    request_started.disconnect(reset_queries)


async def after_response(job: Callable[[], Awaitable[None]]) -> None:
    """Run `job` once the request's response has been sent, whatever happened to it (LaneASGIHandler), so
    that the caller does not wait for it; now where no such handler serves the request (Django's test
    clients, code outside a request)."""
    jobs = _after_response.get()
    if jobs is None:
        await job()
    else:
        jobs.append(job)


async def _run_after_response(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    for job in jobs:
        try:
            await job()
        except Exception:  # one job's failure does not cost the others
            logger.exception("a job after the response failed")


class LaneASGIHandler(ASGIHandler):
    """Django's ASGI handler, each request in a lane instead of a thread made for it, with no thread hop at
    its start (_no_thread_hop_at_request_start), and the request's `after_response` jobs run in its lane
    once it is over."""

    def __init__(self) -> None:
        super().__init__()
        _no_thread_hop_at_request_start()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        jobs: list[Callable[[], Awaitable[None]]] = []
        serving = _after_response.set(jobs)  # seen by the tasks `handle` starts
        try:
            async with lane(release_connection=False):
                try:
                    await self.handle(scope, receive, send)
                finally:
                    if jobs:  # shielded: a server cancelling the call does not lose them
                        await asyncio.shield(_run_after_response(jobs))
        finally:
            _after_response.reset(serving)
