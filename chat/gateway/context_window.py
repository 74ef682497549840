"""Fitting a request into its model's context window: how much it may write, and which history is sent.

The reply's allowance comes first: the smallest of what was asked (max_tokens, else a quarter of the
context), the plan's cap and what the context leaves beside the messages that must be sent. The
history then fills what is left, newest first: system messages and the latest message are always
sent, the oldest others are left out whole (a message is never cut: half a message can silently
change its meaning), in blocks (`_stable_cut`). A request whose required messages leave less than OUTPUT_FLOOR
tokens (or less than its max_tokens, if smaller) for the reply is refused (ContextTooSmall) before
anything is reserved or sent.

Tokens are counted with the model's own tokenizer where we have it (the local model), and with tiktoken
otherwise, which stands in for tokenizers we do not have: TIKTOKEN_MARGIN of the context is then kept
free for their disagreement (settings.TOKENIZER_MARGIN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aihub.message_content import text_of
from billing.limits import LimitExceeded
from billing.metering import TOKENS_PER_REPLY, count_prompt_tokens, tokenizer_margin
from chat.catalogue.models import AIModel

from .providers.local import TEMPLATE_MARGIN, LocalProvider
from .router import get_provider

# A reply is given at least this many tokens; a prompt that leaves fewer is refused.
OUTPUT_FLOOR = 64
# Without max_tokens, a reply may use up to this share of the context (the rest holds history)...
DEFAULT_OUTPUT_SHARE = 4
# ...and never more than this (large contexts).
DEFAULT_OUTPUT_TOKENS = 4096
# Older messages are left out in blocks of about this share of the context (see `_stable_cut`).
CUT_BLOCK_SHARE = 2
CHARS_PER_TOKEN = 4  # roughly, for English: blocks need not be exact, only the same every time


class ContextTooSmall(LimitExceeded):
    """The messages that must be sent do not fit the model's context: refused before any upstream call."""

    def __init__(self, message: str):
        super().__init__(message, code="context_length_exceeded", http_status=400)

    @property
    def upgrade_url(self) -> str | None:  # type: ignore[override]  # no plan makes a context longer
        return None


@dataclass(frozen=True)
class Window:
    """One model's context as we can count it."""

    context_length: int
    count: Callable[[dict[str, Any]], int]  # tokens one message takes in the model's chat format
    reserved: int  # tokens the context holds back: the format's own (reply primer) and our margin

    @property
    def usable(self) -> int:
        return self.context_length - self.reserved


@dataclass(frozen=True)
class Fit:
    messages: list[dict[str, Any]]  # what is sent, in order
    dropped: int  # how many of the oldest messages were left out
    max_tokens: int  # the reply's allowance, sent upstream as max_tokens

    @property
    def sent_history(self) -> int:
        """How many non-system messages are sent (the newest ones)."""
        return sum(1 for m in self.messages if m["role"] != "system")


def _text(message: dict[str, Any]) -> str:
    """A message's text (its text parts; a tool call's content is None)."""
    return text_of(message.get("content"))


def tiktoken_message_tokens(message: dict[str, Any]) -> int:
    """One message as billing.metering counts prompts (images and tool calls included)."""
    return count_prompt_tokens([message]) - TOKENS_PER_REPLY


def window_for(model: AIModel) -> Window | None:
    """The model's window: the local model's real one (its own tokenizer), else the catalogue's
    context_length counted with tiktoken; None when the catalogue does not know it."""
    if model.is_local:
        local = get_provider(model.provider)
        if isinstance(local, LocalProvider):  # its own tokenizer: only the template's text and a margin held back
            return Window(local.context_length, local.count_message_tokens, TEMPLATE_MARGIN + local.template_tokens)
    if not model.context_length:
        return None
    margin = int(model.context_length * tokenizer_margin())
    return Window(model.context_length, tiktoken_message_tokens, TOKENS_PER_REPLY + margin)


def fit(
    messages: list[dict[str, Any]], candidates: list[AIModel], max_tokens: int | None, cap: int | None = None
) -> Fit:
    """Fit `messages` into the context of every candidate (the router may fall back to any of them).
    `max_tokens`: what the request asked for; `cap`: the plan's cap (None: not set)."""
    windows = [w for w in (window_for(m) for m in candidates) if w is not None]
    if not windows:  # nothing known to fit into: sent as they are
        return Fit(list(messages), 0, min(b for b in (max_tokens or DEFAULT_OUTPUT_TOKENS, cap) if b))
    usable = min(w.usable for w in windows)
    context_length = min(w.context_length for w in windows)

    def cost(message: dict[str, Any]) -> int:
        return max(w.count(message) for w in windows)

    required = [i for i, m in enumerate(messages) if m["role"] == "system"]
    if messages and len(messages) - 1 not in required:
        required.append(len(messages) - 1)
    required_tokens = sum(cost(messages[i]) for i in required)
    room = usable - required_tokens
    wanted = max_tokens or min(DEFAULT_OUTPUT_TOKENS, context_length // DEFAULT_OUTPUT_SHARE)
    wanted = min(wanted, cap) if cap else wanted
    floor = min(OUTPUT_FLOOR, wanted)
    if room < floor:
        raise ContextTooSmall(
            f"This message needs about {required_tokens:,} tokens"
            f"{' with the system prompt' if len(required) > 1 else ''}, and this model's context holds "
            f"{context_length:,} (with room for a reply of at least {floor} tokens). "
            "Shorten it, split it, or pick a model with a longer context."
        )
    allowance = min(wanted, room)
    budget = room - allowance
    keep = set(required)
    for index in range(len(messages) - 1, -1, -1):  # newest first; stop at the first that does not fit
        if index in keep:
            continue
        budget -= cost(messages[index])
        if budget < 0:
            break
        keep.add(index)
    first_kept = min((i for i in keep if messages[i]["role"] != "system"), default=len(messages))
    if len(keep) < len(messages):
        first_kept = _stable_cut(messages, first_kept, usable)
        keep = {i for i in keep if i >= first_kept or messages[i]["role"] == "system"}
    # A history that starts with a reply (or a tool's result), its question left out, is not sent: it
    # starts at a user message.
    while first_kept < len(messages) - 1 and messages[first_kept]["role"] in ("assistant", "tool"):
        keep.discard(first_kept)
        first_kept += 1
    kept = [m for i, m in enumerate(messages) if i in keep]
    return Fit(kept, len(messages) - len(kept), allowance)


def _stable_cut(messages: list[dict[str, Any]], earliest: int, usable: int) -> int:
    """Where the sent history starts: not at `earliest`, the oldest message that fits (it moves with
    every turn), but at the first block start from there on. Blocks are fixed by the characters before
    each message, which a growing conversation never changes, so the first message sent stays the same
    for many turns: the local model reuses its evaluated prompt (llama.cpp keeps the common prefix), as
    providers' prompt caches do. The price: up to a block less history is sent."""
    block = max(1, usable * CHARS_PER_TOKEN // CUT_BLOCK_SHARE)
    before = 0  # characters of the (non-system) messages before this one
    previous_block = -1
    for index, message in enumerate(messages[:-1]):  # the latest message is sent whatever happens
        if message["role"] == "system":
            continue
        current_block = before // block
        if index >= earliest and current_block != previous_block:  # a block starts with this message
            return index
        previous_block = current_block
        before += len(_text(message))
    return earliest
