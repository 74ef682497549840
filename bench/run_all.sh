#!/usr/bin/env bash
# `make bench`: LiteLLM 1.106.2 and AI Hub measured in one session with the shared harness (scenarios a-e):
# LiteLLM's proxy (no database, no limits), then AI Hub with an Enterprise user (no limits), then AI Hub with a
# user whose plan sets every limit (monthly token quota, credit, RPM, TPM, parallel streams; never reached). The
# fake upstream, the load generator, PostgreSQL and Redis run on core 0, the gateway alone on core 1 (one
# process each). PostgreSQL and Redis are private to the run (a throwaway cluster and server), so the CPU they
# spend (--watch db=... --watch redis=...) is the benchmark's alone. Prints bench/gateway_table.py's table.
#
#   bench/run_all.sh [scenarios]       (the venvs: make bench installs them; see bench/lib.sh)
#
# Environment: UPSTREAM_PORT (18090), GATEWAY_PORT (8031, AI Hub and LiteLLM in turn), PG_PORT (15432),
# REDIS_PORT (16379), BENCH_PROFILE=<file>: a py-spy profile of AI Hub's every-limit run (raw, collapsed; it
# inflates that run's figures). Results: bench/results-{litellm,aihub-enterprise,aihub-every-limit}.json
# (git-ignored). Everything on 127.0.0.1, bounded, stopped at exit; exits non-zero on any failed request.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCENARIOS=${1:-a,b,c,d,e}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
GATEWAY_PORT=${GATEWAY_PORT:-8031}
OUT="$BENCH_ROOT/bench"
COMMIT=$(aihub_commit)
[ -x "$BENCH_VENVS/venv-litellm-$LITELLM_VERSION/bin/litellm" ] || { echo "LiteLLM's venv is missing: make bench" >&2; exit 1; }

port_free "$GATEWAY_PORT"
start_upstream "$UPSTREAM_PORT"
start_private_postgres "${PG_PORT:-15432}"
start_private_redis "${REDIS_PORT:-16379}"
use_postgres aihub_bench
aihub_env "$UPSTREAM_PORT"
aihub_prepare

echo "== LiteLLM $LITELLM_VERSION" >&2
start_litellm "$GATEWAY_PORT" "$UPSTREAM_PORT"
run_harness litellm "$GATEWAY_PORT" "$LITELLM_KEY" bench-model "$UPSTREAM_PORT" "$SCENARIOS" "$OUT/results-litellm.json" \
    --meta "gateway_version=$LITELLM_VERSION"
bench_stop "$GW_PID"

echo "== AI Hub $COMMIT, Enterprise" >&2
start_aihub "$GATEWAY_PORT"
run_harness aihub-enterprise "$GATEWAY_PORT" "$KEY_ENTERPRISE" compat/fake-model "$UPSTREAM_PORT" "$SCENARIOS" \
    "$OUT/results-aihub-enterprise.json" "${BENCH_WATCH[@]}" --meta "gateway_version=$COMMIT" --meta plan=enterprise
bench_stop "$GW_PID"

echo "== AI Hub $COMMIT, every limit on" >&2
start_aihub "$GATEWAY_PORT"
if [ -n "${BENCH_PROFILE:-}" ]; then start_profiler "$BENCH_PROFILE"; fi
run_harness aihub-every-limit "$GATEWAY_PORT" "$KEY_LIMITED" compat/fake-model "$UPSTREAM_PORT" "$SCENARIOS" \
    "$OUT/results-aihub-every-limit.json" "${BENCH_WATCH[@]}" --meta "gateway_version=$COMMIT" --meta plan=every-limit
if [ -n "${BENCH_PROFILE:-}" ]; then stop_profiler; fi
bench_stop "$GW_PID"
show_gateway_log

echo
echo "AI Hub $COMMIT against LiteLLM $LITELLM_VERSION, gateway and whole CPU-ms per request:"
"$BENCH_PYTHON" -B "$BENCH_ROOT/bench/gateway_table.py" "$OUT/results-litellm.json" \
    "$OUT/results-aihub-enterprise.json" "$OUT/results-aihub-every-limit.json"
