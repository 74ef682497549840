"""Any OpenAI-compatible chat completions API: OpenRouter, Ollama, vLLM, LM Studio..."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal, InvalidOperation
from typing import Any

from .base import (
    SAMPLING_PARAMS,
    Completion,
    Embeddings,
    ProviderClient,
    ProviderError,
    StreamEnd,
    ToolCallDelta,
    Usage,
)
from .sse import open_stream, post_json, sse_json

# Everything OpenAI's chat completions take that this API relays (see chat/api/README.md).
OPENAI_PARAMS = SAMPLING_PARAMS | {
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
}


def _usage(payload: dict[str, Any] | None) -> Usage:
    payload = payload or {}
    cost = payload.get("cost")
    reported_cost = None
    if isinstance(cost, int | float | str) and not isinstance(cost, bool):
        with contextlib.suppress(InvalidOperation):
            reported_cost = Decimal(str(cost))
    return Usage(payload.get("prompt_tokens"), payload.get("completion_tokens"), reported_cost)


def _error_message(error: Any) -> str:
    return error.get("message", str(error)) if isinstance(error, dict) else str(error)


def _stream_error(error: Any) -> ProviderError:
    """An error sent as an event. OpenRouter gives it an HTTP-like code: 429 and 5xx are worth a
    fallback (the router only falls back while nothing has been delivered)."""
    code = error.get("code") if isinstance(error, dict) else None
    status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
    return ProviderError(
        f"upstream error: {_error_message(error)}",
        outcome=f"http_{status}" if status else "stream_error",
        http_status=status,
        retryable=status is not None and (status == 429 or status >= 500),
    )


def _tool_call_pieces(calls: Any) -> list[ToolCallDelta]:
    """Tool calls of a message or of a streamed delta (whole or in pieces) as ToolCallDelta."""
    pieces = []
    for position, call in enumerate(calls or []):
        if not isinstance(call, dict):
            raise ProviderError("upstream sent a tool call that is not an object", outcome="bad_response")
        function = call.get("function") or {}
        index = call.get("index", position)
        pieces.append(
            ToolCallDelta(
                index=index if isinstance(index, int) else position,
                id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        )
    return pieces


def _vectors(data: dict[str, Any], count: int) -> list[list[float]]:
    try:
        items = sorted(data["data"], key=lambda item: item["index"])
        vectors = [item["embedding"] for item in items]
    except (KeyError, TypeError) as exc:
        raise ProviderError("upstream embeddings reply has no data", outcome="bad_response", retryable=True) from exc
    if len(vectors) != count or not all(isinstance(v, list) for v in vectors):
        raise ProviderError(
            f"upstream sent {len(vectors)} embeddings for {count} inputs", outcome="bad_response", retryable=True
        )
    return vectors


class OpenAICompatProvider(ProviderClient):
    params = OPENAI_PARAMS
    embedding_params = frozenset({"dimensions", "user"})

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str = "",
        extra_headers: dict[str, Any] | None = None,
        *,
        usage_accounting: bool = False,
    ):
        """`usage_accounting`: ask for OpenRouter's usage accounting (the cost it charged, in `usage.cost`)."""
        self.name = name
        self.usage_accounting = usage_accounting
        self.base_url = base_url.rstrip("/")
        self.headers = {**(extra_headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def _accounting(self) -> dict[str, Any]:
        return {"usage": {"include": True}} if self.usage_accounting else {}

    async def stream(
        self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        body = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.forwarded(params),
            **self._accounting(),
        }
        usage, finish_reason, done = Usage(), None, False
        async with open_stream(f"{self.base_url}/chat/completions", json_body=body, headers=self.headers) as r:
            async for event in sse_json(r):
                if event is None:
                    done = True
                    break
                if "error" in event:
                    raise _stream_error(event["error"])
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        yield delta["content"]
                    for piece in _tool_call_pieces(delta.get("tool_calls")):
                        yield piece
                    finish_reason = choice.get("finish_reason") or finish_reason
                if event.get("usage"):
                    usage = _usage(event["usage"])
        if not done and finish_reason is None:
            raise ProviderError("upstream stream ended before it was complete", outcome="connection_lost")
        yield StreamEnd(usage, finish_reason or "stop")

    async def complete(self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]) -> Completion:
        body = {"model": model, "messages": messages, "stream": False, **self.forwarded(params), **self._accounting()}
        data = await post_json(f"{self.base_url}/chat/completions", json_body=body, headers=self.headers)
        if "error" in data:
            raise _stream_error(data["error"])
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderError("upstream reply has no choices", outcome="bad_response", retryable=True) from exc
        message = choice.get("message") or {}
        return Completion(
            message.get("content") or "",
            StreamEnd(_usage(data.get("usage")), choice.get("finish_reason") or "stop"),
            tuple(_tool_call_pieces(message.get("tool_calls"))),
        )

    async def embed(self, texts: list[str], model: str, params: dict[str, Any]) -> Embeddings:
        # Floats upstream whatever the caller asked for: the usage is counted and base64 made here.
        body = {"model": model, "input": texts, "encoding_format": "float"}
        body.update({k: v for k, v in params.items() if k in self.embedding_params and v is not None})
        data = await post_json(f"{self.base_url}/embeddings", json_body=body, headers=self.headers)
        if "error" in data:
            raise _stream_error(data["error"])
        return Embeddings(_vectors(data, len(texts)), _usage(data.get("usage")).prompt_tokens)
