#!/usr/bin/env bash
# Gateway load benchmark of AI Hub with the shared harness (scenarios a-e), on a 2-core machine:
# the fake upstream and the load generator on core 0, AI Hub (one `manage.py serve` process) alone on core 1.
#
#   bench/run_aihub.sh [postgres|sqlite] [scenarios]      e.g. bench/run_aihub.sh postgres a,b,c,d,e
#
# postgres: a throwaway database (BENCH_DB, default `aihub_bench`) on the local PostgreSQL plus Redis database 7 (the
# production shape); with BENCH_SERVICES=private, a throwaway PostgreSQL cluster and Redis server of their own instead
# (on core 0, ports PG_PORT and REDIS_PORT), whose CPU is measured beside the gateway's; sqlite: a throwaway file in
# /tmp and in-process caches. BENCH_PLAN: enterprise (default: no limits) or every-limit (quota, credit, RPM, TPM and
# parallel streams all set, never reached). BENCH_PROFILE=<file>: a py-spy profile of the gateway (raw, collapsed).
# Everything listens on 127.0.0.1, every step is bounded, and whatever the script started is stopped when it exits.
# Writes bench/results-aihub-<db>.json (git-ignored) and prints it next to LiteLLM 1.106.2's reference run.
#
# Environment: see bench/lib.sh (BENCH_DIR, BENCH_VENVS, BENCH_PYTHON), and UPSTREAM_PORT (18090), GATEWAY_PORT (8031),
# PG_ADMIN_URL (postgres://aihub:aihub@127.0.0.1:5432/postgres), BENCH_DB (aihub_bench),
# BENCH_REDIS_URL (redis://127.0.0.1:6379/7), PG_PORT (15432), REDIS_PORT (16379).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DB_KIND=${1:-postgres}
SCENARIOS=${2:-a,b,c,d,e}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
GATEWAY_PORT=${GATEWAY_PORT:-8031}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://aihub:aihub@127.0.0.1:5432/postgres}
BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/7}
BENCH_DB=${BENCH_DB:-aihub_bench}  # another name lets two benchmarks run side by side
BENCH_PLAN=${BENCH_PLAN:-enterprise}
OUT="$BENCH_ROOT/bench/results-aihub-$DB_KIND.json"

aihub_env "$UPSTREAM_PORT"
case "$DB_KIND" in
    postgres)
        if [ "${BENCH_SERVICES:-}" = private ]; then
            start_private_postgres "${PG_PORT:-15432}"
            start_private_redis "${REDIS_PORT:-16379}"
        fi
        use_postgres "$BENCH_DB"
        ;;
    sqlite) export DATABASE_URL="sqlite:///$BENCH_WORK/aihub.sqlite3" REDIS_URL="" ;;
    *) echo "usage: $0 [postgres|sqlite] [scenarios]" >&2; exit 2 ;;
esac
case "$BENCH_PLAN" in
    enterprise) KEY() { echo "$KEY_ENTERPRISE"; } ;;
    every-limit) KEY() { echo "$KEY_LIMITED"; } ;;
    *) echo "BENCH_PLAN: enterprise or every-limit" >&2; exit 2 ;;
esac

port_free "$GATEWAY_PORT"
start_upstream "$UPSTREAM_PORT"
aihub_prepare
start_aihub "$GATEWAY_PORT"
if [ -n "${BENCH_PROFILE:-}" ]; then start_profiler "$BENCH_PROFILE"; fi
run_harness "aihub-$DB_KIND" "$GATEWAY_PORT" "$(KEY)" compat/fake-model "$UPSTREAM_PORT" "$SCENARIOS" "$OUT" \
    "${BENCH_WATCH[@]}" --meta "database=$DB_KIND" --meta "plan=$BENCH_PLAN" --meta "commit=$(aihub_commit)"
if [ -n "${BENCH_PROFILE:-}" ]; then stop_profiler; fi
show_gateway_log
"$BENCH_PYTHON" -B "$BENCH_DIR/run_scenarios.py" --report "$BENCH_DIR/results/litellm-1.106.2.json" "$OUT"
