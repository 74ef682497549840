# shellcheck shell=bash
# The pieces of the gateway benchmarks (sourced by bench/run_aihub.sh and bench/run_all.sh): the shared
# harness's fake upstream on core 0, PostgreSQL and Redis (the local servers, or private throwaway ones
# whose CPU can be measured alone), AI Hub prepared and served by one server process (`manage.py serve`, or daphne) alone on core 1,
# LiteLLM, and the harness run against a gateway. Everything listens on 127.0.0.1, every wait is bounded,
# and whatever was started is stopped when the script exits (bench_exit), failing loudly on any error.
#
# Environment: BENCH_DIR (the shared harness, default ../shared/bench beside the repo), BENCH_VENVS (where the
# benchmark's venvs live, outside the repo: default ~/.cache/aihub-bench; `make bench` installs them),
# BENCH_PYTHON (the harness venv's python, default $BENCH_VENVS/venv-harness/bin/python).

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${BENCH_DIR:-}" ]; then  # beside the repository (a git worktree's: beside its main repository)
    BENCH_DIR=$BENCH_ROOT/../shared/bench
    [ -d "$BENCH_DIR" ] || BENCH_DIR=$(cd "$BENCH_ROOT" && cd "$(git rev-parse --git-common-dir)/../.." && pwd)/shared/bench
fi
BENCH_VENVS=${BENCH_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/aihub-bench}
BENCH_PYTHON=${BENCH_PYTHON:-$BENCH_VENVS/venv-harness/bin/python}
LITELLM_VERSION=1.106.2
for needed in "$BENCH_DIR/run_scenarios.py" "$BENCH_PYTHON"; do
    [ -e "$needed" ] || { echo "missing $needed: set BENCH_DIR / BENCH_VENVS, or run make bench" >&2; exit 1; }
done
BENCH_WORK=$(mktemp -d /tmp/aihub-bench.XXXXXX)
BENCH_PIDS=""      # what this script started and still runs, newest first
BENCH_ON_EXIT=""   # more commands for bench_exit (dropping a database)
BENCH_WATCH=()     # --watch arguments for the harness: the database's and Redis's processes, when private

bench_exit() {
    set +e
    local pid
    for pid in $BENCH_PIDS; do bench_stop "$pid"; done
    eval "$BENCH_ON_EXIT"
    [ -n "${BENCH_KEEP_WORK:-}" ] && echo "kept $BENCH_WORK" >&2 || rm -rf "$BENCH_WORK"
}
trap bench_exit EXIT
trap 'exit 130' INT TERM

bench_stop() {  # pid: stop a process this script started (SIGTERM, SIGKILL after 15 s) and forget it
    local pid=$1 killer sig=TERM
    [ "$pid" = "${PG_PID:-}" ] && sig=INT  # PostgreSQL's fast shutdown (TERM waits for its clients)
    kill -s "$sig" "$pid" 2>/dev/null || true
    (sleep 15 && kill -9 "$pid" 2>/dev/null) &
    killer=$!
    wait "$pid" 2>/dev/null || true  # its exit status: killed, as asked
    kill "$killer" 2>/dev/null || true
    wait "$killer" 2>/dev/null || true
    BENCH_PIDS=$(echo " $BENCH_PIDS " | sed "s/ $pid / /; s/^ *//; s/ *$//")
}

wait_for() {  # url, seconds, [pid: give up when it has exited]
    local _
    for _ in $(seq 1 $(($2 * 10))); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then echo "process $3 exited" >&2; return 1; fi
        sleep 0.1
    done
    echo "nothing answers at $1" >&2
    return 1
}

port_free() {  # port...: fail if something listens there already
    local port
    for port in "$@"; do
        if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is in use: choose other ports (see the script's header)" >&2
            return 1
        fi
    done
}

start_upstream() {  # port: the shared harness's fake upstream on core 0 -> UP_PID
    port_free "$1"
    taskset -c 0 "$BENCH_PYTHON" -B "$BENCH_DIR/fake_upstream.py" --port "$1" >"$BENCH_WORK/upstream.log" 2>&1 &
    UP_PID=$!
    BENCH_PIDS="$UP_PID $BENCH_PIDS"
    wait_for "http://127.0.0.1:$1/_fake/stats" 20 "$UP_PID" || { cat "$BENCH_WORK/upstream.log" >&2; return 1; }
}

# PostgreSQL's programs refuse to run as root: as the postgres user then (setpriv execs, no wrapper process)
if [ "$(id -u)" = 0 ]; then AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups); else AS_POSTGRES=(); fi

start_private_postgres() {  # port: a throwaway PostgreSQL cluster on core 0, only the benchmark's -> PG_PID, PG_ADMIN_URL
    port_free "$1"
    local data="$BENCH_WORK/pg"
    mkdir -p "$data"
    if [ "$(id -u)" = 0 ]; then chmod 711 "$BENCH_WORK" && chown postgres "$data"; fi
    timeout 120 "${AS_POSTGRES[@]}" initdb -D "$data" -U aihub --auth=trust -E UTF8 --no-sync >"$BENCH_WORK/initdb.log" 2>&1 \
        || { cat "$BENCH_WORK/initdb.log" >&2; return 1; }
    # the server's defaults (durable commits, as in production); its socket in its own directory
    taskset -c 0 "${AS_POSTGRES[@]}" postgres -D "$data" -p "$1" -c listen_addresses=127.0.0.1 \
        -c unix_socket_directories="$data" >"$BENCH_WORK/postgres.log" 2>&1 &
    PG_PID=$!
    BENCH_PIDS="$PG_PID $BENCH_PIDS"
    PG_ADMIN_URL="postgres://aihub:aihub@127.0.0.1:$1/postgres"
    local _
    for _ in $(seq 1 300); do
        psql -q "$PG_ADMIN_URL" -c "SELECT 1" >/dev/null 2>&1 && break
        sleep 0.1
    done
    psql -q "$PG_ADMIN_URL" -c "SELECT 1" >/dev/null || { cat "$BENCH_WORK/postgres.log" >&2; return 1; }
    BENCH_WATCH+=(--watch "db=$PG_PID")
}

start_private_redis() {  # port: a throwaway Redis on core 0 (no persistence) -> REDIS_PID, BENCH_REDIS_URL
    port_free "$1"
    taskset -c 0 redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$BENCH_WORK" \
        >"$BENCH_WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    BENCH_PIDS="$REDIS_PID $BENCH_PIDS"
    BENCH_REDIS_URL="redis://127.0.0.1:$1/0"
    local _
    for _ in $(seq 1 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$1" ping >/dev/null || { cat "$BENCH_WORK/redis.log" >&2; return 1; }
    BENCH_WATCH+=(--watch "redis=$REDIS_PID")
}

use_postgres() {  # database name: a fresh database on $PG_ADMIN_URL (dropped at exit), Redis $BENCH_REDIS_URL flushed
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
    export DATABASE_URL="${PG_ADMIN_URL%/*}/$1" REDIS_URL="$BENCH_REDIS_URL"
    "$BENCH_ROOT/.venv/bin/python" -c "import redis; redis.Redis.from_url('$BENCH_REDIS_URL').flushdb()"
    BENCH_ON_EXIT="$BENCH_ON_EXIT
psql -q '$PG_ADMIN_URL' -c 'DROP DATABASE IF EXISTS $1 WITH (FORCE)' >/dev/null 2>&1
'$BENCH_ROOT/.venv/bin/python' -c \"import redis; redis.Redis.from_url('$BENCH_REDIS_URL').flushdb()\" 2>/dev/null"
}

aihub_env() {  # upstream port: production settings, the openai-compatible provider on the fake upstream
    export DEBUG=0 SECRET_KEY=bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz ALLOWED_HOSTS=127.0.0.1
    export SECURE_SSL_REDIRECT=0 LOG_LEVEL=WARNING LOCAL_MODEL_ENABLED=0 PROVIDER_CHAIN=openai_compat
    export OPENAI_COMPAT_BASE_URL="http://127.0.0.1:$1/v1" OPENAI_COMPAT_API_KEY=""
}

manage() { (cd "$BENCH_ROOT" && timeout 300 .venv/bin/python manage.py "$@"); }

aihub_prepare() {  # migrate and seed (model compat/fake-model, priced as gpt-4o-mini), users and their keys:
    # bench@aihub.local on Enterprise (no limits) -> KEY_ENTERPRISE, limits@aihub.local on a plan with every
    # limit set, each far above what the run uses so that nothing is refused -> KEY_LIMITED
    manage migrate --noinput >/dev/null
    manage seed
    manage shell -c "
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.models import Plan
from billing.subscriptions import start_subscription
from chat.catalogue.models import AIModel
model = AIModel.objects.get(slug='compat/fake-model')
model.input_price_per_m, model.output_price_per_m = Decimal('0.15'), Decimal('0.60')
model.save()
every_limit = Plan.objects.create(
    slug='bench-every-limit', name='Bench, every limit', monthly_price=Decimal('10'), is_public=False,
    monthly_token_quota=10**12, monthly_credit_quota=Decimal('1000000'), requests_per_minute=1_000_000,
    tokens_per_minute=1_000_000_000, max_concurrent_streams=10_000,
)
users = get_user_model().objects
start_subscription(users.create_user('bench@aihub.local'), Plan.objects.get(slug='enterprise'))
start_subscription(users.create_user('limits@aihub.local'), every_limit)
"
    KEY_ENTERPRISE=$(manage create_api_key --email bench@aihub.local --name bench 2>/dev/null | tail -n 1)
    KEY_LIMITED=$(manage create_api_key --email limits@aihub.local --name bench 2>/dev/null | tail -n 1)
    [ -n "$KEY_ENTERPRISE" ] && [ -n "$KEY_LIMITED" ] || { echo "no API key issued" >&2; return 1; }
}

start_aihub() {  # port: one server process alone on core 1 -> GW_PID. BENCH_SERVER: serve (the default: the
    # production server, `manage.py serve`: uvicorn on uvloop and httptools), daphne (`make run`'s) or granian
    # (measured beside them, not a dependency of the app: `.venv/bin/pip install granian` first)
    port_free "$1"
    case "${BENCH_SERVER:-serve}" in
        serve) (cd "$BENCH_ROOT" && exec taskset -c 1 .venv/bin/python manage.py serve --port "$1" \
            >"$BENCH_WORK/gateway.log" 2>&1) & ;;
        daphne) (cd "$BENCH_ROOT" && exec taskset -c 1 .venv/bin/daphne -b 127.0.0.1 -p "$1" \
            --access-log "$BENCH_WORK/access.log" aihub.asgi:application >"$BENCH_WORK/gateway.log" 2>&1) & ;;
        granian) (cd "$BENCH_ROOT" && exec taskset -c 1 .venv/bin/granian --interface asgi --host 127.0.0.1 \
            --port "$1" --workers 1 --runtime-mode st --loop uvloop --no-access-log aihub.asgi:application \
            >"$BENCH_WORK/gateway.log" 2>&1) & ;;
        *) echo "BENCH_SERVER: serve, daphne or granian" >&2; return 2 ;;
    esac
    GW_PID=$!
    BENCH_PIDS="$GW_PID $BENCH_PIDS"
    wait_for "http://127.0.0.1:$1/v1/models" 60 "$GW_PID" || { tail -n 40 "$BENCH_WORK/gateway.log" >&2; return 1; }
}

start_litellm() {  # port, upstream port: LiteLLM's proxy, one worker alone on core 1 -> GW_PID, LITELLM_KEY
    port_free "$1"
    LITELLM_KEY=sk-bench-master-key
    # without AI Hub's DATABASE_URL and REDIS_URL (LiteLLM would use them); in a session of its own: stopping, it
    # signals its whole process group
    env -u DATABASE_URL -u REDIS_URL BENCH_UPSTREAM_BASE="http://127.0.0.1:$2/v1" BENCH_MASTER_KEY=$LITELLM_KEY \
        LITELLM_LOG=ERROR setsid taskset -c 1 "$BENCH_VENVS/venv-litellm-$LITELLM_VERSION/bin/litellm" --config "$BENCH_DIR/litellm-config.yaml" \
        --host 127.0.0.1 --port "$1" --num_workers 1 >"$BENCH_WORK/litellm.log" 2>&1 &
    GW_PID=$!
    BENCH_PIDS="$GW_PID $BENCH_PIDS"
    wait_for "http://127.0.0.1:$1/health/liveliness" 180 "$GW_PID" || { tail -n 40 "$BENCH_WORK/litellm.log" >&2; return 1; }
}

start_profiler() {  # file: py-spy records the gateway's stacks (collapsed) from core 0 -> PROFILER_PID
    # (py-spy from the harness venv; it costs core 0 time and inflates the gateway's figures somewhat)
    # BENCH_PROFILE_GIL=1: only the thread holding the GIL (what costs CPU, not threads waiting on I/O)
    taskset -c 0 "$(dirname "$BENCH_PYTHON")/py-spy" record --pid "$GW_PID" --rate 250 --nonblocking --format raw \
        ${BENCH_PROFILE_GIL:+--gil} --output "$1" >"$BENCH_WORK/py-spy.log" 2>&1 &
    PROFILER_PID=$!
    BENCH_PIDS="$PROFILER_PID $BENCH_PIDS"
}

stop_profiler() {
    kill -INT "$PROFILER_PID"
    wait "$PROFILER_PID" || cat "$BENCH_WORK/py-spy.log" >&2
    BENCH_PIDS=$(echo " $BENCH_PIDS " | sed "s/ $PROFILER_PID / /; s/^ *//; s/ *$//")
}

run_harness() {  # label, gateway port, key, model, upstream port, scenarios, out, [more run_scenarios.py args]:
    # the scenarios against the gateway $GW_PID, each after the same scenario straight to the upstream
    local label=$1 port=$2 key=$3 model=$4 up=$5 scenarios=$6 out=$7
    shift 7
    timeout 3000 "$BENCH_PYTHON" -B "$BENCH_DIR/run_scenarios.py" --label "$label" \
        --base-url "http://127.0.0.1:$port/v1" --api-key "$key" --model "$model" \
        --gateway-pid "$GW_PID" --upstream-url "http://127.0.0.1:$up" --upstream-pid "$UP_PID" \
        --baseline --scenarios "$scenarios" "$@" --out "$out"
}

aihub_commit() {  # the commit measured, +dirty with uncommitted changes outside bench/
    (cd "$BENCH_ROOT" && echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' || echo +dirty)")
}

show_gateway_log() {  # warnings and errors the gateway logged, if any (the readiness probe's 401 left out)
    if grep -qv "Unauthorized: /v1/models" "$BENCH_WORK/gateway.log"; then
        echo "--- gateway log (warnings and errors) ---" >&2
        grep -v "Unauthorized: /v1/models" "$BENCH_WORK/gateway.log" | tail -n 60 >&2 || true
    fi
}
