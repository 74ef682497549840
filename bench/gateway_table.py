"""The table of `make bench`: LiteLLM, AI Hub on Enterprise and AI Hub with every limit on, from the shared
harness's result files of one session, with the ratios to LiteLLM and issue 17's targets met or missed.

    python bench/gateway_table.py LITELLM.json ENTERPRISE.json EVERY_LIMIT.json

Gateway CPU-ms/req is the gateway process's; the whole cost adds the CPU of the processes watched beside it
(`--watch db=... --watch redis=...`: PostgreSQL's and Redis's, private to the benchmark). Added p50: latency
for a and b, time to first token for c-e, over the direct-to-upstream baseline run just before.
Exits 1 when a run had a failed request or the upstream saw other than the requests sent: the figures
would not be comparable. Standard library only (it runs in the harness's venv).
"""

from __future__ import annotations

import json
import sys

NAMES = {
    "a": "a non-stream C=1",
    "b": "b non-stream C=32",
    "c": "c stream 50x20ms C=1",
    "d": "d stream 50x20ms C=64",
    "e": "e stream 200x0ms C=16",
}
# Issue 17: gateway CPU with every limit on at most this share of LiteLLM's; the whole cost (gateway +
# PostgreSQL + Redis) of a and b at most 0.8x; a's added p50 at most 2 ms.
GATEWAY_TARGET = {"a": 0.5, "b": 0.5, "c": 0.33, "d": 0.33, "e": 0.33}
WHOLE_TARGET = {"a": 0.8, "b": 0.8}
ADDED_P50_TARGET_MS = {"a": 2.0}


def cpu(run: dict, label: str) -> float | None:
    return (run["gateway"]["cpu"].get(label) or {}).get("cpu_ms_per_req")


def whole(run: dict) -> float:
    """The gateway's CPU-ms/req plus every watched group's but the upstream's and the load generator's."""
    groups = run["gateway"]["cpu"]
    return sum(g["cpu_ms_per_req"] or 0 for label, g in groups.items() if label not in ("upstream", "loadgen_self"))


def added_p50(run: dict) -> float | None:
    c = run["comparison"]
    return c[f"{c['primary_latency_metric']}_p50_added"]


def problems(label: str, doc: dict) -> list[str]:
    found = []
    for sid, run in doc["scenarios"].items():
        for side in ("baseline", "gateway"):
            r = run[side]
            if r is None:
                continue
            if r["failed"] or r["not_started"]:
                found.append(
                    f"{label} {sid} {side}: {r['failed']} failed, {r['not_started']} not started {r['errors']}"
                )
            if r["upstream_completions_delta"] != r["upstream_completions_expected"]:
                found.append(
                    f"{label} {sid} {side}: the upstream saw {r['upstream_completions_delta']} completions "
                    f"for {r['upstream_completions_expected']} requests"
                )
    return found


def fmt(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def ratio(v: float | None, of: float | None) -> float | None:
    return None if v is None or not of else v / of


def main(paths: list[str]) -> int:
    if len(paths) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    litellm, enterprise, limited = docs = [json.load(open(p)) for p in paths]
    sids = [s for s in NAMES if all(s in d["scenarios"] for d in docs)]
    print(
        "| scenario | LiteLLM gw CPU-ms/req | AI Hub Enterprise gw (x LiteLLM) | AI Hub every limit gw (x LiteLLM) "
        "| Enterprise gw+db+redis (x) | every limit gw+db+redis (x) | of which db / redis (every limit) "
        "| added p50 ms LiteLLM / Enterprise / every limit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    for sid in sids:
        lite, ent, lim = (d["scenarios"][sid] for d in docs)
        base = cpu(lite, "gateway")
        cells = [NAMES[sid], fmt(base)]
        for run in (ent, lim):
            gw = cpu(run, "gateway")
            cells.append(f"{fmt(gw)} ({fmt(ratio(gw, base))}x)")
        for run in (ent, lim):
            cells.append(f"{fmt(whole(run))} ({fmt(ratio(whole(run), base))}x)")
        cells.append(f"{fmt(cpu(lim, 'db'))} / {fmt(cpu(lim, 'redis'))}")
        cells.append(" / ".join(fmt(added_p50(r), 1) for r in (lite, ent, lim)))
        print("| " + " | ".join(cells) + " |")

        gw_ratio = ratio(cpu(lim, "gateway"), base)
        verdicts.append(target(f"{sid} gateway CPU, every limit on", gw_ratio, GATEWAY_TARGET[sid], "x LiteLLM"))
        if sid in WHOLE_TARGET:
            whole_ratio = ratio(whole(lim), base)
            verdicts.append(target(f"{sid} gateway+db+redis CPU, every limit on", whole_ratio, WHOLE_TARGET[sid], "x"))
        if sid in ADDED_P50_TARGET_MS:
            verdicts.append(target(f"{sid} added p50, every limit on", added_p50(lim), ADDED_P50_TARGET_MS[sid], "ms"))
    print("\nTargets (issue 17):")
    for line in verdicts:
        print(f"- {line}")
    print("\nLoad average (1, 5, 15 min) at start and end of each run:")
    for label, d in zip(("LiteLLM", "Enterprise", "every limit"), docs, strict=True):
        m = d["meta"]["machine"]
        print(f"- {label}: {' '.join(m.get('loadavg_at_start', []))} -> {' '.join(m.get('loadavg_at_end', []))}")
    found = [
        p for label, d in zip(("LiteLLM", "Enterprise", "every limit"), docs, strict=True) for p in problems(label, d)
    ]
    for p in found:
        print(f"!! {p}", file=sys.stderr)
    return 1 if found else 0


def target(what: str, value: float | None, limit: float, unit: str) -> str:
    if value is None:
        return f"{what}: not measured"
    verdict = "met" if value <= limit else "missed"
    return f"{what}: {value:.2f} {unit} against {limit:g}: {verdict}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
