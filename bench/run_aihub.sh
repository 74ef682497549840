#!/usr/bin/env bash
# Gateway load benchmark of AI Hub with the shared harness (scenarios a-e), on a 2-core machine:
# the fake upstream and the load generator on core 0, AI Hub (one daphne process) alone on core 1.
#
#   bench/run_aihub.sh [postgres|sqlite] [scenarios]      e.g. bench/run_aihub.sh postgres a,b,c,d,e
#
# postgres: a throwaway database (BENCH_DB, default `aihub_bench`) on the local PostgreSQL plus Redis database 7 (the
# production shape); sqlite: a throwaway file in /tmp and in-process caches. Everything listens on
# 127.0.0.1, every step is bounded, and whatever the script started is stopped when it exits.
# Writes bench/results-aihub-<db>.json (git-ignored) and prints it next to LiteLLM 1.106.2.
#
# Environment: BENCH_DIR (the shared harness, default ../shared/bench beside the repo), BENCH_PYTHON (its venv's
# python, default ../.venv-bench/bin/python beside the repo: see the harness README), UPSTREAM_PORT (18090), GATEWAY_PORT (8031),
# PG_ADMIN_URL (postgres://aihub:aihub@127.0.0.1:5432/postgres), BENCH_DB (aihub_bench), BENCH_REDIS_URL (redis://127.0.0.1:6379/7).
set -euo pipefail

DB_KIND=${1:-postgres}
SCENARIOS=${2:-a,b,c,d,e}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/../shared/bench}
BENCH_PYTHON=${BENCH_PYTHON:-$ROOT/../.venv-bench/bin/python}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
GATEWAY_PORT=${GATEWAY_PORT:-8031}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://aihub:aihub@127.0.0.1:5432/postgres}
BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/7}
BENCH_DB=${BENCH_DB:-aihub_bench}  # another name lets two benchmarks run side by side
OUT="$ROOT/bench/results-aihub-$DB_KIND.json"
WORK=$(mktemp -d /tmp/aihub-bench.XXXXXX)

UP_PID="" GW_PID="" PROFILER_PID=""
cleanup() {
    set +e
    for pid in $PROFILER_PID $GW_PID $UP_PID; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    if [ "$DB_KIND" = postgres ]; then
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1
        "$ROOT/.venv/bin/python" -c "import redis; redis.Redis.from_url('$BENCH_REDIS_URL').flushdb()" 2>/dev/null
    fi
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
case "$DB_KIND" in
    postgres)
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB"
        export DATABASE_URL="${PG_ADMIN_URL%/*}/$BENCH_DB" REDIS_URL="$BENCH_REDIS_URL"
        "$ROOT/.venv/bin/python" -c "import redis; redis.Redis.from_url('$BENCH_REDIS_URL').flushdb()"
        ;;
    sqlite)
        export DATABASE_URL="sqlite:///$WORK/aihub.sqlite3" REDIS_URL=""
        ;;
    *) echo "usage: $0 [postgres|sqlite] [scenarios]" >&2; exit 2 ;;
esac

for port in "$UPSTREAM_PORT" "$GATEWAY_PORT"; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
        echo "port $port is in use: set UPSTREAM_PORT / GATEWAY_PORT" >&2
        exit 1
    fi
done
taskset -c 0 "$BENCH_PYTHON" -B "$BENCH_DIR/fake_upstream.py" --port "$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
wait_for "http://127.0.0.1:$UPSTREAM_PORT/_fake/stats" 20

cd "$ROOT"
manage() { timeout 300 .venv/bin/python manage.py "$@"; }
manage migrate --noinput >/dev/null
manage seed
manage shell -c "
from django.contrib.auth import get_user_model
from billing.models import Plan
from billing.subscriptions import start_subscription
user = get_user_model().objects.create_user('bench@aihub.local')
start_subscription(user, Plan.objects.get(slug='enterprise'))
"
API_KEY=$(manage create_api_key --email bench@aihub.local --name bench 2>/dev/null | tail -n 1)

taskset -c 1 .venv/bin/daphne -b 127.0.0.1 -p "$GATEWAY_PORT" --access-log "$WORK/access.log" \
    aihub.asgi:application >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
wait_for "http://127.0.0.1:$GATEWAY_PORT/v1/models" 60
if [ -n "${BENCH_PROFILE:-}" ]; then
    # The gateway's stacks over the whole run, collapsed (py-spy installed in the bench venv; it costs
    # core 0 time and inflates the gateway's figures somewhat)
    taskset -c 0 "$(dirname "$BENCH_PYTHON")/py-spy" record --pid "$GW_PID" --rate 250 --nonblocking --format raw \
        --output "$BENCH_PROFILE" >"$WORK/py-spy.log" 2>&1 &
    PROFILER_PID=$!
fi

timeout 3000 "$BENCH_PYTHON" -B "$BENCH_DIR/run_scenarios.py" --label "aihub-$DB_KIND" \
    --base-url "http://127.0.0.1:$GATEWAY_PORT/v1" --api-key "$API_KEY" --model compat/fake-model \
    --gateway-pid "$GW_PID" --upstream-url "http://127.0.0.1:$UPSTREAM_PORT" --upstream-pid "$UP_PID" \
    --baseline --scenarios "$SCENARIOS" --meta "database=$DB_KIND" \
    --meta "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' || echo +dirty)" \
    --out "$OUT"
if [ -n "$PROFILER_PID" ]; then
    kill -INT "$PROFILER_PID"; wait "$PROFILER_PID" || cat "$WORK/py-spy.log" >&2
    PROFILER_PID=""
fi
if grep -q . "$WORK/gateway.log"; then
    echo "--- gateway log (warnings and errors) ---" >&2
    tail -n 40 "$WORK/gateway.log" >&2
fi
"$BENCH_PYTHON" -B "$BENCH_DIR/run_scenarios.py" --report "$BENCH_DIR/results/litellm-1.106.2.json" "$OUT"
