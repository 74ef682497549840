"""Lanes (aihub/lanes.py): a request's or reply's sync calls run in one thread, threads are kept and
reused, and past SYNC_THREADS busy lanes requests share them."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from aihub import lanes


@pytest.fixture(autouse=True)
def no_lanes_yet(monkeypatch):
    """The process's lanes as at its start (other tests' lanes left aside)."""
    monkeypatch.setattr(lanes, "_lanes", [])
    monkeypatch.setattr(lanes, "_idle", [])


async def thread_of_call() -> int:
    return await sync_to_async(threading.get_ident)()


async def test_a_lane_runs_its_calls_in_one_thread_kept_for_the_next_user():
    async with lanes.lane():
        first = {await thread_of_call() for _ in range(3)}
    async with lanes.lane():
        again = await thread_of_call()
    assert len(first) == 1 and again in first


async def test_lanes_in_use_at_once_run_in_threads_of_their_own():
    both_in = asyncio.Barrier(2)

    async def user() -> int:
        async with lanes.lane():
            await both_in.wait()
            return await thread_of_call()

    first, second = await asyncio.gather(user(), user())
    assert first != second


async def test_past_sync_threads_busy_lanes_are_shared(settings):
    settings.SYNC_THREADS = 2
    held = asyncio.Event()
    all_in = asyncio.Barrier(5)

    async def user() -> int:
        async with lanes.lane():
            await all_in.wait()
            thread = await thread_of_call()
            await held.wait()
            return thread

    users = [asyncio.create_task(user()) for _ in range(4)]
    await all_in.wait()
    await asyncio.sleep(0.05)
    held.set()
    threads = set(await asyncio.gather(*users))
    assert len(threads) == len(lanes._lanes) == 2


@pytest.mark.django_db(transaction=True)
async def test_requests_through_the_asgi_app_make_no_thread_each(monkeypatch):
    from aihub.asgi import application

    started = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread.name) or start(thread))
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for _ in range(20):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/v1/models")).status_code == 401
    # The lane's thread, and the loop's executor's (upkeep starts with the first request); with Django's own
    # handler, one more per request (81 here).
    assert len(started) <= 3, started


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="Django never closes SQLite's in-memory test database")
async def test_a_lane_gives_its_database_connection_back_as_it_ends(django_user_model):
    async with lanes.lane():
        await django_user_model.objects.afirst()  # the async ORM: a thread-sensitive call in the lane's thread
        assert await sync_to_async(lambda: connection.connection is not None)()
    async with lanes.lane():  # the same lane, idle again
        assert await sync_to_async(lambda: connection.connection)() is None


@pytest.mark.django_db(transaction=True)
async def test_a_request_makes_no_thread_hop_before_its_view(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    hops = []
    submit = ThreadPoolExecutor.submit
    monkeypatch.setattr(
        ThreadPoolExecutor, "submit", lambda pool, fn, *a, **k: hops.append(fn) or submit(pool, fn, *a, **k)
    )
    # Made as a server makes it at its start (Django's test client, used by other tests of this process, puts
    # a request_started receiver back after each of its requests).
    transport = httpx.ASGITransport(app=lanes.LaneASGIHandler())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        await client.get("/healthz")  # the first: the middleware's set-up (static files found) as well
        hops.clear()
        assert (await client.get("/healthz")).status_code == 200
    # The view (sync) and the response's close (request_finished gives the lane's connection back); Django's
    # request_started receivers made a third.
    assert len(hops) == 2


async def test_outside_a_served_request_a_job_after_the_response_runs_at_once():
    # Django's test clients and code outside requests (chat sockets, upkeep) have no response to wait for.
    ran = []

    async def job() -> None:
        ran.append("job")

    await lanes.after_response(job)
    assert ran == ["job"]
