#!/usr/bin/env bash
# Chat sockets under load (bench/ws_load.py) on a 2-core machine: the fake upstream and the sockets on core 0,
# AI Hub (one `manage.py serve` process, production settings, PostgreSQL + Redis) alone on core 1 (bench/lib.sh).
#
#   bench/run_ws_load.sh [runs...]      e.g. bench/run_ws_load.sh 100 1000 seq30
#
# A run is N (N sockets at once, one message each), seqN (N sockets one after another: the time to first token
# the chat page adds, beside the upstream's own) or termN (N at once, the server sent SIGTERM TERM_AFTER (2) s into
# the replies: what it does with streams in flight; the last run, as it ends the server). Each prints one JSON
# line (the sockets' figures, then the database's count of the replies saved and metered). The fake upstream
# streams CHUNKS (50) chunks CHUNK_DELAY_MS (20) apart. BENCH_PROFILE=/tmp/ws.txt also records a py-spy profile
# of the server (collapsed stacks of the thread holding the GIL).
#
# Environment as bench/lib.sh (BENCH_DIR, BENCH_PYTHON: its venv needs aiohttp, as the harness's has), and
# PG_ADMIN_URL (the local PostgreSQL), UPSTREAM_PORT (18190), GATEWAY_PORT (8131), BENCH_DB (aihub_ws_bench),
# BENCH_REDIS_URL (redis://127.0.0.1:6379/8): the database is dropped and the Redis database flushed at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNS=${*:-100}
UPSTREAM_PORT=${UPSTREAM_PORT:-18190}
GATEWAY_PORT=${GATEWAY_PORT:-8131}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://aihub:aihub@127.0.0.1:5432/postgres}
BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/8}
UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
SESSIONS=$BENCH_WORK/sessions.json

use_postgres "${BENCH_DB:-aihub_ws_bench}"
aihub_env "$UPSTREAM_PORT"
ulimit -n "$(ulimit -Hn)"  # a socket each, on both sides
start_upstream "$UPSTREAM_PORT"
curl -s -o /dev/null --max-time 5 "$UPSTREAM/_fake/config" \
    -d "{\"chunks\": ${CHUNKS:-50}, \"chunk_delay_ms\": ${CHUNK_DELAY_MS:-20}}"
manage migrate --noinput >/dev/null
manage seed >/dev/null
MAX_N=0
for run in $RUNS; do n=${run#seq}; n=${n#term}; [ "$n" -gt "$MAX_N" ] && MAX_N=$n; done
# One user per 10 sockets: the plan's parallel-streams limit is checked for each, never reached.
(cd "$BENCH_ROOT" && timeout 300 .venv/bin/python bench/ws_load.py setup --users $(((MAX_N + 9) / 10)) --out "$SESSIONS")
start_aihub "$GATEWAY_PORT"
if [ -n "${BENCH_PROFILE:-}" ]; then
    # --gil: only the samples of the thread holding the GIL, the nearest to where the process's CPU goes
    taskset -c 0 "$(dirname "$BENCH_PYTHON")/py-spy" record --pid "$GW_PID" --rate 250 --nonblocking --gil \
        --format raw --output "$BENCH_PROFILE" >"$BENCH_WORK/py-spy.log" 2>&1 &
    PROFILER_PID=$!
    BENCH_PIDS="$PROFILER_PID $BENCH_PIDS"
fi

load() {  # ws_load.py run ...
    (cd "$BENCH_ROOT" && taskset -c 0 timeout 1800 "$BENCH_PYTHON" -B bench/ws_load.py run --sessions "$SESSIONS" \
        --port "$GATEWAY_PORT" --upstream "$UPSTREAM" "$@")
}
load --n 1 --sequential >/dev/null  # a warm-up reply (imports, templates, pools), not counted
for run in $RUNS; do
    n=${run#seq} extra=()
    [ "$run" != "$n" ] && extra=(--sequential --upstream-ttft "$n")
    if [ "${run#term}" != "$run" ]; then
        n=${run#term} extra=(--sigterm-after "${TERM_AFTER:-2}")
    fi
    out=$(load --n "$n" --pid "$GW_PID" "${extra[@]}")
    if [ "${run#term}" != "$run" ]; then
        stopped_at=$(date +%s.%N)
        wait "$GW_PID" || true
        echo "{\"server_exited_after_sigterm_s\": $(echo "$(date +%s.%N) - $stopped_at" | bc)}"
        BENCH_PIDS=$(echo " $BENCH_PIDS " | sed "s/ $GW_PID / /; s/^ *//; s/ *$//")
    fi
    since=$(echo "$out" | "$BENCH_PYTHON" -c "import json, sys; print(json.load(sys.stdin)['since'])")
    saved=$(cd "$BENCH_ROOT" && timeout 300 .venv/bin/python bench/ws_load.py check --sessions "$SESSIONS" \
        --n "$n" --since "$since" || true)
    echo "{\"run\": \"$run\", \"commit\": \"$(aihub_commit)\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"," \
        "\"sockets\": $out, \"database\": ${saved:-null}}"
done
if [ -n "${PROFILER_PID:-}" ] && kill -0 "$PROFILER_PID" 2>/dev/null; then stop_profiler; fi
show_gateway_log
