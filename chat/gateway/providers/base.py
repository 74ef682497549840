"""The provider interface: stream() yields text deltas then one StreamEnd; complete() returns all."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

# Parameters we pass on to every upstream; anything else in a request is not forwarded.
FORWARDED_PARAMS = ("temperature", "max_tokens", "top_p", "stop")


@dataclass(frozen=True)
class Usage:
    """Token counts as the upstream reported them; None where it said nothing (0 stays 0)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class StreamEnd:
    usage: Usage
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    end: StreamEnd


class ProviderError(Exception):
    """An upstream failed. `retryable` errors let the router try the next provider."""

    def __init__(self, message: str, *, outcome: str, http_status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.outcome = outcome
        self.http_status = http_status
        self.retryable = retryable

    @classmethod
    def from_status(cls, status: int, body: str) -> ProviderError:
        retryable = status == 429 or status >= 500
        return cls(
            f"upstream answered HTTP {status}: {body[:300]}",
            outcome=f"http_{status}",
            http_status=status,
            retryable=retryable,
        )

    @classmethod
    def from_transport(cls, exc: httpx.TransportError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            return cls(f"upstream timed out ({type(exc).__name__})", outcome="timeout", retryable=True)
        if isinstance(exc, httpx.ConnectError):
            return cls(f"cannot connect to upstream: {exc}", outcome="connect_error", retryable=True)
        return cls(f"upstream connection lost: {exc or type(exc).__name__}", outcome="connection_lost", retryable=True)


class ProviderClient(abc.ABC):
    """One upstream service. Implementations share the process-wide HTTP client."""

    name: str

    @abc.abstractmethod
    def stream(self, messages: list[dict], model: str, params: dict) -> AsyncIterator[str | StreamEnd]:
        """Yield text deltas as they arrive, then exactly one StreamEnd. Raise ProviderError."""

    async def complete(self, messages: list[dict], model: str, params: dict) -> Completion:
        """The whole reply at once. By default gathered from stream(); HTTP providers override it."""
        parts: list[str] = []
        end = StreamEnd(Usage())
        async for item in self.stream(messages, model, params):
            if isinstance(item, StreamEnd):
                end = item
            else:
                parts.append(item)
        return Completion("".join(parts), end)


def forwarded(params: dict) -> dict:
    return {k: v for k, v in params.items() if k in FORWARDED_PARAMS and v is not None}
