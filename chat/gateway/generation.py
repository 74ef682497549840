"""One request to a model, from the chat page or the API: routed, streamed, metered exactly once.

Each request has a request id, under which its usage row is written. The caller's own rows (the chat's
reply) are the caller's: `on_finish` stores them after the usage row is committed (in a transaction of
their own, so that nothing they do can lose the row), or after a refusal (nothing recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from django.db import close_old_connections, transaction
from django.utils import timezone

from accounts.models import ApiKey, User
from aihub import lanes
from aihub.message_content import has_images
from billing import inflight, limits, metering, outbox
from billing.models import UsageRecord
from chat.catalogue import lookup as catalogue
from chat.catalogue.models import AIModel
from deploy import logs, metrics

from . import breaker, context_window
from .providers.base import ProviderError, ToolCallDelta, ToolCalls
from .router import RouteTrail, candidates_for, clients_for, route_complete, route_stream

logger = logging.getLogger(__name__)


log = logging.getLogger("aihub.requests")

# What a stream has delivered is checkpointed at least this often (from its start): a process that
# dies mid-stream loses at most this much of it (billing.inflight settles it from the checkpoint).
CHECKPOINT_SECONDS = 1.0


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class Generation:
    """Runs one request. However it ends (complete, stopped, failed), `settle` records it once."""

    def __init__(
        self,
        *,
        user: User,
        model: AIModel | None = None,
        messages: list[dict[str, Any]],
        params: dict[str, Any] | None = None,
        api_key: ApiKey | None = None,
        resolve_model: Callable[[catalogue.Catalogue], AIModel | None] | None = None,
        request_id: uuid.UUID | None = None,
        on_finish: Callable[[Generation, UsageRecord | None], None] | None = None,
        on_checkpoint: Callable[[str], None] | None = None,
        purpose: str = UsageRecord.Purpose.REQUEST,
        settle_after_response: bool = False,
    ):
        """`resolve_model`, instead of `model`: finds the requested model in the catalogue it is given
        (or raises the caller's error), in the admission's worker thread, so that the lookup costs no
        thread hop of its own. `on_finish(generation, usage_record)`: sync, called once in a worker
        thread when the request is over, after its usage row is committed (None when the
        plan refused the request). `on_checkpoint(text so far)`: sync, called with each checkpoint of a
        stream, in its worker thread (the chat saves its reply's text). `purpose`: what the usage row says
        the request was for (a side call such as a conversation title says so). `settle_after_response`: a
        clean request's usage row is written once the response is sent (aihub.lanes.after_response), its
        figures known before (`tokens`); its reservation, kept until then, meters it should the process die."""
        self.user = user
        self.requested_model = model
        self.resolve_model = resolve_model
        self.messages = messages
        self.params = params or {}
        self.api_key = api_key
        self.request_id = request_id or uuid.uuid4()
        self.on_finish = on_finish
        self.on_checkpoint = on_checkpoint
        self.checkpointed_at = 0.0  # the stream's start, once it streams
        self.checkpointing: asyncio.Task[None] | None = None
        self.breaker_recorded = False
        self.streaming = False  # a stream takes its reservation with its admission (`_admit`)
        self.purpose = purpose
        self.trail = RouteTrail()
        self.parts: list[str] = []
        self.tool_calls = ToolCalls()  # only where the request offered tools
        self.status = UsageRecord.Status.FAILED
        self.error = ""
        self.settle_after_response = settle_after_response
        self.figures: dict[str, Any] | None = None  # what `settle` records, once it has started
        self.usage_record: UsageRecord | None = None
        self.admission: limits.Admission | None = None
        self.tried_models: dict[str, AIModel] = {}
        self.failing_breakers: frozenset[str] = frozenset()  # as read at admission (breaker.Passage)
        self.started = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def stream(self, on_delta: Callable[[str | ToolCallDelta], Awaitable[None]]) -> None:
        """Call on_delta for each piece of text (and of a tool call, where the request offered tools).
        Raises ProviderError; cancellable at any await."""
        logs.request_id.set(str(self.request_id))  # in our log lines and sent upstream
        self.streaming = True
        candidates = await self._admitted()
        metrics.OPEN_STREAMS.inc()
        try:
            async with self._metered():
                await self._hold()
                self.checkpointed_at = time.monotonic()
                # aclosing: if on_delta raises, the upstream connection is closed now, not at garbage collection.
                deltas = route_stream(candidates, self.messages, self.params, self.trail)
                async with contextlib.aclosing(deltas):
                    async for delta in deltas:
                        if isinstance(delta, ToolCallDelta):
                            self.tool_calls.add(delta)
                        else:
                            self.parts.append(delta)
                        await on_delta(delta)
                        self._checkpoint()
        finally:
            metrics.OPEN_STREAMS.dec()

    async def complete(self) -> str:
        logs.request_id.set(str(self.request_id))  # in our log lines and sent upstream
        candidates = await self._admitted()
        async with self._metered():
            completion = await route_complete(candidates, self.messages, self.params, self.trail)
            self.parts.append(completion.text)
            for call in completion.tool_calls:
                self.tool_calls.add(call)
        return completion.text

    @contextlib.asynccontextmanager
    async def _metered(self) -> AsyncIterator[None]:
        """However the request inside ends, it gets its status and is settled exactly once."""
        try:
            yield
            self.status = UsageRecord.Status.COMPLETE
        except asyncio.CancelledError:
            self.status = UsageRecord.Status.STOPPED
            raise
        except ProviderError as exc:
            self.error = exc.public_message  # shown on the reply; the upstream's words stay in the attempts
            raise
        finally:
            # Shielded: a second cancellation must not lose the record of what was delivered.
            await asyncio.shield(self.settle())

    async def admit(self) -> list[AIModel]:
        """The caller's plan, before any upstream call: raises LimitExceeded (nothing reserved, nothing
        recorded), or reserves the worst case, which `settle` swaps for the real figures."""
        try:
            self.admission = await limits.admit_async(self._admit)
        except limits.LimitExceeded as exc:
            metrics.LIMIT_REFUSALS.labels(exc.code).inc()
            self.error = str(exc)
            if self.on_finish is not None:
                await database_sync_to_async(self.on_finish)(self, None)
            raise
        self.params = self.admission.params  # max_tokens clamped to the plan's cap and the context
        self.messages = self.admission.messages  # fitted to the context
        return self.admission.candidates

    async def _admitted(self) -> list[AIModel]:
        """The candidates of an admission made earlier by the caller (`admit`), or of one made now."""
        return self.admission.candidates if self.admission is not None else await self.admit()

    def _eligible(self, candidates: list[AIModel]) -> list[AIModel]:
        if has_images(self.messages):  # images only go to models that take them (fallbacks included)
            candidates = [m for m in candidates if m.supports_images]
        allowed = getattr(self.api_key, "allowed_model_ids", None)
        if allowed:  # a key limited to some models never falls back to another one
            candidates = [m for m in candidates if m.pk in allowed]
        return candidates

    def _admit(self) -> limits.Admission:
        models = catalogue.current()
        if self.resolve_model is not None:
            self.requested_model = self.resolve_model(models)
        candidates = self._eligible(candidates_for(self.requested_model, models, self.params))
        passage = breaker.admit(candidates)
        for model in passage.skipped:
            self.trail.skip(model)
        self.trail.probes = passage.probes
        self.trail.clients = clients_for(passage.allowed)
        self.tried_models = {model.slug: model for model in passage.allowed}
        self.failing_breakers = passage.failing
        admission = limits.admit(
            user=self.user,
            api_key=self.api_key,
            model=self.requested_model,
            candidates=passage.allowed,
            messages=self.messages,
            params=self.params,
            fit=context_window.fit,
            request_id=self.request_id,
            purpose=self.purpose,
        )
        if self.streaming and admission.reservation_id is None:  # `_hold`, in this hop
            admission.reservation_id = self._held(admission)
        return admission

    async def _hold(self) -> None:
        """A stream is in flight under a reservation of this process, which the sweeper settles from its
        checkpoints should the process die; one admitted without (nothing to reserve against) gets one now."""
        admission = self.admission
        if admission is not None and admission.reservation_id is None:
            admission.reservation_id = await database_sync_to_async(self._held)(admission)

    def _held(self, admission: limits.Admission) -> int:
        return limits.hold(
            admission,
            user=self.user,
            api_key=self.api_key,
            request_id=self.request_id,
            purpose=self.purpose,
            now=timezone.now(),
        )

    def _checkpoint(self) -> None:
        """What was delivered so far, at least every CHECKPOINT_SECONDS: on the request's reservation, and the
        caller's own rows (on_checkpoint). Written beside the stream, one at a time: a slow or refusing database
        holds up no delivery (the next checkpoint, or the settlement, says it)."""
        now = time.monotonic()
        if now - self.checkpointed_at < CHECKPOINT_SECONDS:
            return
        if self.checkpointing is not None and not self.checkpointing.done():
            return
        self.checkpointed_at = now
        self.checkpointing = asyncio.create_task(self._write_checkpoint(self.text, self.tool_calls.text()))

    async def _write_checkpoint(self, text: str, tool_text: str) -> None:
        try:
            await database_sync_to_async(self._save_checkpoint)(text, tool_text)
        except outbox.LEDGER_DOWN:
            logger.warning("request %s: checkpoint refused by the database", self.request_id)
        except Exception:  # a checkpoint never costs the stream, nor its settlement
            logger.exception("request %s: checkpoint failed", self.request_id)

    def _save_checkpoint(self, text: str, tool_text: str) -> None:
        model = self.trail.model
        if self.admission is not None and self.admission.reservation_id is not None:
            delivered = metering.count_text_tokens(text + tool_text)
            inflight.checkpoint(self.admission.reservation_id, model.pk if model else None, delivered)
        if self.on_checkpoint is not None:
            self.on_checkpoint(text)

    @property
    def tokens(self) -> tuple[int, int]:
        """The settled request's prompt and completion tokens, as its usage row has them."""
        assert self.figures is not None  # settled: the request is over
        return self.figures["prompt_tokens"], self.figures["completion_tokens"]

    async def settle(self) -> None:
        if self.figures is not None:
            return
        if self.checkpointing is not None:  # before the settlement, which makes it moot
            await self.checkpointing
        model = self.trail.model
        end = self.trail.end  # only there when the upstream finished its reply
        if end is None and not self.parts and not self.tool_calls:
            prompt_tokens = completion_tokens = 0  # nothing was delivered: nothing to charge
        else:
            prompt_tokens, completion_tokens = metering.measured_tokens(
                self.messages, self.text + self.tool_calls.text(), end.usage if end else None, self.params.get("tools")
            )
        now = time.monotonic()
        self.figures = dict(
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_ms=_ms(self.trail.first_token_at - self.started) if self.trail.first_token_at else None,
            latency_ms=_ms(now - self.started),
            reported=end.usage if end else None,
        )
        if self.settle_after_response and self._clean():
            await lanes.after_response(self._write_settlement)
        else:
            await self._write_settlement()

    def _clean(self) -> bool:
        """Complete at the first try, with no breaker failing as it was admitted: its settlement moves no
        breaker (breaker.record), so the next request's admission reads the same breakers whenever it lands."""
        return (
            self.status == UsageRecord.Status.COMPLETE
            and not self.failing_breakers
            and all(attempt.outcome == "ok" for attempt in self.trail.attempts)
        )

    async def _write_settlement(self) -> None:
        assert self.figures is not None
        logs.request_id.set(str(self.request_id))  # after the response: outside the request's context
        self.usage_record = await self._write_ledger(**self.figures)
        metrics.generation_settled(self.usage_record, self.trail.attempts)
        record = self.usage_record
        log.info(
            "model request %s",
            record.status,
            extra={
                "model": record.model_slug,
                "provider": record.provider,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "cost": str(record.cost),
                "ttft_ms": record.ttft_ms,
                "latency_ms": record.latency_ms,
                "attempts": [f"{a.model_slug}: {a.outcome}" for a in self.trail.attempts],
            },
        )

    async def _write_ledger(self, **figures: Any) -> UsageRecord:
        """The usage row, or (the database refusing it) a stand-in while it waits in the outbox."""
        settlement = outbox.Settlement.of(
            request_id=self.request_id,
            user=self.user,
            api_key=self.api_key,
            status=self.status,
            admission=self.admission,
            attempts=self.trail.attempts,
            purpose=self.purpose,
            text=self.text,
            error=self.error,
            **figures,
        )
        write = partial(self._record, **figures)
        return await outbox.write_or_keep(
            write, settlement, user=self.user, api_key=self.api_key, model=figures["model"]
        )

    def _record(self, **figures: Any) -> UsageRecord:
        close_old_connections()  # a long stream may have outlived the connection
        if not self.breaker_recorded:  # once, however often the ledger write is tried
            self.breaker_recorded = True
            breaker.record(self.trail.attempts, self.tried_models, self.failing_breakers)
        # Usage first, committed on its own: whatever then happens to the caller's rows (a reply deleted
        # with its conversation, replaced by a regeneration), the request is metered and its reservation freed.
        record = metering.record_usage(
            request_id=self.request_id,
            user=self.user,
            api_key=self.api_key,
            attempts=self.trail.attempts,
            status=self.status,
            admission=self.admission,
            purpose=self.purpose,
            **figures,
        )
        if record.status != self.status:  # settled before, by a sweeper that took this process for dead
            logger.warning(
                "request %s: settled meanwhile as %s; its own figures are not recorded", self.request_id, record.status
            )
        if self.on_finish is not None:
            try:
                with transaction.atomic():
                    self.on_finish(self, record)
            except Exception:  # the caller's rows only: the usage row above is kept
                logger.exception("request %s: storing its result failed after it was metered", self.request_id)
        return record
