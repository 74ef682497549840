#!/usr/bin/env bash
# Paced requests (bench/paced.py): non-streamed completions one at a time, 30 ms apart, through one AI Hub
# process (core 1) and straight to the fake upstream, the caller on core 0: the latency a request waits for
# when the server is not already busy with the one before (scenario a sends the next at once).
#
#   bench/run_paced.sh [rounds]          two rounds by default
#
# BENCH_PLAN: every-limit (default) or enterprise; BENCH_SERVICES=private as in bench/run_aihub.sh.
# Environment: see bench/lib.sh, and UPSTREAM_PORT (18090), GATEWAY_PORT (8031), PG_ADMIN_URL, BENCH_DB, BENCH_REDIS_URL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${1:-2}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
GATEWAY_PORT=${GATEWAY_PORT:-8031}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://aihub:aihub@127.0.0.1:5432/postgres}
BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/7}
BENCH_DB=${BENCH_DB:-aihub_bench}
BENCH_PLAN=${BENCH_PLAN:-every-limit}

aihub_env "$UPSTREAM_PORT"
if [ "${BENCH_SERVICES:-}" = private ]; then
    start_private_postgres "${PG_PORT:-15432}"
    start_private_redis "${REDIS_PORT:-16379}"
fi
use_postgres "$BENCH_DB"
port_free "$GATEWAY_PORT"
start_upstream "$UPSTREAM_PORT"
aihub_prepare
start_aihub "$GATEWAY_PORT"
case "$BENCH_PLAN" in
    enterprise) key=$KEY_ENTERPRISE ;;
    every-limit) key=$KEY_LIMITED ;;
    *) echo "BENCH_PLAN: enterprise or every-limit" >&2; exit 2 ;;
esac
echo "AI Hub $(aihub_commit), plan $BENCH_PLAN"
for _ in $(seq "$ROUNDS"); do
    timeout 120 taskset -c 0 "$BENCH_ROOT/.venv/bin/python" -B "$BENCH_ROOT/bench/paced.py" \
        "http://127.0.0.1:$GATEWAY_PORT/v1" "http://127.0.0.1:$UPSTREAM_PORT/v1" "$key"
done
show_gateway_log
