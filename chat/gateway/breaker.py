"""Circuit breakers: a provider (or one of its models) that keeps failing is skipped for a while.

After BREAKER_FAILURES consecutive failures before the first token, the breaker opens: requests skip
it (and fall back) for BREAKER_COOLDOWN seconds. Then it is half-open: one request may try it (the
probe, one attempt, no retries); its success closes the breaker, its failure opens it again.
Connection errors and timeouts count against the whole provider; HTTP errors (429, 5xx) and broken
replies against the one model.

The state lives in Django's cache: Redis when REDIS_URL is set, so every process sees the same
breakers; each process's memory otherwise. With Redis, a process keeps a copy of what it read, good while
the breakers' shared version (VERSION_KEY, moved on by every change of a breaker's state) stays: while no
breaker changes, admission reads none of them (the version comes with the API key's, in one round trip).
The calls are synchronous: Generation makes them in the thread hops it already has (admission,
settlement), never on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from prometheus_client.core import GaugeMetricFamily

from aihub import shared_state
from chat.catalogue.models import AIModel
from deploy import metrics

# Failures of the provider as a whole; any other retryable failure is the model's.
PROVIDER_WIDE = {"connect_error", "timeout"}
PREFIX = "breaker:"
SKIPPED = "breaker_open"
# Moved on by every change of a breaker's state or of the index; outside PREFIX, so reset_all keeps counting.
VERSION_KEY = "breakers:version"
# What this process read of the breakers' keys ({key: value or None}): the version and the time it was read at.
_known: tuple[int, float, dict[str, Any]] = (-1, 0.0, {})
# A copy is read again after this long even if no breaker changed: the keys expire (a long-open breaker's
# state goes back to closed without a change to announce).
KNOWN_SECONDS = 60


def provider_scope(provider: str) -> str:
    return provider


def model_scope(model: AIModel) -> str:
    return f"{model.provider}:{model.slug}"


def _keys(scope: str) -> tuple[str, str, str]:
    return f"{PREFIX}{scope}:failures", f"{PREFIX}{scope}:open_until", f"{PREFIX}{scope}:probe"


def _state(open_until: float | None, now: float) -> str:
    if open_until is None:
        return "closed"
    return "open" if now < open_until else "half_open"


@dataclass(frozen=True)
class Passage:
    """Which candidates a request may try: the others are skipped; a probe gets one attempt."""

    allowed: list[AIModel]
    skipped: list[AIModel]
    probes: frozenset[str]  # slugs
    failing: frozenset[str] = frozenset()  # the scopes with failures as the request was admitted (record)


def admit(candidates: list[AIModel]) -> Passage:
    """Filter a request's candidates by their breakers (one cache read for all of them)."""
    if not candidates:
        return Passage([], [], frozenset())
    scopes = {model.slug: (provider_scope(model.provider), model_scope(model)) for model in candidates}
    wanted = {_keys(scope)[1] for pair in scopes.values() for scope in pair}
    open_until = _read([*wanted, INDEX_KEY])
    failing = frozenset(open_until.pop(INDEX_KEY, None) or ())
    now = time.time()
    allowed, skipped, probes = [], [], set()
    for model in candidates:
        states = {scope: _state(open_until.get(_keys(scope)[1]), now) for scope in scopes[model.slug]}
        if "open" in states.values():
            skipped.append(model)
            continue
        half_open = [scope for scope, state in states.items() if state == "half_open"]
        # One probe at a time across every process: the first to take the probe key tries it.
        if half_open and not all(
            cache.add(_keys(scope)[2], now, timeout=settings.BREAKER_PROBE_TIMEOUT) for scope in half_open
        ):
            skipped.append(model)
            continue
        if half_open:
            probes.add(model.slug)
        allowed.append(model)
    return Passage(allowed, skipped, frozenset(probes), failing)


def _read(keys: list[str]) -> dict[str, Any]:
    """These keys' values (the ones set), from this process's copy while the breakers' version stays (Redis
    shared by every process); each key read at most once per version."""
    global _known
    if not shared_state.redis_configured():
        return cache.get_many(keys)
    version = shared_state.version(VERSION_KEY)  # before the keys: a change racing them voids what is read
    known, now = _known, time.monotonic()
    if known[0] != version or now - known[1] > KNOWN_SECONDS:
        known = _known = (version, now, {})
    values = known[2]  # written only with values read after its version was
    if missing := [key for key in keys if key not in values]:
        found = cache.get_many(missing)
        values.update({key: found.get(key) for key in missing})
    return {key: values[key] for key in keys if values[key] is not None}


def _changed() -> None:
    shared_state.bump(VERSION_KEY)


def record(attempts: Iterable[Any], models: dict[str, AIModel], failing: frozenset[str]) -> None:
    """After a request: each attempt's outcome moves its breakers (successes close them). `failing`: the
    breakers with failures as the request was admitted (Passage.failing)."""
    closing = []
    for attempt in attempts:
        model = models.get(attempt.model_slug)
        if model is None or attempt.outcome in ("cancelled", SKIPPED):
            continue
        if attempt.outcome == "ok":
            closing += [provider_scope(model.provider), model_scope(model)]
        elif attempt.retryable:
            if attempt.outcome in PROVIDER_WIDE:
                _failed(provider_scope(model.provider), (model.provider, ""))
            else:
                _failed(model_scope(model), (model.provider, model.slug))
    if closing:
        # The breakers' keys deleted only where one had failures at admission (a failing breaker is indexed
        # before it counts): no round trip for a success. One that began failing during this request is closed
        # by the next success.
        closed = [scope for scope in closing if scope in failing]
        if closed:
            cache.delete_many([key for scope in closed for key in _keys(scope)])
            _unindex(closed)
            _changed()


# The breakers that have failures, {scope: (provider, model slug)}: what /ops/ and /metrics list
# besides the providers. Written only when a breaker starts failing or closes again (rare).
INDEX_KEY = f"{PREFIX}index"


def _index(scope: str, entry: tuple[str, str]) -> bool:
    index = cache.get(INDEX_KEY) or {}
    if scope in index:
        return False
    cache.set(INDEX_KEY, {**index, scope: entry}, timeout=None)
    return True


def _unindex(scopes: list[str]) -> None:
    index = cache.get(INDEX_KEY) or {}
    if any(scope in index for scope in scopes):
        cache.set(INDEX_KEY, {k: v for k, v in index.items() if k not in scopes}, timeout=None)


def _failed(scope: str, entry: tuple[str, str]) -> None:
    changed = _index(scope, entry)
    failures_key, open_until_key, probe_key = _keys(scope)
    cooldown = settings.BREAKER_COOLDOWN
    cache.add(failures_key, 0, timeout=max(cooldown * 10, 600))
    failures = cache.incr(failures_key)
    was = _state(cache.get(open_until_key), time.time())
    if failures >= settings.BREAKER_FAILURES or was == "half_open":
        # Kept well past the cooldown: its expiry marks the end of half-open, not of the cooldown.
        cache.set(open_until_key, time.time() + cooldown, timeout=max(cooldown * 10, 600))
        cache.delete(probe_key)
        changed = True
    if changed:
        _changed()


def reset_all() -> None:
    """Close every breaker now (an operator after fixing a provider; tests between each other)."""
    if settings.REDIS_URL:
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]  # Django's Redis client
        keys = list(client.scan_iter(match=cache.make_key(f"{PREFIX}*"), count=1000))
        if keys:
            client.delete(*keys)
        _changed()
    else:
        cache.clear()  # this process's memory: the only place breakers live without Redis


@dataclass(frozen=True)
class BreakerState:
    provider: str
    model: str  # "" for the provider as a whole
    state: str  # closed | half_open | open
    failures: int
    reopens_in: float | None  # seconds until half-open, while open

    @property
    def label(self) -> str:
        return self.state.replace("_", "-")


def snapshot() -> list[BreakerState]:
    """Every configured provider's breaker, and those of models that are not closed (for /ops/ and
    /metrics: one row per provider always, one per model only while it is failing). Cache reads only."""
    from chat.catalogue.lookup import configured_providers

    providers = configured_providers()
    scopes = [(provider, "", provider_scope(provider)) for provider in providers]
    scopes += [(provider, slug, scope) for scope, (provider, slug) in (cache.get(INDEX_KEY) or {}).items() if slug]
    values = cache.get_many([key for _, _, scope in scopes for key in _keys(scope)[:2]])
    now = time.time()
    states = []
    for provider, slug, scope in scopes:
        failures_key, open_until_key, _ = _keys(scope)
        open_until = values.get(open_until_key)
        state = _state(open_until, now)
        if slug and state == "closed":
            continue
        states.append(
            BreakerState(
                provider=provider,
                model=slug,
                state=state,
                failures=values.get(failures_key) or 0,
                reopens_in=round(open_until - now, 1) if state == "open" and open_until is not None else None,
            )
        )
    return states


BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class BreakerCollector:
    """aihub_provider_breaker_state, read at scrape time from the breakers' shared state (Redis), so
    every replica reports the same: each provider always, a model while its breaker is not closed."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "aihub_provider_breaker_state",
            "Circuit breaker of a provider (model empty) or one model: 0 closed, 1 half-open, 2 open",
            labels=["provider", "model"],
        )
        for state in snapshot():
            family.add_metric([state.provider, state.model], BREAKER_STATES[state.state])
        yield family


metrics.add_collector(BreakerCollector())
