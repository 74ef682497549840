"""Paced non-streamed requests, one at a time with a pause between them (a caller that is not a load
generator): the latency p50/p90 the gateway adds over the upstream called directly, measured just before.

    python bench/paced.py GATEWAY_URL UPSTREAM_URL API_KEY [--requests 200] [--pause 0.03]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

MESSAGES = [{"role": "user", "content": "hello"}]


def latencies(base_url: str, key: str, model: str, requests: int, pause: float) -> list[float]:
    measured = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for n in range(requests + 20):  # the first 20 warm up
            started = time.perf_counter()
            response = client.post("/chat/completions", json={"model": model, "messages": MESSAGES})
            if response.status_code != 200:
                raise SystemExit(f"{base_url}: {response.status_code} {response.text[:200]}")
            if n >= 20:
                measured.append((time.perf_counter() - started) * 1000)
            time.sleep(pause)
    return sorted(measured)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gateway")
    parser.add_argument("upstream")
    parser.add_argument("key")
    parser.add_argument("--model", default="compat/fake-model")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.03)
    args = parser.parse_args()
    direct = latencies(args.upstream, "direct", "gpt-4o-mini", args.requests, args.pause)
    served = latencies(args.gateway, args.key, args.model, args.requests, args.pause)

    def p90(values: list[float]) -> float:
        return values[int(len(values) * 0.9)]

    direct_p50, served_p50 = statistics.median(direct), statistics.median(served)
    print(
        f"paced every {args.pause * 1000:.0f} ms, {args.requests} requests: direct p50 {direct_p50:.2f} ms,"
        f" gateway p50 {served_p50:.2f} ms, added p50 {served_p50 - direct_p50:.2f} ms,"
        f" added p90 {p90(served) - p90(direct):.2f} ms"
    )


if __name__ == "__main__":
    main()
