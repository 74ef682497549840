"""The production server: uvicorn (uvloop, httptools, websockets) serving aihub.asgi in this process,
stopping gracefully: at SIGTERM (or SIGINT) it stops accepting connections, closes chat sockets with 1012
"service restart" (the page reconnects to another replica; a reply in progress is kept and metered as
stopped), lets HTTP requests finish, API streams included, for up to --drain seconds, then exits.

uvicorn rather than daphne because it costs about a third less CPU per request and per streamed chunk
(BENCHMARKS.md, the gateway load: daphne against uvicorn); `make run` keeps daphne, the development server."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


class Server(uvicorn.Server):
    """uvicorn's server, its housekeeping tick (the Date header, the stop signal) once a second instead of ten
    times: 5% of a slow stream's CPU at one request per second (`BENCHMARKS.md`, c). A stop signal wakes it."""

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.wake = lambda: loop.call_soon_threadsafe(self.stopping.set)
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # each tick a second's: uvicorn renews the Date header every 10th
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=1)

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if wake := getattr(self, "wake", None):
            wake()


class Command(BaseCommand):
    help = "Serve the app with uvicorn; at SIGTERM, drain before exiting."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--proxy-headers", action="store_true", help="Trust X-Forwarded-For/-Proto from any peer (behind a proxy)."
        )
        parser.add_argument(
            "--drain", type=float, default=settings.DRAIN_SECONDS, help="Longest wait for open requests at SIGTERM."
        )

    def handle(self, *args, bind, port, proxy_headers, drain, **options):
        config = uvicorn.Config(
            "aihub.asgi:application",
            host=bind,
            port=port,
            loop="uvloop",
            http="httptools",
            ws="websockets",
            lifespan="off",  # Channels' router has no lifespan; startup work runs at import (aihub/asgi.py)
            proxy_headers=proxy_headers,
            forwarded_allow_ips="*" if proxy_headers else None,
            server_header=False,
            access_log=False,  # as daphne served before; deploy/metrics.py counts requests by route and status
            log_config=None,  # Django's LOGGING configures the loggers
            timeout_graceful_shutdown=int(drain),
        )
        # uvicorn drains at the signal, then raises it again for the handler it found installed: this one, so
        # that the process exits normally (status 0, atexit's settle_on_exit in chat/upkeep.py runs).
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda signum, frame: None)
        self.stdout.write(f"serving on http://{bind}:{port}/", ending="\n")
        self.stdout.flush()
        Server(config).run()
