"""Memory and speed of the local model (SmolLM2-135M, llama-cpp-python) at several context sizes.

    ../.venv/bin/python bench/local_model.py [2048 4096 8192]          (FILL=512 tokens of prompt)
    ../.venv/bin/python bench/local_model.py --pool 4 [8192]             (memory of a pool of 4)

Each size runs in a process of its own (RSS is per process): load the model (llama.cpp allocates the
whole KV cache at load), evaluate a FILL-token prompt, then generate 32 tokens. Prints RSS after
loading and after generating, prompt evaluation and generation speed, in tokens per second of wall
time and of this process's CPU time (the fair figure on a busy machine), on one thread
(LOCAL_MODEL_THREADS' default). --pool N loads N instances in one process and prints the RSS after each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = "the keeper of the lighthouse wrote down every ship that passed the rocks at night".split()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(n_ctx: int) -> dict:
    from llama_cpp import Llama

    from chat.gateway.providers.local import model_path

    before = rss_mb()
    llama = Llama(model_path=str(model_path()), n_ctx=n_ctx, n_threads=1, verbose=False)
    loaded = rss_mb()
    fill = min(int(os.environ.get("FILL", 512)), int(n_ctx * 0.9))
    tokens = []
    while len(tokens) < fill:
        tokens += llama.tokenize((" ".join(WORDS) + ". ").encode(), add_bos=False)
    tokens = tokens[:fill]
    started, started_cpu = time.monotonic(), time.process_time()
    llama.eval(tokens)
    prompt_seconds, prompt_cpu = time.monotonic() - started, time.process_time() - started_cpu
    started, started_cpu = time.monotonic(), time.process_time()
    generated = 0
    for _ in llama.generate([], reset=False, temp=0):  # goes on from the evaluated prompt
        generated += 1
        if generated == 32:
            break
    gen_seconds, gen_cpu = time.monotonic() - started, time.process_time() - started_cpu
    full = rss_mb()
    llama.close()
    return {
        "n_ctx": n_ctx,
        "rss_before_mb": round(before),
        "rss_loaded_mb": round(loaded),
        "rss_after_mb": round(full),
        "prompt_tokens": len(tokens),
        "prompt_tokens_per_s": round(len(tokens) / prompt_seconds),
        "prompt_tokens_per_cpu_s": round(len(tokens) / prompt_cpu),
        "generate_tokens_per_s": round(generated / gen_seconds, 1),
        "generate_tokens_per_cpu_s": round(generated / gen_cpu, 1),
    }


def pool(size: int, n_ctx: int) -> None:
    from llama_cpp import Llama

    from chat.gateway.providers.local import model_path

    print(f"before: {rss_mb():.0f} MB")
    instances = []
    for n in range(size):
        instances.append(Llama(model_path=str(model_path()), n_ctx=n_ctx, n_threads=1, verbose=False))
        instances[-1].eval(instances[-1].tokenize(b"Hello there, how are you today?"))
        print(f"{n + 1} instance(s) of n_ctx {n_ctx}: {rss_mb():.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--pool":
        pool(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 8192)
    elif len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        for size in sys.argv[1:] or ["2048", "4096", "8192"]:
            out = subprocess.run([sys.executable, __file__, "--one", size], capture_output=True, text=True, check=True)
            print(out.stdout.strip().splitlines()[-1])
