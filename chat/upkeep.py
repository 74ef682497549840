"""What every server process does in the background, for the ledger's crash safety: the heartbeat of its
requests in flight (every HEARTBEAT_SECONDS), and at start and every SWEEP_SECONDS the outbox drained
(usage rows the database refused earlier) and the requests of dead processes settled from their last
checkpoint, their replies failed with the text they had (billing.inflight, billing.outbox).

`start` runs it in the server's event loop, once per process; the ASGI application calls it with each
connection (daphne has no start-up hook). HEARTBEAT_SECONDS=0 turns it off.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings

from billing import inflight, outbox

from . import conversations, replies

logger = logging.getLogger(__name__)

_task: asyncio.Task | None = None


def start() -> None:
    """Start the background task in the running loop, unless it runs already (or is turned off)."""
    global _task
    if _task is None and settings.HEARTBEAT_SECONDS > 0:
        _task = asyncio.get_running_loop().create_task(_run(), name="upkeep")
        atexit.register(settle_on_exit)


def settle_on_exit() -> None:
    """At the process's end (plain daphne stops at once on SIGTERM; `manage.py serve` once its drain deadline
    passes): its requests still in flight are metered from their last checkpoint and their replies failed
    with the text they had, now, instead of by another process's sweeper a heartbeat timeout later (or by
    this server's next start)."""
    try:
        conversations.fail_interrupted(inflight.settle_own(replies.INTERRUPTED), replies.INTERRUPTED)
    except Exception:  # the database away: the sweeper of a live process (or the next start) settles them
        logger.exception("upkeep: settling this process's requests at exit failed")


def sweep() -> list[tuple[int, int]]:
    """Drain the outbox (first: its figures are the requests' own), then settle the requests of dead
    processes. Returns the replies that ended, as (conversation id, reply id). Sync."""
    ended: list[tuple[int, int]] = []
    outbox.drain(on_written=lambda settlement, usage: ended.extend(conversations.finish_from_outbox(settlement, usage)))
    return ended + conversations.fail_interrupted(inflight.settle_abandoned(replies.INTERRUPTED), replies.INTERRUPTED)


async def _run() -> None:
    swept_at: float | None = None
    while True:
        try:
            # Beat and sweep in a worker thread of their own, not the one thread every other ORM call of the process
            # queues in: behind 1,000 busy chat sockets the beat came minutes late, and this very sweeper then
            # settled the process's own live replies as abandoned (BENCHMARKS.md, "Chat sockets under load").
            await database_sync_to_async(inflight.beat, thread_sensitive=False)()
            if swept_at is None or time.monotonic() - swept_at >= settings.SWEEP_SECONDS:
                for conversation_id, reply_id in await database_sync_to_async(sweep, thread_sensitive=False)():
                    await replies.announce_end(conversation_id, reply_id)
                swept_at = time.monotonic()
        except outbox.LEDGER_DOWN as exc:  # tried again at the next beat
            logger.warning("upkeep: the database refused (%s)", exc)
        except Exception:
            logger.exception("upkeep failed; trying again at the next beat")
        await asyncio.sleep(settings.HEARTBEAT_SECONDS)
