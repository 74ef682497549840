"""The table of bench/run_scale_out.sh: gateway CPU-ms per request with one and with two AI Hub processes
behind nginx (the ratio: flat is 1.0), nginx's own CPU-ms per request, throughput and added p50.

    python bench/scale_out_table.py ONE.json TWO.json

Exits 1 when a run had a failed request or the upstream saw other than the requests sent (gateway_table's
checks): the figures would not be comparable. Standard library only (it runs in the harness's venv).
"""

from __future__ import annotations

import json
import sys

from gateway_table import NAMES, added_p50, cpu, fmt, problems


def main(one_path: str, two_path: str) -> int:
    one, two = (json.load(open(path)) for path in (one_path, two_path))
    print(f"plan {one['meta'].get('plan', '?')}; commits {one['meta'].get('commit')}, {two['meta'].get('commit')}\n")
    print(
        "| scenario | 1 process CPU-ms/req | 2 processes CPU-ms/req | 2 / 1 | nginx CPU-ms/req (1, 2) "
        "| req/s (1, 2) | added p50 ms (1, 2) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for sid, name in NAMES.items():
        if sid not in one["scenarios"] or sid not in two["scenarios"]:
            continue
        runs = (one["scenarios"][sid], two["scenarios"][sid])
        gateway = [cpu(run, "gateway") for run in runs]
        nginx = ", ".join(fmt(cpu(run, "nginx")) for run in runs)
        rps = ", ".join(fmt(run["gateway"]["throughput_rps"], 1) for run in runs)
        added = ", ".join(fmt(added_p50(run), 1) for run in runs)
        flat = gateway[1] / gateway[0] if gateway[0] and gateway[1] else None
        print(f"| {name} | {fmt(gateway[0])} | {fmt(gateway[1])} | {fmt(flat)} | {nginx} | {rps} | {added} |")
    found = problems("1 process", one) + problems("2 processes", two)
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
