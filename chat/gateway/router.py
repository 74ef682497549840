"""The service router: which providers serve a model, and falling back between them.

Before the first token, a retryable failure (connection error, timeout, 429, 5xx) is first retried on
the same model with jittered exponential backoff, while the retry budget lasts (a 429's Retry-After
is waited for only if it fits in it); then the router falls back to the next candidate. Candidates
whose circuit breaker is open are skipped (breaker.py). Once text has reached the caller, a failure
is reported as it is: switching then would repeat or mix text.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings

from chat.catalogue import lookup as catalogue
from chat.catalogue.lookup import configured_providers, is_configured
from chat.catalogue.models import AIModel, Provider, ProviderEndpoint

from . import breaker
from .providers.base import Completion, ProviderClient, ProviderError, StreamEnd, ToolCallDelta
from .providers.gemini import GeminiProvider
from .providers.local import LocalProvider  # llama_cpp itself is imported only when the local model runs
from .providers.openai_compat import OpenAICompatProvider

PROVIDER_CLASSES: dict[str, type[ProviderClient]] = {
    Provider.OPENROUTER: OpenAICompatProvider,
    Provider.GEMINI: GeminiProvider,
    Provider.OPENAI_COMPAT: OpenAICompatProvider,
    Provider.LOCAL: LocalProvider,
}
# Parameters a catalogue model may lack even where its provider passes them on: its flag says.
MODEL_CAPABILITIES = {
    "tools": "supports_tools",
    "tool_choice": "supports_tools",
    "parallel_tool_calls": "supports_tools",
    "response_format": "supports_response_format",
}


@cache
def _local_provider() -> ProviderClient:
    return LocalProvider()


def provider_class(name: str) -> type[ProviderClient]:
    """The client class of a provider; one added in the admin is taken as OpenAI-compatible here."""
    return PROVIDER_CLASSES.get(name, OpenAICompatProvider)


def unsupported_param(model: AIModel, params: dict[str, Any]) -> str | None:
    """The first of the request's parameters this model cannot take (by its provider or its catalogue
    flags), or None when it takes them all."""
    accepted = provider_class(model.provider).params
    for name, value in params.items():
        if value is None:
            continue
        capability = MODEL_CAPABILITIES.get(name)
        if name not in accepted or (capability and not getattr(model, capability)):
            return name
    return None


def get_provider(name: str) -> ProviderClient | None:
    """The configured provider of that name, or None when it is not set up here. Sync: a provider
    added in the admin is read from the database (Generation resolves its clients at admission)."""
    if name not in Provider.values:
        endpoint = ProviderEndpoint.objects.filter(name=name, is_active=True).first()
        return endpoint_client(endpoint) if endpoint else None
    if not is_configured(name):
        return None
    if name == Provider.OPENROUTER:
        return OpenAICompatProvider(
            "openrouter",
            settings.OPENROUTER_BASE_URL,
            settings.OPENROUTER_API_KEY,
            extra_headers={"X-Title": "AI Hub"},
            usage_accounting=True,
        )
    if name == Provider.GEMINI:
        return GeminiProvider(settings.GEMINI_BASE_URL, settings.GEMINI_API_KEY)
    if name == Provider.OPENAI_COMPAT:
        return OpenAICompatProvider("openai_compat", settings.OPENAI_COMPAT_BASE_URL, settings.OPENAI_COMPAT_API_KEY)
    if name == Provider.LOCAL:
        return _local_provider()
    return None


def endpoint_client(endpoint: ProviderEndpoint) -> ProviderClient:
    if endpoint.kind == ProviderEndpoint.Kind.GEMINI:
        return GeminiProvider(endpoint.base_url, endpoint.api_key, name=endpoint.name)
    headers = {"X-Title": "AI Hub"} if endpoint.kind == ProviderEndpoint.Kind.OPENROUTER else None
    return OpenAICompatProvider(endpoint.name, endpoint.base_url, endpoint.api_key, extra_headers=headers)


def clients_for(candidates: list[AIModel]) -> dict[str, ProviderClient]:
    """The client of each candidate's provider, resolved where the database may be read."""
    return {name: client for name in {m.provider for m in candidates} if (client := get_provider(name))}


def candidates_for(
    model: AIModel | None, models: catalogue.Catalogue | None = None, params: dict[str, Any] | None = None
) -> list[AIModel]:
    """Models to try in order: the chosen one and its fallbacks, or for 'auto' (None) the free ones,
    from `models` (the current catalogue when not given); with `params`, only those that take them all.
    Sync (it may query the catalogue): Generation calls it in its admission's thread hop."""
    models = models or catalogue.current()
    available = configured_providers(models)
    if params:
        return [m for m in candidates_for(model, models) if unsupported_param(m, params) is None]
    if model is None:
        free = [m for m in models.active_free() if m.provider in available]
        return sorted(free, key=lambda m: (m.auto_priority, available.index(m.provider), m.slug))
    chain: list[AIModel] = []
    seen: set[int] = set()
    current: AIModel | None = model
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        # Someone who picked a free model is never charged because its provider failed.
        affordable = current.is_free or not model.is_free
        if current.provider in available and current.is_active and affordable:
            chain.append(current)
        current = models.get(current.fallback_id) if current.fallback_id else None
    return chain


@dataclass
class Attempt:
    provider: str
    model_slug: str
    outcome: str
    latency_ms: int
    http_status: int | None = None
    error: str = ""
    retryable: bool = False


class NoProviderAvailable(ProviderError):
    """Every candidate failed before its first token, or none is configured."""

    @property
    def public_message(self) -> str:
        return str(self)  # our own words: the models tried and how each failed


CANCELLED = ProviderError("cancelled by the client", outcome="cancelled")


@dataclass
class RouteTrail:
    """What the router did for one request: each attempt, and the model that answered."""

    attempts: list[Attempt] = field(default_factory=list)
    model: AIModel | None = None
    end: StreamEnd | None = None
    first_token_at: float | None = None
    probes: frozenset[str] = frozenset()  # slugs of half-open breakers this request probes: one attempt
    clients: dict[str, ProviderClient] = field(default_factory=dict)  # by provider name, from admission

    def client(self, model: AIModel) -> ProviderClient:
        client = self.clients.get(model.provider) or get_provider(model.provider)
        if client is None:  # unreachable: candidates_for keeps only configured providers
            raise self.give_up()
        return client

    def record(self, model: AIModel, started: float, error: ProviderError | None = None) -> None:
        self.attempts.append(
            Attempt(
                provider=model.provider,
                model_slug=model.slug,
                outcome=error.outcome if error else "ok",
                http_status=error.http_status if error else None,
                latency_ms=round((time.monotonic() - started) * 1000),
                error=str(error) if error else "",
                retryable=bool(error and error.retryable),
            )
        )

    def skip(self, model: AIModel) -> None:
        """A candidate not tried: its breaker is open."""
        self.attempts.append(
            Attempt(model.provider, model.slug, breaker.SKIPPED, 0, error="skipped: the provider keeps failing")
        )

    def give_up(self) -> NoProviderAvailable:
        if not self.attempts:
            return NoProviderAvailable("no provider is available for this model", outcome="no_provider")
        last = self.attempts[-1]
        tried = ", ".join(f"{a.model_slug}: {a.outcome}" for a in self.attempts)
        return NoProviderAvailable(
            f"all providers failed ({tried})", outcome=last.outcome, http_status=last.http_status
        )


class Retries:
    """The retry budget of one candidate: how long to wait before trying it again, or None."""

    def __init__(self, single_attempt: bool = False):
        self.left = 0 if single_attempt else settings.UPSTREAM_RETRIES
        self.deadline = time.monotonic() + settings.UPSTREAM_RETRY_BUDGET
        self.done = 0

    def delay(self, error: ProviderError) -> float | None:
        if not error.retryable or self.left <= 0:
            return None
        # Full jitter: spreads the retries of many callers hit by the same outage.
        wait = random.uniform(0, settings.UPSTREAM_RETRY_BACKOFF * 2**self.done)
        if error.retry_after is not None:
            wait = error.retry_after + random.uniform(0, settings.UPSTREAM_RETRY_BACKOFF)
        if time.monotonic() + wait >= self.deadline:
            return None  # a long Retry-After, or no budget left: fall back instead
        self.left -= 1
        self.done += 1
        return wait


async def route_stream(
    candidates: list[AIModel], messages: list[dict[str, Any]], params: dict[str, Any], trail: RouteTrail
) -> AsyncGenerator[str | ToolCallDelta]:
    """Yield the reply's text and tool call pieces from the first candidate that starts answering."""
    for model in candidates:
        provider = trail.client(model)
        trail.model = model
        retries = Retries(single_attempt=model.slug in trail.probes)
        while True:
            started = time.monotonic()
            delivered = False
            try:
                async for item in provider.stream(messages, model.upstream_id, params):
                    if isinstance(item, StreamEnd):
                        trail.end = item
                        continue
                    if not delivered:
                        delivered = True
                        trail.first_token_at = time.monotonic()
                    yield item
            except ProviderError as exc:
                trail.record(model, started, exc)
                if delivered or not exc.retryable:
                    raise
                if (wait := retries.delay(exc)) is None:
                    break  # the next candidate
                await asyncio.sleep(wait)
                continue
            except BaseException:  # cancelled by the caller (Stop, disconnect): still on the trail
                trail.record(model, started, CANCELLED)
                raise
            trail.record(model, started)
            return
    raise trail.give_up()


async def route_complete(
    candidates: list[AIModel], messages: list[dict[str, Any]], params: dict[str, Any], trail: RouteTrail
) -> Completion:
    for model in candidates:
        provider = trail.client(model)
        trail.model = model
        retries = Retries(single_attempt=model.slug in trail.probes)
        while True:
            started = time.monotonic()
            try:
                completion = await provider.complete(messages, model.upstream_id, params)
            except ProviderError as exc:
                trail.record(model, started, exc)
                if not exc.retryable:
                    raise
                if (wait := retries.delay(exc)) is None:
                    break
                await asyncio.sleep(wait)
                continue
            except BaseException:  # the caller went away while the upstream was answering
                trail.record(model, started, CANCELLED)
                raise
            trail.record(model, started)
            trail.end = completion.end
            trail.first_token_at = time.monotonic()
            return completion
    raise trail.give_up()
