#!/bin/sh
# serve (default): migrate and seed under a lock (replicas may start together), then serve.
# migrate: only that (a Kubernetes Job, a compose one-off). Anything else runs as given, e.g.
# `docker run aihub python manage.py refresh_models`.
set -eu
case "${1:-serve}" in
  serve)
    if [ -n "${STATIC_SHARE_DIR:-}" ]; then
      # For a proxy that serves them from a shared volume; older hashed names stay for a rolling upgrade.
      cp -R "$STATIC_ROOT/." "$STATIC_SHARE_DIR/"
    fi
    if [ "${MIGRATE_ON_START:-1}" = "1" ]; then
      python manage.py migrate_locked
    fi
    # uvicorn, draining at SIGTERM: open requests finish (up to DRAIN_SECONDS), then it exits.
    exec python manage.py serve --bind "${BIND:-0.0.0.0}" --port "${PORT:-8000}" --proxy-headers
    ;;
  migrate)
    exec python manage.py migrate_locked
    ;;
  *)
    exec "$@"
    ;;
esac
