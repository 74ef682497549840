"""The provider interface: stream() yields text deltas (and tool call fragments) then one StreamEnd;
complete() returns all."""

from __future__ import annotations

import abc
import datetime
import email.utils
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

# Generation parameters every provider takes; each provider class lists all it takes in `params`
# (the API refuses the others with a 400 naming them: never dropped on the way).
SAMPLING_PARAMS = frozenset({"temperature", "max_tokens", "top_p", "stop"})


@dataclass(frozen=True)
class Usage:
    """Token counts as the upstream reported them; None where it said nothing (0 stays 0)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Decimal | None = None  # USD, where the upstream reports what it charged (OpenRouter's usage.cost)


@dataclass(frozen=True)
class StreamEnd:
    usage: Usage
    finish_reason: str | None = None


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of one tool call, as OpenAI streams them: the first piece of call `index` carries its
    id and function name, later ones more of its JSON arguments. A whole call is one piece."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def as_openai(self) -> dict[str, Any]:
        """This piece as an item of a streamed delta's `tool_calls`."""
        call: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            call["id"] = self.id
            call["type"] = "function"
        function = {"name": self.name} if self.name is not None else {}
        function["arguments"] = self.arguments
        call["function"] = function
        return call


class ToolCalls:
    """Tool call pieces put together, in the order of their index."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, piece: ToolCallDelta) -> None:
        call = self._calls.setdefault(piece.index, {"id": "", "name": "", "arguments": []})
        call["id"] = piece.id or call["id"]
        call["name"] = piece.name or call["name"]
        call["arguments"].append(piece.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def as_openai(self) -> list[dict[str, Any]]:
        """The calls as OpenAI's message.tool_calls."""
        return [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
            }
            for _, call in sorted(self._calls.items())
        ]

    def text(self) -> str:
        """The names and arguments: what the model wrote, for counting its tokens."""
        return "".join(call["name"] + "".join(call["arguments"]) for call in self._calls.values())


@dataclass(frozen=True)
class Completion:
    text: str
    end: StreamEnd
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True)
class Embeddings:
    """One vector per input, in order, and the input tokens where the upstream counted them."""

    vectors: list[list[float]]
    prompt_tokens: int | None = None


PUBLIC_OUTCOMES = {
    "connect_error": "the model's provider could not be reached",
    "connection_lost": "the connection to the model's provider was lost",
    "bad_response": "the model's provider sent a reply that could not be read",
    "stream_error": "the model's provider reported an error",
    "local_error": "the local model failed",
    "cancelled": "cancelled by the client",
}


class ProviderError(Exception):
    """An upstream failed. `retryable` errors let the router try the next provider."""

    def __init__(
        self,
        message: str,
        *,
        outcome: str,
        http_status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.outcome = outcome
        self.http_status = http_status
        self.retryable = retryable
        self.retry_after = retry_after  # seconds, from the upstream's Retry-After header

    @property
    def public_message(self) -> str:
        """What the person or API client is told: the kind of failure, never the upstream's own words
        (an error body can name accounts, keys or internal hosts). The full text goes to the log and
        the admin's record of upstream attempts."""
        if self.outcome == "timeout":
            return "the model's provider did not answer in time"
        if self.http_status is not None:
            return f"the model's provider answered HTTP {self.http_status}"
        return PUBLIC_OUTCOMES.get(self.outcome, "the model's provider failed")

    @classmethod
    def from_status(cls, status: int, body: str, headers: httpx.Headers | None = None) -> ProviderError:
        retryable = status == 429 or status >= 500
        return cls(
            f"upstream answered HTTP {status}: {body[:300]}",
            outcome=f"http_{status}",
            http_status=status,
            retryable=retryable,
            retry_after=_seconds(headers.get("Retry-After")) if headers else None,
        )

    @classmethod
    def from_transport(cls, exc: httpx.TransportError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            return cls(f"upstream timed out ({type(exc).__name__})", outcome="timeout", retryable=True)
        if isinstance(exc, httpx.ConnectError):
            return cls(f"cannot connect to upstream: {exc}", outcome="connect_error", retryable=True)
        return cls(f"upstream connection lost: {exc or type(exc).__name__}", outcome="connection_lost", retryable=True)


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date; None if absent or bad."""
    if not retry_after:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


class ProviderClient(abc.ABC):
    """One upstream service. Implementations share the process-wide HTTP client."""

    name: str
    # The request parameters this provider passes on (the catalogue may further narrow it per model).
    params: frozenset[str] = SAMPLING_PARAMS

    @abc.abstractmethod
    def stream(
        self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """Yield text deltas and tool call pieces as they arrive, then exactly one StreamEnd. Raise
        ProviderError."""

    async def complete(self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]) -> Completion:
        """The whole reply at once. By default gathered from stream(); HTTP providers override it."""
        parts: list[str] = []
        calls: list[ToolCallDelta] = []
        end = StreamEnd(Usage())
        async for item in self.stream(messages, model, params):
            if isinstance(item, StreamEnd):
                end = item
            elif isinstance(item, ToolCallDelta):
                calls.append(item)
            else:
                parts.append(item)
        return Completion("".join(parts), end, tuple(calls))

    # The embeddings request parameters this provider passes on (beyond model and input).
    embedding_params: frozenset[str] = frozenset()

    async def embed(self, texts: list[str], model: str, params: dict[str, Any]) -> Embeddings:
        """One vector per text. Raise ProviderError."""
        raise ProviderError(f"{self.name} offers no embeddings", outcome="not_supported")

    def forwarded(self, params: dict[str, Any]) -> dict[str, Any]:
        """The request's parameters this provider takes, None meaning "not given"."""
        return {k: v for k, v in params.items() if k in self.params and v is not None}
