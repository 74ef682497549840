"""The OpenAI-compatible API under /v1: chat completions (streamed or not) and the model list."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid

from django.http import JsonResponse

from chat.gateway.generation import Generation

from .auth import allowed_model, authenticate_request
from .model_list import model_list
from .decorators import api_view
from .errors import ApiError, failure_error
from .streaming import GenerationStream, complete, open_generation_stream, sse_event, sse_response
from .validation import ChatRequest, parse_chat_request, read_json_body

logger = logging.getLogger(__name__)


def _usage(generation: Generation) -> dict:
    record = generation.usage_record
    return {
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
    }


def _finish_reason(generation: Generation) -> str:
    end = generation.trail.end
    return (end.finish_reason if end else None) or "stop"


def _served_slug(generation: Generation, requested: str) -> str:
    return generation.trail.model.slug if generation.trail.model else requested


class CompletionChunks:
    """The SSE body of a streamed completion, starting from the first delta already received."""

    def __init__(self, stream: GenerationStream, first_delta: str, chat: ChatRequest):
        self.stream = stream
        self.first_delta = first_delta
        self.chat = chat
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = _served_slug(stream.generation, chat.model)
        # A text chunk is the same bytes around its JSON-encoded text: encoded once, not per chunk.
        head = json.dumps(
            {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model},
            separators=(",", ":"),
        )
        self._text_head = f'data: {head[:-1]},"choices":[{{"index":0,"delta":{{"content":'.encode()
        self._text_tail = (
            '},"finish_reason":null}]' + (',"usage":null' if chat.include_usage else "") + "}\n\n"
        ).encode()

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> bytes:
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }
        if self.chat.include_usage:
            payload.setdefault("usage", None)
        return sse_event(payload)

    def text_chunk(self, text: str) -> bytes:
        """chunk({"content": text}), byte for byte."""
        return self._text_head + json.dumps(text).encode() + self._text_tail

    async def __aiter__(self):
        try:
            yield self.chunk({"role": "assistant", "content": self.first_delta})
            try:
                async for delta in self.stream.deltas():
                    yield self.text_chunk(delta)
            except Exception as exc:  # after the first byte nothing is retried: the client is told
                error = failure_error(exc)
                if error is None:
                    logger.exception("stream %s failed", self.id)
                    error = ApiError(502, "The stream failed.", "upstream_error")
                yield self.chunk({}, "error", error=error.body["error"])
                yield sse_event("[DONE]")
                return
            generation = self.stream.generation
            yield self.chunk({}, _finish_reason(generation))
            if self.chat.include_usage:
                yield sse_event(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": _usage(generation),
                    }
                )
            yield sse_event("[DONE]")
        finally:  # also on client disconnect (cancellation): the upstream is closed, the usage settled
            await self.stream.close()


async def _stream_response(generation: Generation, chat: ChatRequest):
    stream, first = await open_generation_stream(generation)
    return sse_response(CompletionChunks(stream, first, chat))


async def _complete_response(generation: Generation, chat: ChatRequest) -> JsonResponse:
    text = await complete(generation)
    return JsonResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": _served_slug(generation, chat.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": _finish_reason(generation),
                }
            ],
            "usage": _usage(generation),
        }
    )


@api_view("POST")
async def chat_completions(request):
    """POST /v1/chat/completions"""
    caller = await authenticate_request(request)
    chat = parse_chat_request(read_json_body(request))
    # The model is looked up in the admission's thread hop (an unknown or forbidden one is still a 404 / 403).
    generation = Generation(
        user=caller.user,
        resolve_model=functools.partial(allowed_model, caller, chat.model),
        messages=chat.messages,
        params=chat.params,
        api_key=caller.api_key,
    )
    if chat.stream:
        return await _stream_response(generation, chat)
    return await _complete_response(generation, chat)


@api_view("GET")
async def models(request):
    """GET /v1/models"""
    caller = await authenticate_request(request)
    return JsonResponse(await model_list(caller))


@api_view("GET")
async def model_detail(request, model_id: str):
    """GET /v1/models/{id} (ids contain slashes, as OpenRouter's do)"""
    caller = await authenticate_request(request)
    for entry in (await model_list(caller))["data"]:
        if entry["id"] == model_id:
            return JsonResponse(entry)
    raise ApiError(404, f"The model '{model_id}' does not exist. GET /v1/models lists them.", "model_not_found")
