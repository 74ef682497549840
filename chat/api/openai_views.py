"""The OpenAI-compatible API under /v1: chat completions (streamed or not) and the model list."""

from __future__ import annotations

import base64
import functools
import json
import logging
import struct
import time
import uuid
from typing import Any

from django.http import JsonResponse

from chat.gateway.embeddings import EmbeddingJob
from chat.gateway.generation import Generation
from chat.gateway.providers.base import SAMPLING_PARAMS, ToolCallDelta
from chat.gateway.router import candidates_for, provider_class, unsupported_param

from .auth import allowed_model, authenticate_request
from .decorators import api_view
from .errors import ApiError, failure_error
from .model_list import model_list
from .streaming import GenerationStream, complete, open_generation_stream, sse_event, sse_response
from .validation import (
    ChatRequest,
    EmbeddingRequest,
    image_part_paths,
    parse_chat_request,
    parse_embedding_request,
    read_json_body,
)

logger = logging.getLogger(__name__)


def _usage(generation: Generation) -> dict:
    prompt_tokens, completion_tokens = generation.tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _finish_reason(generation: Generation) -> str:
    end = generation.trail.end
    return (end.finish_reason if end else None) or "stop"


def _served_slug(generation: Generation, requested: str) -> str:
    return generation.trail.model.slug if generation.trail.model else requested


class CompletionChunks:
    """The SSE body of a streamed completion, starting from the first delta already received."""

    def __init__(self, stream: GenerationStream, first_delta: str | ToolCallDelta, chat: ChatRequest):
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

    def delta_chunk(self, delta: str | ToolCallDelta) -> bytes:
        if isinstance(delta, ToolCallDelta):
            return self.chunk({"tool_calls": [delta.as_openai()]})
        return self.text_chunk(delta)

    def first_chunk(self) -> bytes:
        if isinstance(self.first_delta, ToolCallDelta):
            return self.chunk({"role": "assistant", "content": None, "tool_calls": [self.first_delta.as_openai()]})
        return self.chunk({"role": "assistant", "content": self.first_delta})

    async def __aiter__(self):
        try:
            yield self.first_chunk()
            try:
                async for delta in self.stream.deltas():
                    yield self.delta_chunk(delta)
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
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if generation.tool_calls:
        message = {"role": "assistant", "content": text or None, "tool_calls": generation.tool_calls.as_openai()}
    return JsonResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": _served_slug(generation, chat.model),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _finish_reason(generation),
                }
            ],
            "usage": _usage(generation),
        }
    )


def requested_model(caller, chat: ChatRequest, models):
    """The model asked for, if the caller may use it and it takes the request's parameters: a 400 names
    the first it cannot take (for 'auto': that no free model takes). Sync: in the admission's thread hop."""
    model = allowed_model(caller, chat.model, models)
    if model is not None:
        refused = unsupported_param(model, chat.params)
    elif not SAMPLING_PARAMS.issuperset(chat.params) and not candidates_for(None, models, chat.params):
        free = candidates_for(None, models)
        refused = unsupported_param(free[0], chat.params) if free else None
    else:
        refused = None
    if refused is not None:
        raise ApiError(
            400,
            f"'{refused}' is not supported by the model '{chat.model}'. GET /v1/models lists the models; "
            "chat/api/README.md says which parameters each provider takes.",
            "unsupported_parameter",
            param=refused,
        )
    _refuse_images_for_text_only(model, chat, models)
    return model


def _refuse_images_for_text_only(model, chat: ChatRequest, models) -> None:
    """A request with image parts needs a model that takes images ('auto': a free one that does)."""
    images = image_part_paths(chat.messages)
    if not images:
        return
    takes_images = (
        model.supports_images if model is not None else any(m.supports_images for m in candidates_for(None, models))
    )
    if not takes_images:
        raise ApiError(
            400,
            f"{images[0]} is an image, and the model '{chat.model}' takes text only. Send text only, or pick a "
            "model that takes images.",
            "model_not_multimodal",
            param=images[0],
        )


@api_view("POST")
async def chat_completions(request):
    """POST /v1/chat/completions"""
    caller = await authenticate_request(request)
    chat = parse_chat_request(read_json_body(request))
    # The model is looked up in the admission's thread hop (an unknown or forbidden one is still a 404 / 403).
    generation = Generation(
        user=caller.user,
        resolve_model=functools.partial(requested_model, caller, chat),
        messages=chat.messages,
        params=chat.params,
        api_key=caller.api_key,
        # The caller has its answer before its usage row is written (a stream's row follows its [DONE] anyway).
        settle_after_response=not chat.stream,
    )
    if chat.stream:
        return await _stream_response(generation, chat)
    return await _complete_response(generation, chat)


def _embedding_json(vector: list[float], encoding_format: str):
    """A vector as OpenAI sends it: floats, or base64 of little-endian float32 (the openai SDKs ask for it)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embedding_model(caller, asked: EmbeddingRequest, models):
    """The embedding model asked for, if the caller may use it and its provider takes the request's
    parameters (a 400 names the first it cannot). Sync: in the admission's thread hop."""
    model = allowed_model(caller, asked.model, models, kind="embedding")
    for name in asked.params:
        if name not in provider_class(model.provider).embedding_params:
            raise ApiError(
                400, f"'{name}' is not supported by the model '{asked.model}'.", "unsupported_parameter", param=name
            )
    return model


@api_view("POST")
async def embeddings(request):
    """POST /v1/embeddings"""
    caller = await authenticate_request(request)
    asked: EmbeddingRequest = parse_embedding_request(read_json_body(request))
    job = EmbeddingJob(
        user=caller.user,
        api_key=caller.api_key,
        resolve_model=functools.partial(embedding_model, caller, asked),
        texts=asked.texts,
        params=asked.params,
    )
    try:
        vectors = await job.run()
    except Exception as exc:
        error = failure_error(exc)
        if error is None:
            raise
        raise error from None
    tokens = job.usage_record.prompt_tokens
    data = [
        {"object": "embedding", "index": index, "embedding": _embedding_json(vector, asked.encoding_format)}
        for index, vector in enumerate(vectors)
    ]
    return JsonResponse(
        {
            "object": "list",
            "data": data,
            "model": job.model.slug,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


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
