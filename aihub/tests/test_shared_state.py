"""Versions shared through Redis (aihub.shared_state): read ahead in one round trip, each served once."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from aihub import shared_state


@pytest.fixture(autouse=True)
def redis_cache():
    if not settings.REDIS_URL:
        pytest.skip("versions are shared through Redis only with REDIS_URL")


async def test_a_version_read_ahead_serves_the_requests_next_read_once():
    await sync_to_async(shared_state.bump)("test:first")
    await sync_to_async(shared_state.bump)("test:second")
    before = await shared_state.aversion("test:first"), await shared_state.aversion("test:second")

    with shared_state.reading_ahead():
        await shared_state.read_ahead("test:first", "test:second")
        await sync_to_async(shared_state.bump)("test:first")  # moved on after the read ahead
        await sync_to_async(shared_state.bump)("test:second")

        assert await shared_state.aversion("test:first") == before[0]  # as read ahead, not asked again
        assert await sync_to_async(shared_state.version)("test:second") == before[1]  # in a sync call too
        assert await shared_state.aversion("test:first") == before[0] + 1  # once: the next read asks Redis
        assert await sync_to_async(shared_state.version)("test:second") == before[1] + 1


async def test_nothing_is_read_ahead_outside_a_requests_span():
    await shared_state.read_ahead("test:first")
    await sync_to_async(shared_state.bump)("test:first")
    now = await shared_state.aversion("test:first")
    with shared_state.reading_ahead():
        await shared_state.read_ahead("test:first")
    await sync_to_async(shared_state.bump)("test:first")

    assert await shared_state.aversion("test:first") == now + 1
