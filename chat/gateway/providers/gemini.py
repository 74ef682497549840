"""Google Gemini through its native API (streamGenerateContent with SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .base import Completion, ProviderClient, ProviderError, StreamEnd, Usage
from .sse import open_stream, post_json, sse_json

# Gemini's finish reasons, in OpenAI's words.
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}


def gemini_request(messages: list[dict], params: dict) -> dict:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    contents = [
        {"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
        for m in messages
        if m["role"] != "system"
    ]
    config = {
        "temperature": params.get("temperature"),
        "topP": params.get("top_p"),
        "maxOutputTokens": params.get("max_tokens"),
        "stopSequences": [params["stop"]] if isinstance(params.get("stop"), str) else params.get("stop"),
    }
    body: dict = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = {k: v for k, v in config.items() if v is not None}
    if config:
        body["generationConfig"] = config
    return body


def _parse(event: dict) -> tuple[str, str | None, Usage | None]:
    if "error" in event:
        error = event["error"]
        raise ProviderError(f"upstream error: {error.get('message', error)}", outcome="stream_error")
    text, finish = "", None
    for candidate in event.get("candidates") or []:
        text += "".join(part.get("text", "") for part in (candidate.get("content") or {}).get("parts") or [])
        if candidate.get("finishReason"):
            finish = FINISH_REASONS.get(candidate["finishReason"], candidate["finishReason"].lower())
    meta = event.get("usageMetadata")
    return text, finish, _usage(meta) if meta else None


def _usage(meta: dict) -> Usage:
    """Thinking tokens are billed as output, so they count as completion tokens."""
    output = [meta[k] for k in ("candidatesTokenCount", "thoughtsTokenCount") if meta.get(k) is not None]
    return Usage(meta.get("promptTokenCount"), sum(output) if output else None)


class GeminiProvider(ProviderClient):
    name = "gemini"

    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url.rstrip("/")
        self.headers = {"x-goog-api-key": api_key}

    async def stream(self, messages: list[dict], model: str, params: dict) -> AsyncIterator[str | StreamEnd]:
        url = f"{self.base_url}/models/{model}:streamGenerateContent?alt=sse"
        usage, finish = Usage(), None
        async with open_stream(url, json_body=gemini_request(messages, params), headers=self.headers) as r:
            async for event in sse_json(r):
                if event is None:
                    continue
                text, event_finish, event_usage = _parse(event)
                if text:
                    yield text
                finish = event_finish or finish
                usage = event_usage or usage
        if finish is None:
            raise ProviderError("upstream stream ended before it was complete", outcome="connection_lost")
        yield StreamEnd(usage, finish)

    async def complete(self, messages: list[dict], model: str, params: dict) -> Completion:
        url = f"{self.base_url}/models/{model}:generateContent"
        text, finish, usage = _parse(
            await post_json(url, json_body=gemini_request(messages, params), headers=self.headers)
        )
        return Completion(text, StreamEnd(usage or Usage(), finish or "stop"))
