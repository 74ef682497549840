"""One embeddings request: admitted by the caller's plan like a chat request, sent to the model's
provider, metered exactly once. An embedding has input tokens only (no output, no fallback chain)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import close_old_connections

from accounts.models import ApiKey, User
from billing import limits, metering, outbox
from billing.models import UsageRecord
from chat.catalogue import lookup as catalogue
from chat.catalogue.lookup import configured_providers
from chat.catalogue.models import AIModel
from deploy import metrics

from .providers.base import ProviderError
from .router import CANCELLED, RouteTrail, get_provider

# What admission reserves for the output of an embedding: the least it takes (none is produced).
NO_OUTPUT = {"max_tokens": 1}


class EmbeddingJob:
    def __init__(
        self,
        *,
        user: User,
        api_key: ApiKey | None = None,
        resolve_model: Callable[[catalogue.Catalogue], AIModel],
        texts: list[str],
        params: dict[str, Any],
    ):
        """`resolve_model` finds the requested model in the catalogue it is given (or raises the caller's
        error), in the admission's worker thread."""
        self.user = user
        self.api_key = api_key
        self.resolve_model = resolve_model
        self.texts = texts
        self.params = params
        self.request_id = uuid.uuid4()
        self.model: AIModel | None = None
        self.trail = RouteTrail()
        self.admission: limits.Admission | None = None
        self.usage_record: UsageRecord | None = None

    async def run(self) -> list[list[float]]:
        """The vectors. Raises LimitExceeded (nothing recorded) or ProviderError (recorded as failed)."""
        self.admission = await limits.admit_async(self._admit)
        started = time.monotonic()
        status, prompt_tokens = UsageRecord.Status.FAILED, 0
        try:
            if not self.admission.candidates:
                raise self.trail.give_up()  # its provider is not configured here
            model = self.model
            provider = get_provider(model.provider) if model is not None else None
            if model is None or provider is None:
                raise self.trail.give_up()
            self.trail.model = model
            try:
                result = await provider.embed(self.texts, model.upstream_id, self.params)
            except ProviderError as exc:
                self.trail.record(model, started, exc)
                raise
            except asyncio.CancelledError:
                self.trail.record(model, started, CANCELLED)
                status = UsageRecord.Status.STOPPED
                raise
            self.trail.record(model, started)
            status = UsageRecord.Status.COMPLETE
            prompt_tokens = (
                result.prompt_tokens
                if result.prompt_tokens is not None
                else sum(metering.count_text_tokens(text) for text in self.texts)
            )
            return result.vectors
        finally:
            # Shielded: a second cancellation must not lose the record.
            await asyncio.shield(self._settle(status, prompt_tokens, started))

    def _admit(self) -> limits.Admission:
        models = catalogue.current()
        self.model = self.resolve_model(models)
        return limits.admit(
            user=self.user,
            api_key=self.api_key,
            model=self.model,
            candidates=[self.model] if self.model.provider in configured_providers(models) else [],
            messages=[{"role": "user", "content": text} for text in self.texts],
            params=NO_OUTPUT,
        )

    async def _settle(self, status: str, prompt_tokens: int, started: float) -> None:
        if self.usage_record is not None:
            return
        latency_ms = round((time.monotonic() - started) * 1000)
        settlement = outbox.Settlement.of(
            request_id=self.request_id,
            user=self.user,
            api_key=self.api_key,
            model=self.model,
            status=status,
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
            ttft_ms=None,
            latency_ms=latency_ms,
            admission=self.admission,
            reported=None,
            attempts=self.trail.attempts,
        )
        write = partial(self._record, status, prompt_tokens, latency_ms)
        self.usage_record = await outbox.write_or_keep(
            write, settlement, user=self.user, api_key=self.api_key, model=self.model
        )
        metrics.generation_settled(self.usage_record, self.trail.attempts)

    def _record(self, status: str, prompt_tokens: int, latency_ms: int) -> UsageRecord:
        close_old_connections()
        return metering.record_usage(
            request_id=self.request_id,
            user=self.user,
            api_key=self.api_key,
            model=self.model,
            attempts=self.trail.attempts,
            status=status,
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
            ttft_ms=None,
            latency_ms=latency_ms,
            admission=self.admission,
        )
