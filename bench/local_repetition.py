"""The local model's repetition check (chat/tests/test_local_repetition.py) under several sampling settings.

    ../.venv/bin/python bench/local_repetition.py [max_tokens]

For each setting: how many of the ten prompts got a reply repeating one sentence three times or more,
and the replies' average length. The first setting is llama-cpp's before this check (temperature 0.7,
top_p 0.95, no repetition penalty); the others, lower temperature and rising repetition penalties.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from chat.gateway.providers import local  # noqa: E402
from chat.tests.test_local_repetition import MAX_TOKENS, PROMPTS, SEED, repeated_sentences, reply_to  # noqa: E402

SETTINGS = [
    {"temperature": 0.7, "top_p": 0.95, "top_k": 40, "repeat_penalty": 1.0},  # before
    {"temperature": 0.3, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.1},
    {"temperature": 0.3, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.3},
]


async def main(max_tokens: int) -> None:
    provider = local.LocalProvider()
    for sampling in SETTINGS[int(os.environ.get("FROM_SETTING", 0)) :]:
        local.SAMPLING_DEFAULTS = sampling
        looping, lengths = [], []
        for prompt in PROMPTS:
            text = await reply_to(provider, prompt, {"max_tokens": max_tokens, "seed": SEED})
            lengths.append(len(text.split()))
            if repeated_sentences(text):
                looping.append(prompt)
        print(f"{sampling}: {len(looping)}/10 loop, {sum(lengths) / len(lengths):.0f} words on average {looping}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else MAX_TOKENS))
