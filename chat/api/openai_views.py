"""The OpenAI-compatible API under /v1: chat completions (streamed or not) and the model list."""

from __future__ import annotations

import json
import time
import uuid

from django.http import JsonResponse, StreamingHttpResponse

from chat.conversations import UnknownModel, resolve_model
from chat.generation import Generation

from .auth import Caller, authenticate_request
from .decorators import api_view
from .catalogue import model_list
from .errors import ApiError, failure_error
from .streaming import GenerationStream
from .validation import ChatRequest, parse_chat_request, read_json_body


async def resolve_allowed_model(caller: Caller, slug: str):
    """The catalogue model (None for 'auto'): 404 when unknown, 403 when the key may not use it."""
    try:
        model = await resolve_model(slug)
    except UnknownModel:
        raise ApiError(404, f"The model '{slug}' does not exist. GET /v1/models lists them.", "model_not_found",
                       param="model") from None
    if not caller.may_use(model):
        raise ApiError(403, f"This API key is not allowed to use the model '{slug}'.", "model_not_allowed",
                       param="model")
    return model


def _sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _usage(generation: Generation) -> dict:
    record = generation.usage_record
    return {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
            "total_tokens": record.total_tokens}


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

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> bytes:
        payload = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}
        if self.chat.include_usage:
            payload.setdefault("usage", None)
        return _sse(payload)

    async def __aiter__(self):
        try:
            yield self.chunk({"role": "assistant", "content": self.first_delta})
            try:
                async for delta in self.stream.deltas():
                    yield self.chunk({"content": delta})
            except Exception as exc:  # after the first byte nothing is retried: the client is told
                error = failure_error(exc) or ApiError(502, "The stream failed.", "upstream_error")
                yield self.chunk({}, "error", error=error.body["error"])
                yield _sse("[DONE]")
                return
            generation = self.stream.generation
            yield self.chunk({}, _finish_reason(generation))
            if self.chat.include_usage:
                yield _sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.model, "choices": [], "usage": _usage(generation)})
            yield _sse("[DONE]")
        finally:  # also on client disconnect (cancellation): the upstream is closed, the usage settled
            await self.stream.close()


async def _stream_response(generation: Generation, chat: ChatRequest):
    stream = GenerationStream(generation)
    try:
        # The status is only known once the first delta arrives: failures before it (after the
        # fallback chain) are answered as plain errors with their status.
        first = await stream.next_delta()
    except BaseException as exc:
        await stream.close()
        error = failure_error(exc) if isinstance(exc, Exception) else None
        if error is None:
            raise
        raise error from None
    if first is None:
        first = ""
    response = StreamingHttpResponse(CompletionChunks(stream, first, chat), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _complete_response(generation: Generation, chat: ChatRequest) -> JsonResponse:
    try:
        text = await generation.complete()
    except Exception as exc:
        error = failure_error(exc)
        if error is None:
            raise
        raise error from None
    return JsonResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _served_slug(generation, chat.model),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": _finish_reason(generation)}],
        "usage": _usage(generation),
    })


@api_view("POST")
async def chat_completions(request):
    """POST /v1/chat/completions"""
    caller = await authenticate_request(request)
    chat = parse_chat_request(read_json_body(request))
    model = await resolve_allowed_model(caller, chat.model)
    generation = Generation(user=caller.user, model=model, messages=chat.messages, params=chat.params,
                            api_key=caller.api_key)
    if chat.stream:
        return await _stream_response(generation, chat)
    return await _complete_response(generation, chat)


@api_view("GET")
async def models(request):
    """GET /v1/models"""
    caller = await authenticate_request(request)
    return JsonResponse(await model_list(caller))
