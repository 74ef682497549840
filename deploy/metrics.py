"""Prometheus metrics of AI Hub (prometheus-client).

Each server process counts in its own memory and /metrics shows that process's figures; Prometheus
scrapes every replica and sums. Where several worker processes share one port, set
PROMETHEUS_MULTIPROC_DIR (an empty directory, before start): every process then writes its figures
there and /metrics adds them up.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from functools import cache, lru_cache
from typing import Any

from django.conf import settings
from django.urls import Resolver404, resolve
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 60)

HTTP_REQUESTS = Counter("aihub_http_requests", "HTTP requests answered", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "aihub_http_request_duration_seconds",
    "Time from request to the end of its response (a stream counts until it ends)",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
GENERATIONS = Counter("aihub_generations", "Model requests settled, by outcome", ["model", "provider", "status"])
TTFT = Histogram(
    "aihub_time_to_first_token_seconds", "Time to first token", ["model", "provider"], buckets=TTFT_BUCKETS
)
TOKENS = Counter("aihub_tokens", "Tokens metered", ["model", "provider", "kind"])
COST = Counter("aihub_cost_usd", "Cost metered, in US dollars", ["model", "provider"])
UPSTREAM_ERRORS = Counter("aihub_upstream_errors", "Failed upstream attempts", ["provider", "outcome"])
UPSTREAM_RETRIES = Counter("aihub_upstream_retries", "Attempts repeated on the same provider", ["provider"])
FALLBACKS = Counter("aihub_fallbacks", "Requests moved on to another model", ["from_provider", "to_provider"])
OPEN_STREAMS = Gauge("aihub_open_streams", "Model replies streaming now", multiprocess_mode="livesum")
LIMIT_REFUSALS = Counter("aihub_limit_refusals", "Requests refused by plan limits", ["code"])


# Collectors read at scrape time, added by the layer that owns what they report (the gateway's breakers):
# this module sits below them and imports none of them.
_collectors: list[Any] = []


def add_collector(collector: Any) -> None:
    _collectors.append(collector)


@cache
def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    for collector in _collectors:
        registry.register(collector)
    return registry


class _ProcessMetrics:
    """This process's own metrics (prometheus-client's default registry), inside the one we expose."""

    def collect(self):
        return PROCESS_REGISTRY.collect()


def exposition() -> tuple[bytes, str]:
    # The 0.0.4 text format: what every Prometheus 2.x server (Debian bookworm ships 2.42) reads.
    return generate_latest(_registry()), CONTENT_TYPE_PLAIN_0_0_4


@cache
def _networks(allowed: tuple[str, ...]) -> list:
    return [ipaddress.ip_network(net.strip(), strict=False) for net in allowed if net.strip()]


def scrape_allowed(request) -> bool:
    """The bearer token when METRICS_TOKEN is set, or a client address in METRICS_ALLOWED_IPS."""
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and offered and hmac.compare_digest(offered.encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_IPS)))


@lru_cache(maxsize=1024)  # a resolve per request was 1% of a non-streamed API request's CPU
def route_of(path: str) -> str:
    """The URL pattern a path matches (`chat/<int:pk>/`), so labels stay few; not the path itself."""
    if path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    try:
        match = resolve(path)
    except Resolver404:
        return "unmatched"
    return "/" + match.route if match.route else match.view_name


class HttpMetrics:
    """ASGI middleware around the whole HTTP app (site and API): counts and times every request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        status = 500  # unless the app starts a response

        async def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = route_of(scope["path"])
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_LATENCY.labels(route, scope["method"]).observe(time.monotonic() - started)


def generation_settled(record, attempts) -> None:
    """One settled model request (its usage row): outcome, tokens, cost, TTFT, and what the router
    went through to get there (failed attempts, retries on one provider, fallbacks to another)."""
    model, provider = record.model_slug, record.provider
    GENERATIONS.labels(model, provider, record.status).inc()
    if record.ttft_ms is not None:
        TTFT.labels(model, provider).observe(record.ttft_ms / 1000)
    TOKENS.labels(model, provider, "prompt").inc(record.prompt_tokens)
    TOKENS.labels(model, provider, "completion").inc(record.completion_tokens)
    COST.labels(model, provider).inc(float(record.cost))
    previous = None
    for attempt in attempts:
        if attempt.outcome not in ("ok", "cancelled", "breaker_open"):
            UPSTREAM_ERRORS.labels(attempt.provider, attempt.outcome).inc()
        if previous is not None:
            if previous.model_slug == attempt.model_slug:
                UPSTREAM_RETRIES.labels(attempt.provider).inc()
            else:
                FALLBACKS.labels(previous.provider, attempt.provider).inc()
        previous = attempt
