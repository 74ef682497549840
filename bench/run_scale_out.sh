#!/usr/bin/env bash
# Scale-out: gateway CPU-ms per request with one and with two AI Hub processes behind nginx, the same work
# split between them (nginx's round robin), on the same CPU budget: every AI Hub process on core 1, nginx,
# the fake upstream and the load generator on core 0. nginx proxies /v1/ as the production template does
# (docker/nginx/templates/aihub.conf.template: keepalive to the app, SSE unbuffered) but over plain HTTP
# (the harness speaks HTTP; TLS would cost both runs the same). Its CPU is measured beside the gateway's.
#
#   bench/run_scale_out.sh [scenarios]       e.g. bench/run_scale_out.sh a,b,c,d,e (the default)
#
# BENCH_PLAN: every-limit (default) or enterprise; BENCH_SERVICES=private: PostgreSQL and Redis of their own
# (measured too). Writes bench/results-scale-out-<1|2>.json (git-ignored) and prints them side by side.
# Environment: see bench/lib.sh, and UPSTREAM_PORT (18090), NGINX_PORT (8040), GATEWAY_PORTS ("8041 8042"),
# PG_ADMIN_URL, BENCH_DB (aihub_bench), BENCH_REDIS_URL (redis://127.0.0.1:6379/7), PG_PORT, REDIS_PORT.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCENARIOS=${1:-a,b,c,d,e}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
NGINX_PORT=${NGINX_PORT:-8040}
read -r -a GATEWAY_PORTS <<<"${GATEWAY_PORTS:-8041 8042}"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://aihub:aihub@127.0.0.1:5432/postgres}
BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/7}
BENCH_DB=${BENCH_DB:-aihub_bench}
BENCH_PLAN=${BENCH_PLAN:-every-limit}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx is needed (Debian: apt-get install nginx)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

aihub_env "$UPSTREAM_PORT"
export BEHIND_PROXY=1
if [ "${BENCH_SERVICES:-}" = private ]; then
    start_private_postgres "${PG_PORT:-15432}"
    start_private_redis "${REDIS_PORT:-16379}"
fi
use_postgres "$BENCH_DB"
case "$BENCH_PLAN" in
    enterprise) KEY() { echo "$KEY_ENTERPRISE"; } ;;
    every-limit) KEY() { echo "$KEY_LIMITED"; } ;;
    *) echo "BENCH_PLAN: enterprise or every-limit" >&2; exit 2 ;;
esac

start_nginx() {  # app ports...: nginx (one worker) on core 0 at $NGINX_PORT in front of them -> NGINX_PID
    port_free "$NGINX_PORT"
    local dir="$BENCH_WORK/nginx" servers="" port kind
    mkdir -p "$dir"
    for port in "$@"; do servers="$servers server 127.0.0.1:$port;"; done
    {
        [ "$(id -u)" = 0 ] && echo "user root;"
        echo "worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/error.log warn;"
        echo "events { worker_connections 1024; }"
        echo "http {"
        echo "  access_log off;"
        for kind in client_body proxy fastcgi uwsgi scgi; do echo "  ${kind}_temp_path $dir/$kind;"; done
        echo "  upstream aihub_app { $servers keepalive 32; }"
        echo "  server {"
        echo "    listen 127.0.0.1:$NGINX_PORT;"
        echo "    proxy_http_version 1.1; proxy_set_header Host \$http_host; proxy_set_header Connection \"\";"
        echo "    proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto https;"
        echo "    location /v1/ { proxy_pass http://aihub_app; proxy_buffering off; proxy_cache off; proxy_read_timeout 10m; }"
        echo "  }"
        echo "}"
    } >"$dir/nginx.conf"
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf"
    taskset -c 0 "$NGINX" -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
    BENCH_PIDS="$NGINX_PID $BENCH_PIDS"
    wait_for "http://127.0.0.1:$NGINX_PORT/v1/models" 20 "$NGINX_PID" || { cat "$dir/error.log" >&2; return 1; }
}

start_upstream "$UPSTREAM_PORT"
aihub_prepare
outs=()
for count in 1 2; do
    pids=()
    for port in "${GATEWAY_PORTS[@]:0:$count}"; do
        start_aihub "$port"
        pids+=("$GW_PID")
    done
    start_nginx "${GATEWAY_PORTS[@]:0:$count}"
    out="$BENCH_ROOT/bench/results-scale-out-$count.json"
    more=()
    for pid in "${pids[@]:1}"; do more+=(--gateway-pid "$pid"); done
    GW_PID=${pids[0]}
    run_harness "aihub-${count}-behind-nginx" "$NGINX_PORT" "$(KEY)" compat/fake-model "$UPSTREAM_PORT" "$SCENARIOS" \
        "$out" "${more[@]}" --watch "nginx=$NGINX_PID" "${BENCH_WATCH[@]}" --meta "processes=$count" \
        --meta "plan=$BENCH_PLAN" --meta "commit=$(aihub_commit)"
    outs+=("$out")
    bench_stop "$NGINX_PID"
    for pid in "${pids[@]}"; do bench_stop "$pid"; done
    show_gateway_log
done
"$BENCH_PYTHON" -B "$BENCH_ROOT/bench/scale_out_table.py" "${outs[@]}"
