#!/usr/bin/env bash
# Docker entrypoint for every Throttle process: `entrypoint.sh ROLE [ARGS...]`.
#
# Each role ends in `exec`, so the Python process replaces this shell, becomes PID 1 of the
# container and receives SIGTERM itself (gunicorn and RQ workers shut down gracefully on it).
# The roles are parsed out of the `case` below by tests/support/shipping.py: keep one role per
# pattern line, written as `  name)`.
set -euo pipefail

# Run from the application root (the directory holding wsgi.py and gunicorn.conf.py), whatever
# the caller's working directory.
cd "$(dirname "$0")/.."

usage() {
    cat >&2 <<'EOF'
usage: entrypoint.sh ROLE [ARGS...]

roles:
  web                  HTTP API (gunicorn with gevent workers, gunicorn.conf.py)
  worker [QUEUE ...]   RQ worker on the named queues (no names: every queue)
  scheduler            rq-scheduler (periodic cleaner)
  migrate              apply database migrations (flask db upgrade)
  dashboard            rq-dashboard behind HTTP basic auth, delete actions disabled
                       (REDIS_URL, PORT [9181], THROTTLE_DASHBOARD_USERNAME [admin],
                       THROTTLE_DASHBOARD_PASSWORD [required])
  flask ARGS...        operator CLI, e.g. `flask throttle queues`
EOF
}

# Roles that take no arguments refuse extra ones rather than silently ignoring them.
no_args() {
    if [[ $# -gt 0 ]]; then
        echo "entrypoint.sh: role '${role}' takes no arguments (got: $*)" >&2
        usage
        exit 64
    fi
}

role="${1:-}"
if [[ $# -gt 0 ]]; then
    shift
fi

case "${role}" in
  web)
    no_args "$@"
    exec gunicorn --config gunicorn.conf.py wsgi:app
    ;;
  worker)
    exec python -m workers.worker "$@"
    ;;
  scheduler)
    no_args "$@"
    exec python -m workers.scheduler
    ;;
  migrate)
    no_args "$@"
    exec flask --app throttle_app db upgrade
    ;;
  dashboard)
    no_args "$@"
    if [[ -z "${THROTTLE_DASHBOARD_PASSWORD:-}" ]]; then
        echo "entrypoint.sh: refusing to start the dashboard: THROTTLE_DASHBOARD_PASSWORD is not" \
            "set. rq-dashboard has no authentication of its own; set a password." >&2
        exit 78
    fi
    if [[ -z "${REDIS_URL:-}" ]]; then
        echo "entrypoint.sh: refusing to start the dashboard: REDIS_URL is not set." >&2
        exit 78
    fi
    # rq-dashboard behind the app's own guard (throttle_app/ops/dashboard.py: constant-time login,
    # delete disabled, same-origin actions) under gunicorn, not rq-dashboard's CLI (a plain
    # password compare on a development server). Secrets stay in the environment, never argv.
    # `--config /dev/null`: gunicorn.conf.py is the web role's and needs every secret.
    exec gunicorn --config /dev/null --bind "0.0.0.0:${PORT:-9181}" --workers 1 \
        --worker-class gthread --threads 4 --access-logfile - --no-control-socket \
        "throttle_app.ops.dashboard:standalone_app()"
    ;;
  flask)
    exec flask "$@"
    ;;
  *)
    if [[ -n "${role}" ]]; then
        echo "entrypoint.sh: unknown role '${role}'" >&2
    fi
    usage
    exit 64
    ;;
esac
