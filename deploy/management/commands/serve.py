"""daphne serving aihub.asgi, stopping gracefully: at SIGTERM (or SIGINT) it stops accepting
connections, closes chat sockets with 1012 "service restart" (the page reconnects to another replica;
a reply in progress is kept and metered as stopped), lets HTTP requests finish, API streams included,
for up to --drain seconds, then exits. daphne's own command stops at once, cutting every stream."""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the app with daphne; at SIGTERM, drain before exiting."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--proxy-headers", action="store_true", help="Trust X-Forwarded-For/-Proto/-Port.")
        parser.add_argument(
            "--drain", type=float, default=settings.DRAIN_SECONDS, help="Longest wait for open requests at SIGTERM."
        )

    def handle(self, *args, bind, port, proxy_headers, drain, **options):
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
        from twisted.internet import reactor

        from aihub.asgi import application

        log = logging.getLogger("aihub.serve")
        server = Server(
            application,
            endpoints=build_endpoint_description_strings(host=bind, port=port),
            signal_handlers=False,
            proxy_forwarded_address_header="X-Forwarded-For" if proxy_headers else None,
            proxy_forwarded_port_header="X-Forwarded-Port" if proxy_headers else None,
            proxy_forwarded_proto_header="X-Forwarded-Proto" if proxy_headers else None,
            verbosity=0,
        )

        # The listening ports, to close at SIGTERM (daphne's own callback keeps only their addresses).
        ports = []
        listen_success = server.listen_success

        def keep_port(port):
            ports.append(port)
            return listen_success(port)

        server.listen_success = keep_port

        def busy() -> list:
            return [
                protocol
                for protocol, details in server.connections.items()
                if "disconnected" not in details and not details.get("application_instance", _DONE).done()
            ]

        def start_draining() -> None:
            if getattr(server, "draining", False):
                return
            server.draining = True
            for port in ports:
                port.stopListening()
            sockets = [p for p in server.connections if isinstance(p, WebSocketProtocol)]
            for socket in sockets:
                socket.serverClose(code=1012)
            deadline = time.monotonic() + drain
            log.info("draining: %d open requests, %d sockets closed", len(busy()) - len(sockets), len(sockets))

            def check() -> None:
                if not busy() or time.monotonic() > deadline:
                    log.info("drained, %d requests left", len(busy()))
                    reactor.stop()  # type: ignore[misc]  # twisted's reactor is typed as an interface
                else:
                    reactor.callLater(0.2, check)  # type: ignore[arg-type]

            check()

        def on_signal(signum, frame) -> None:
            reactor.callFromThread(start_draining)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(f"serving on http://{bind}:{port}/", ending="\n")
        self.stdout.flush()
        server.run()


class _Done:
    @staticmethod
    def done() -> bool:
        return True


_DONE = _Done()
