#!/usr/bin/env bash
# Chat sockets under load (bench/ws_load.py) on a 2-core machine: the fake upstream and the sockets on core 0,
# AI Hub (one daphne process, production settings, PostgreSQL + Redis) alone on core 1.
#
#   bench/run_ws_load.sh [runs...]      e.g. bench/run_ws_load.sh 100 1000 seq30
#
# A run is N (N sockets at once, one message each), seqN (N sockets one after another: the time to first token
# the chat page adds, beside the upstream's own) or termN (N at once, the server sent SIGTERM TERM_AFTER (2) s into
# the replies: what it does with streams in flight; the last run, as it ends the server). Each prints one JSON line (the sockets' figures, then the
# database's count of the replies saved and metered). The fake upstream streams CHUNKS (50) chunks CHUNK_DELAY_MS
# (20) apart. BENCH_PROFILE=/tmp/ws.txt also records a py-spy profile of the server (collapsed stacks).
#
# Environment as bench/run_aihub.sh: BENCH_DIR, BENCH_PYTHON, PG_ADMIN_URL; UPSTREAM_PORT (18190), GATEWAY_PORT
# (8131), BENCH_DB (aihub_ws_bench), BENCH_REDIS_URL (redis://127.0.0.1:6379/8). Everything listens on 127.0.0.1,
# every step is bounded, and whatever the script started is stopped (and its database dropped) when it exits.
set -euo pipefail

RUNS=${*:-100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/../shared/bench}
BENCH_PYTHON=${BENCH_PYTHON:-$ROOT/../.venv-bench/bin/python}
UPSTREAM_PORT=${UPSTREAM_PORT:-18190}
GATEWAY_PORT=${GATEWAY_PORT:-8131}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://aihub:aihub@127.0.0.1:5432/postgres}
BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/8}
BENCH_DB=${BENCH_DB:-aihub_ws_bench}
CHUNKS=${CHUNKS:-50}
CHUNK_DELAY_MS=${CHUNK_DELAY_MS:-20}
WORK=$(mktemp -d /tmp/aihub-ws-load.XXXXXX)

UP_PID="" GW_PID="" PROFILER_PID=""
cleanup() {
    set +e
    for pid in $PROFILER_PID $GW_PID $UP_PID; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1
    "$ROOT/.venv/bin/python" -c "import redis; redis.Redis.from_url('$BENCH_REDIS_URL').flushdb()" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() {  # url, seconds
    for _ in $(seq 1 $(($2 * 10))); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    echo "nothing answers at $1" >&2
    return 1
}

export DEBUG=0 SECRET_KEY=bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz ALLOWED_HOSTS=127.0.0.1
export SECURE_SSL_REDIRECT=0 LOG_LEVEL=WARNING LOCAL_MODEL_ENABLED=0 PROVIDER_CHAIN=openai_compat
export OPENAI_COMPAT_BASE_URL="http://127.0.0.1:$UPSTREAM_PORT/v1" OPENAI_COMPAT_API_KEY=""
export DATABASE_URL="${PG_ADMIN_URL%/*}/$BENCH_DB" REDIS_URL="$BENCH_REDIS_URL"
for port in "$UPSTREAM_PORT" "$GATEWAY_PORT"; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
        echo "port $port is in use: set UPSTREAM_PORT / GATEWAY_PORT" >&2
        exit 1
    fi
done
psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB"
"$ROOT/.venv/bin/python" -c "import redis; redis.Redis.from_url('$BENCH_REDIS_URL').flushdb()"

ulimit -n "$(ulimit -Hn)"  # a socket each, on both sides
taskset -c 0 "$BENCH_PYTHON" -B "$BENCH_DIR/fake_upstream.py" --port "$UPSTREAM_PORT" \
    --chunks "$CHUNKS" --chunk-delay-ms "$CHUNK_DELAY_MS" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
wait_for "http://127.0.0.1:$UPSTREAM_PORT/_fake/stats" 20

cd "$ROOT"
manage() { timeout 300 .venv/bin/python manage.py "$@"; }
manage migrate --noinput >/dev/null
manage seed >/dev/null
MAX_N=0
for run in $RUNS; do n=${run#seq}; n=${n#term}; [ "$n" -gt "$MAX_N" ] && MAX_N=$n; done
# One user per 10 sockets: the plan's parallel-streams limit is checked for each, never reached.
timeout 300 .venv/bin/python bench/ws_load.py setup --users $(((MAX_N + 9) / 10)) --out "$WORK/sessions.json"

taskset -c 1 .venv/bin/daphne -b 127.0.0.1 -p "$GATEWAY_PORT" --access-log "$WORK/access.log" \
    aihub.asgi:application >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
wait_for "http://127.0.0.1:$GATEWAY_PORT/healthz" 60 || wait_for "http://127.0.0.1:$GATEWAY_PORT/" 5
if [ -n "${BENCH_PROFILE:-}" ]; then
    # --gil: only the samples of the thread holding the GIL, the nearest to where the process's CPU goes
    taskset -c 0 "$(dirname "$BENCH_PYTHON")/py-spy" record --pid "$GW_PID" --rate 250 --nonblocking --gil \
        --format raw --output "$BENCH_PROFILE" >"$WORK/py-spy.log" 2>&1 &
    PROFILER_PID=$!
fi

# A warm-up reply (imports, templates, pools), not counted.
taskset -c 0 timeout 120 "$BENCH_PYTHON" -B bench/ws_load.py run --sessions "$WORK/sessions.json" --n 1 \
    --port "$GATEWAY_PORT" --upstream "http://127.0.0.1:$UPSTREAM_PORT" --sequential >/dev/null
for run in $RUNS; do
    n=${run#seq} extra=()
    [ "$run" != "$n" ] && extra=(--sequential --upstream-ttft "$n")
    if [ "${run#term}" != "$run" ]; then  # the server is sent SIGTERM TERM_AFTER (2) s into the replies: the last run
        n=${run#term} extra=(--sigterm-after "${TERM_AFTER:-2}")
    fi
    out=$(taskset -c 0 timeout 1800 "$BENCH_PYTHON" -B bench/ws_load.py run --sessions "$WORK/sessions.json" \
        --n "$n" --port "$GATEWAY_PORT" --pid "$GW_PID" --upstream "http://127.0.0.1:$UPSTREAM_PORT" "${extra[@]}")
    if [ "${run#term}" != "$run" ]; then
        stopped_at=$(date +%s.%N)
        wait "$GW_PID" || true
        echo "{\"server_exited_after_sigterm_s\": $(echo "$(date +%s.%N) - $stopped_at" | bc)}"
        GW_PID=""
    fi
    since=$(echo "$out" | "$BENCH_PYTHON" -c "import json, sys; print(json.load(sys.stdin)['since'])")
    saved=$(timeout 300 .venv/bin/python bench/ws_load.py check --sessions "$WORK/sessions.json" --n "$n" \
        --since "$since" || true)
    echo "{\"run\": \"$run\", \"commit\": \"$(git rev-parse --short HEAD)\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"," \
        "\"sockets\": $out, \"database\": ${saved:-null}}"
done
if [ -n "$PROFILER_PID" ]; then
    kill -INT "$PROFILER_PID"; wait "$PROFILER_PID" || cat "$WORK/py-spy.log" >&2
    PROFILER_PID=""
fi
if grep -q . "$WORK/gateway.log"; then
    echo "--- server log (warnings and errors) ---" >&2
    tail -n 20 "$WORK/gateway.log" >&2
fi
