"""The cost of a message before it is sent: the prompt as it would be sent (fitted to the context), the
reply's allowance, and the price range (the composer's estimate, POST /api/v1/estimate)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from accounts.models import User
from billing import limits
from billing.metering import count_prompt_tokens, tokenizer_margin
from chat.catalogue import lookup as catalogue
from chat.catalogue.models import AIModel

from . import context_window
from .router import candidates_for


@dataclass(frozen=True)
class Estimate:
    prompt_tokens: int  # as we count the prompt sent (tiktoken)
    max_output_tokens: int
    messages_sent: int
    messages_dropped: int
    cost_min: Decimal  # the prompt alone, at the cheapest candidate, counted low
    cost_max: Decimal  # the most the request can be charged: what admission would reserve


def estimate(*, user: User, model: AIModel | None, messages: list[dict[str, Any]], params: dict[str, Any]) -> Estimate:
    """Sync (catalogue and plan lookups). Raises LimitExceeded where the request would be refused anyway
    (a model the plan excludes, a message longer than the context)."""
    candidates = candidates_for(model, catalogue.current())
    worst = limits.estimate(
        user=user, model=model, candidates=candidates, messages=messages, params=params, fit=context_window.fit
    )
    prompt_tokens = count_prompt_tokens(worst.messages, worst.params.get("tools"))  # tool schemas are sent too
    # The upstream counts with its own tokenizer: its count may be lower than ours, or higher, by the margin
    # kept for that. The charge never exceeds the reservation (billing.metering), which holds the higher.
    fewest = math.floor(prompt_tokens * (1 - tokenizer_margin()))
    return Estimate(
        prompt_tokens=prompt_tokens,
        max_output_tokens=worst.params.get("max_tokens") or 0,
        messages_sent=len(worst.messages),
        messages_dropped=worst.dropped_messages,
        cost_min=min((m.cost(fewest, 0) for m in worst.candidates), default=Decimal(0)),
        cost_max=worst.reserved_cost,
    )
