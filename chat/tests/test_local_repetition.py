"""The repetition check: the local model's sampling defaults keep it from looping.

Ten varied prompts, a fixed sampling seed, replies bounded by MAX_TOKENS: no reply may repeat one
sentence three times or more. bench/local_repetition.py runs the same check with other settings (the
README gives the figures before and after the defaults were chosen).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from chat.gateway.providers.base import StreamEnd
from chat.gateway.providers.local import MODEL_ID, LocalProvider

pytestmark = pytest.mark.slow

SEED = 1234
MAX_TOKENS = 200
PROMPTS = [
    "Write a short story about a lighthouse.",
    "Explain how a bicycle works.",
    "Give me three tips for learning to cook.",
    "What is the water cycle?",
    "Describe a busy market on a Saturday morning.",
    "Write a poem about the sea.",
    "How do I make a cup of tea?",
    "Tell me about the history of bread.",
    "Why do cats purr?",
    "Plan a one-day trip to the mountains.",
]


def sentences(text: str) -> list[str]:
    """Sentences (and lines) of a reply, normalised: lower case, words only. Short fragments (fewer
    than four words: list markers, "Yes.") are not sentences for this check."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    normalised = (" ".join(re.findall(r"[a-z0-9']+", part.lower())) for part in parts)
    return [s for s in normalised if len(s.split()) >= 4]


def repeated_sentences(text: str, times: int = 3) -> dict[str, int]:
    return {s: n for s, n in Counter(sentences(text)).items() if n >= times}


async def reply_to(provider: LocalProvider, prompt: str, params: dict) -> str:
    parts = []
    async for item in provider.stream([{"role": "user", "content": prompt}], MODEL_ID, params):
        if not isinstance(item, StreamEnd):
            parts.append(item)
    return "".join(parts)


def test_the_check_finds_a_sentence_repeated_three_times():
    looping = "The crew set sail. " + "The crew had to decide which direction to choose. " * 3
    assert repeated_sentences(looping) == {"the crew had to decide which direction to choose": 3}
    assert repeated_sentences("The crew set sail. The crew set sail. Then it rained on them.") == {}


async def test_no_reply_repeats_a_sentence_three_times(settings):
    settings.LOCAL_MODEL_WORKERS = 1
    provider = LocalProvider()
    loops = {}
    for prompt in PROMPTS:
        text = await reply_to(provider, prompt, {"max_tokens": MAX_TOKENS, "seed": SEED})
        assert text.strip()
        if repeated := repeated_sentences(text):
            loops[prompt] = repeated
    assert not loops
