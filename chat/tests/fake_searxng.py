"""A stand-in SearXNG (and Brave Search API) on 127.0.0.1: real HTTP, JSON answers, every request kept.

The query picks the behaviour: "fail" answers HTTP 500, "slow" waits past any test timeout, "nothing"
finds nothing; any other query finds RESULTS."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from aihub.testing import send_json

RESULTS = [
    {"title": "Roses in shade", "url": "https://roses.example/shade", "content": "Alba roses grow in half shade."},
    {
        "title": "Climbing roses",
        "url": "https://climbers.example/north-walls",
        "content": "Some climbers like a north wall.",
    },
    {"title": "Not a web page", "url": "javascript:alert(1)", "content": "dropped: not http(s)"},
]
SLOW_SECONDS = 3


class FakeSearch:
    def __init__(self):
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSearch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append(
                    {"path": url.path, "params": params, "headers": self.headers}
                )  # case-insensitive, as HTTP
                query = params.get("q", "")
                if query == "fail":
                    send_json(self, 500, {"error": "engine broke"})
                    return
                if query == "slow":
                    time.sleep(SLOW_SECONDS)
                found = [] if query == "nothing" else RESULTS
                if url.path.endswith("/web/search"):  # Brave's shape
                    results = [{"title": r["title"], "url": r["url"], "description": r["content"]} for r in found]
                    send_json(self, 200, {"type": "search", "web": {"results": results}})
                else:
                    send_json(self, 200, {"query": query, "results": found})

        return Handler
