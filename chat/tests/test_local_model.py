"""The real SmolLM2-135M model on this machine's CPU, through the local provider and a Generation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from billing.models import Plan, UsageRecord
from billing.subscriptions import start_subscription
from chat.gateway.generation import Generation
from chat.gateway.providers.base import StreamEnd
from chat.gateway.providers.local import MODEL_ID, LocalProvider
from chat.gateway.router import get_provider
from chat.models import AIModel, Provider

pytestmark = pytest.mark.slow

STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
SHORT = {"max_tokens": 24, "temperature": 0}


@pytest.fixture
def local(settings):
    settings.LOCAL_MODEL_ENABLED = True
    return get_provider(Provider.LOCAL)


async def generate(provider, params: dict = SHORT, timings: list[float] | None = None):
    deltas, ends = [], []
    async for item in provider.stream(STORY, MODEL_ID, params):
        if isinstance(item, StreamEnd):
            ends.append(item)
        else:
            deltas.append(item)
            if timings is not None:
                timings.append(time.monotonic())
    return deltas, ends


async def test_it_streams_real_text_with_usage(local):
    deltas, ends = await generate(local)

    assert len(deltas) >= 5
    assert "".join(deltas).strip()
    [end] = ends
    assert end.usage.prompt_tokens > len(STORY[0]["content"].split())
    assert 0 < end.usage.completion_tokens <= 24


async def test_it_stops_at_max_tokens_and_says_so(local):
    deltas, ends = await generate(local, {"max_tokens": 5, "temperature": 0})

    assert len(deltas) == 5
    assert ends[0].usage.completion_tokens == 5
    assert ends[0].finish_reason == "length"


async def test_it_counts_tokens_not_chunks(local):
    emoji = [{"role": "user", "content": "Reply with only emojis: 🎉🐉🍞🔥😀 repeat them many times."}]
    chunks, ends = [], []
    async for item in local.stream(emoji, MODEL_ID, {"max_tokens": 12, "temperature": 0}):
        (ends if isinstance(item, StreamEnd) else chunks).append(item)

    assert ends[0].finish_reason == "length"
    assert ends[0].usage.completion_tokens == 12 > len(chunks)


async def test_it_ignores_params_given_as_null(local):
    deltas, ends = await generate(local, {"max_tokens": 4, "temperature": None, "top_p": None, "stop": None})

    assert deltas
    assert ends[0].usage.completion_tokens == 4


async def test_the_event_loop_keeps_running_while_it_generates(local):
    await generate(local, {"max_tokens": 1})  # the model is loaded before timing
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker():
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - before)

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    deltas, _ = await generate(local)
    took = time.monotonic() - started
    done.set()
    await ticking

    assert len(deltas) >= 5
    assert len(gaps) >= 5
    # Were inference on the loop, one gap would span the whole generation.
    assert max(gaps) < took / 2, f"loop stalled {max(gaps):.3f}s during a {took:.3f}s generation"


async def test_cancelling_stops_generation_and_frees_the_model(settings):
    settings.LOCAL_MODEL_WORKERS = 1  # the short reply below needs the very instance the story held
    local = LocalProvider()
    await generate(local, {"max_tokens": 1})  # loaded before timing
    arrivals: list[float] = []
    three_deltas = asyncio.Event()

    async def long_story():
        # Asks for the whole context: left running, it would hold the model for ~2000 tokens.
        async for _ in local.stream(STORY, MODEL_ID, {"max_tokens": 4000, "temperature": 0}):
            arrivals.append(time.monotonic())
            if len(arrivals) == 3:
                three_deltas.set()

    task = asyncio.create_task(long_story())
    await asyncio.wait_for(three_deltas.wait(), 60)
    per_token = (arrivals[2] - arrivals[0]) / 2  # this machine's pace right now
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    # A short reply right after: its prompt and 4 tokens, not the ~2000 tokens left of the story.
    _, ends = await asyncio.wait_for(
        generate(local, {"max_tokens": 4, "temperature": 0}), timeout=max(2.0, 100 * per_token)
    )

    assert ends[0].usage.completion_tokens == 4


async def test_with_one_worker_concurrent_streams_take_turns(settings):
    settings.LOCAL_MODEL_WORKERS = 1
    local = LocalProvider()  # a pool of its own
    first_times: list[float] = []
    second_times: list[float] = []

    (first, first_ends), (second, second_ends) = await asyncio.gather(
        generate(local, {"max_tokens": 16, "temperature": 0}, first_times),
        generate(local, {"max_tokens": 16, "temperature": 0}, second_times),
    )

    assert first and second
    assert len(first_ends) == len(second_ends) == 1
    assert first == second  # same prompt, greedy: the same reply, not two interleaved halves
    earlier, later = sorted([first_times, second_times])
    assert earlier[-1] <= later[0], "one instance served both streams at once"


FOUR_CHATS = [
    "Write a long story about a dragon who learns to bake bread.",
    "Explain how tides work, step by step.",
    "List ten things to pack for a week of hiking in the rain.",
    "Describe the history of the printing press in detail.",
]


async def test_four_workers_stream_four_chats_at_once(settings):
    settings.LOCAL_MODEL_WORKERS = 4
    local = LocalProvider()
    await asyncio.gather(*(generate(local, {"max_tokens": 1}) for _ in range(4)))  # four instances loaded
    timings: list[list[float]] = [[], [], [], []]

    async def chat(prompt: str, times: list[float]) -> StreamEnd:
        ends = []
        async for item in local.stream([{"role": "user", "content": prompt}], MODEL_ID, {"max_tokens": 24}):
            if isinstance(item, StreamEnd):
                ends.append(item)
            else:
                times.append(time.monotonic())
        return ends[0]

    started = time.monotonic()
    ends = await asyncio.gather(*(chat(prompt, t) for prompt, t in zip(FOUR_CHATS, timings, strict=True)))

    assert all(end.usage.completion_tokens > 0 for end in ends)
    # All four were streaming together: every first token came before any stream's last one.
    assert max(t[0] for t in timings) < min(t[-1] for t in timings)
    first_token_ms = sorted(round((t[0] - started) * 1000) for t in timings)
    print(f"first tokens of 4 simultaneous chats, LOCAL_MODEL_WORKERS=4: {first_token_ms} ms")


@pytest.mark.django_db(transaction=True)
async def test_a_generation_on_the_local_model_is_metered_with_its_counts(local, user):
    await asyncio.to_thread(start_subscription, user, await Plan.objects.aget(slug="enterprise"))
    model = await AIModel.objects.acreate(
        slug="local/smollm2", provider=Provider.LOCAL, upstream_id=MODEL_ID, name="SmolLM2"
    )
    generation = Generation(user=user, model=model, messages=STORY, params={"max_tokens": 6, "temperature": 0})
    deltas: list[str] = []

    async def on_delta(delta: str) -> None:
        deltas.append(delta)

    await generation.stream(on_delta)

    record = await UsageRecord.objects.aget()
    assert (record.status, record.provider, record.completion_tokens) == ("complete", "local", 6)
    assert record.prompt_tokens > 0
    assert record.cost == 0
    assert "".join(deltas) == generation.text


def test_a_process_that_used_the_model_exits_without_a_finaliser_traceback(tmp_path):
    # Seen under pytest: llama_cpp's finaliser ran after interpreter shutdown had cleared its globals.
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from chat.gateway.router import get_provider\n"
        "async def test_generate():\n"
        "    local = get_provider('local')  # the process-wide instance, alive until exit\n"
        "    async for _ in local.stream([{'role': 'user', 'content': 'Hi'}], 'x', {'max_tokens': 3}):\n"
        "        pass\n"
    )
    env = {**os.environ, "DATABASE_URL": "sqlite:///:memory:", "LOCAL_MODEL_ENABLED": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(settings.BASE_DIR),
            "-c",
            str(settings.BASE_DIR / "pytest.ini"),
            str(probe),
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Exception ignored" not in result.stdout + result.stderr
