#!/usr/bin/env bash
# CI smoke test of the one-command local stack: `bash scripts/smoke.sh`.
#
# Starts scripts/run.sh in the background on its own ports, its own Redis (a private
# redis-server on a free port, gone afterwards) and its own PostgreSQL database (dropped and
# created afresh), so it never touches a developer's stack or other test runs; waits for
# /api/health, checks the worker and scheduler liveness probes and the /rq dashboard's login,
# runs `scripts/demo.py --count 60 --timeout 60` (OAuth install, signed webhooks, releases at
# their rates), then stops the stack with SIGTERM and checks that run.sh exited 0, that every
# process it had started has exited, and that the worker and scheduler signed off in Redis.
# Takes about 30 seconds when .venv is already built. Logs: .cache/smoke/.
#
# Overrides [defaults]: SMOKE_PORT, SMOKE_FAKE_PORT [free ports], SMOKE_REDIS_SERVER [none: a
# private redis-server; when set, e.g. redis://127.0.0.1:6379, database SMOKE_REDIS_DB [14] of
# that server is used and emptied with FLUSHDB first],
# SMOKE_DATABASE [throttle_smoke; must start with throttle_smoke, it is dropped first],
# SMOKE_START_TIMEOUT [180 s, includes building .venv], SMOKE_STOP_TIMEOUT [60 s].
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE_DIR=.cache/smoke
PY=.venv/bin/python
START_TIMEOUT="${SMOKE_START_TIMEOUT:-180}"
STOP_TIMEOUT="${SMOKE_STOP_TIMEOUT:-60}"
began=${SECONDS}

say() { echo "smoke: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

bash scripts/bootstrap.sh

free_port() {
    "${PY}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
export PORT="${SMOKE_PORT:-$(free_port)}"
export FAKE_PORT="${SMOKE_FAKE_PORT:-$(free_port)}"
while [[ "${FAKE_PORT}" == "${PORT}" ]]; do FAKE_PORT="$(free_port)"; done
export DEV_DATABASE="${SMOKE_DATABASE:-throttle_smoke}"
export DEV_LOG_DIR="${SMOKE_DIR}/logs"
API="http://127.0.0.1:${PORT}"
FAKE="http://127.0.0.1:${FAKE_PORT}"

[[ "${DEV_DATABASE}" =~ ^throttle_smoke[a-z0-9_]*$ ]] ||
    fail "SMOKE_DATABASE must start with throttle_smoke (it is dropped), got '${DEV_DATABASE}'"

# --- a clean slate: an empty Redis, the database dropped (run.sh creates and migrates it) -------
rm -rf "${SMOKE_DIR}"
mkdir -p "${SMOKE_DIR}"
redis_pid=""
if [[ -n "${SMOKE_REDIS_SERVER:-}" ]]; then
    export DEV_REDIS_SERVER="${SMOKE_REDIS_SERVER%/}"
    export DEV_REDIS_DB="${SMOKE_REDIS_DB:-14}"
else
    command -v redis-server >/dev/null 2>&1 ||
        fail "redis-server is not installed (or set SMOKE_REDIS_SERVER to a Redis to use)"
    redis_port="$(free_port)"
    redis-server --port "${redis_port}" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --logfile "$(pwd)/${SMOKE_DIR}/redis.log" &
    redis_pid=$!
    export DEV_REDIS_SERVER="redis://127.0.0.1:${redis_port}"
    export DEV_REDIS_DB=0
fi
REDIS_URL_SMOKE="${DEV_REDIS_SERVER}/${DEV_REDIS_DB}"
"${PY}" - "${REDIS_URL_SMOKE}" "${DEV_DATABASE}" <<'PY'
import sys
import time

import psycopg2
import redis
from psycopg2 import sql

redis_url, database = sys.argv[1:]
connection = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
for _ in range(100):
    try:
        connection.flushdb()  # this database only (FLUSHALL never: others share the server)
        break
    except redis.ConnectionError:
        time.sleep(0.1)
else:
    sys.exit(f"smoke: Redis at {redis_url} does not answer")
conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5)
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
conn.close()
PY

# --- processes: PID plus start time, so a reused PID is not mistaken for a survivor ------------

# "pid starttime" of every descendant of $1 (its children, their children, ...).
descendants() {
    local -A children=()
    local stat pid ppid rest queue=("$1") fields
    for stat in /proc/[0-9]*/stat; do
        rest="$(cat "${stat}" 2>/dev/null)" || continue
        pid="${rest%% *}"
        read -ra fields <<<"${rest##*) }"
        ppid="${fields[1]}"
        children[${ppid}]+="${pid}:${fields[19]} "
    done
    while ((${#queue[@]} > 0)); do
        pid="${queue[0]}"
        queue=("${queue[@]:1}")
        for entry in ${children[${pid}]:-}; do
            echo "${entry%%:*} ${entry#*:}"
            queue+=("${entry%%:*}")
        done
    done
}

# True when the process PID still runs and is the one that started at STARTTIME (not a zombie).
still_running() {
    local rest fields
    rest="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    read -ra fields <<<"${rest##*) }"
    [[ "${fields[0]}" != Z && "${fields[19]}" == "$2" ]]
}

run_pid=""
stop_redis() {
    if [[ -n "${redis_pid}" ]]; then
        kill -TERM "${redis_pid}" 2>/dev/null || true
        wait "${redis_pid}" 2>/dev/null || true
        redis_pid=""
    fi
}
cleanup() {
    local status=$?
    if [[ -n "${run_pid}" ]] && kill -0 "${run_pid}" 2>/dev/null; then
        say "stopping the stack (run.sh ${run_pid})"
        local leftovers
        leftovers="$(descendants "${run_pid}")"
        kill -TERM "${run_pid}" 2>/dev/null || true
        for _ in $(seq 1 $((STOP_TIMEOUT * 5))); do
            kill -0 "${run_pid}" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "${run_pid}" 2>/dev/null || true
        while read -r pid _; do
            if [[ -n "${pid}" ]]; then kill -KILL "${pid}" 2>/dev/null || true; fi
        done <<<"${leftovers}"
    fi
    stop_redis
    exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" 2>/dev/null || true; }

# --- start -------------------------------------------------------------------------------------
say "starting scripts/run.sh: API ${API}, fake HubSpot ${FAKE}, Redis ${REDIS_URL_SMOKE}," \
    "database ${DEV_DATABASE} (log: ${SMOKE_DIR}/run.log)"
bash scripts/run.sh >"${SMOKE_DIR}/run.log" 2>&1 &
run_pid=$!

deadline=$((SECONDS + START_TIMEOUT))
until [[ "$(http_status "${API}/api/health")" == 200 ]]; do
    if ! kill -0 "${run_pid}" 2>/dev/null; then
        tail -n 30 "${SMOKE_DIR}/run.log" >&2
        fail "run.sh exited before the API was healthy"
    fi
    ((SECONDS < deadline)) || fail "${API}/api/health not healthy within ${START_TIMEOUT}s"
    sleep 0.5
done
# run.sh prints its banner once every process is up.
until grep -q "^run: running:" "${SMOKE_DIR}/run.log"; do
    kill -0 "${run_pid}" 2>/dev/null || fail "run.sh exited during start-up"
    ((SECONDS < deadline)) || fail "run.sh did not finish starting within ${START_TIMEOUT}s"
    sleep 0.2
done
say "stack up after $((SECONDS - began))s"

# --- checks ------------------------------------------------------------------------------------
for flag in "" --scheduler; do
    # shellcheck disable=SC2086 # the empty flag must vanish
    REDIS_URL="${REDIS_URL_SMOKE}" "${PY}" -m workers.healthcheck ${flag} >&2 ||
        fail "python -m workers.healthcheck ${flag} reports the stack's process unhealthy"
done

# shellcheck source=/dev/null
dashboard_user="$(. "${DEV_ENV_FILE:-.cache/dev.env}" && echo "${THROTTLE_DASHBOARD_USERNAME}")"
# shellcheck source=/dev/null
dashboard_password="$(. "${DEV_ENV_FILE:-.cache/dev.env}" && echo "${THROTTLE_DASHBOARD_PASSWORD}")"
case "$(http_status "${API}/rq/")" in
  401)
    [[ "$(http_status -u "${dashboard_user}:wrong" "${API}/rq/")" == 401 ]] ||
        fail "/rq/ accepted a wrong password"
    [[ "$(http_status -u "${dashboard_user}:${dashboard_password}" "${API}/rq/")" == 200 ]] ||
        fail "/rq/ refused the dashboard credentials from the dev env"
    say "dashboard: /rq/ asks for a login and accepts the dev credentials"
    ;;
  404) say "dashboard: /rq/ is not mounted (the app does not call init_dashboard)" ;;
  *) fail "/rq/ answered $(http_status "${API}/rq/") without credentials (expected 401)" ;;
esac

say "running scripts/demo.py --count 60 --timeout 60"
"${PY}" scripts/demo.py --api "${API}" --fake "${FAKE}" --count 60 --timeout 60 ||
    fail "the demo did not release every execution at its rate (logs: ${SMOKE_DIR}/logs/)"

# --- stop, and look for survivors --------------------------------------------------------------
processes="$(descendants "${run_pid}")"
say "stopping run.sh with SIGTERM ($(wc -l <<<"${processes}") processes under it)"
stop_began=${SECONDS}
kill -TERM "${run_pid}"
run_status=""
for _ in $(seq 1 $((STOP_TIMEOUT * 5))); do
    if ! kill -0 "${run_pid}" 2>/dev/null; then
        run_status=0
        wait "${run_pid}" || run_status=$?
        break
    fi
    sleep 0.2
done
[[ -n "${run_status}" ]] || fail "run.sh still running ${STOP_TIMEOUT}s after SIGTERM"
run_pid=""
say "run.sh exited with status ${run_status} after $((SECONDS - stop_began))s"
tail -n 2 "${SMOKE_DIR}/run.log" >&2
[[ "${run_status}" == 0 ]] || fail "run.sh did not stop cleanly (status ${run_status})"

survivors=()
while read -r pid start; do
    [[ -n "${pid}" ]] || continue
    if still_running "${pid}" "${start}"; then
        survivors+=("${pid} $(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null)")
    fi
done <<<"${processes}"
if ((${#survivors[@]} > 0)); then
    printf 'smoke:   left over: %s\n' "${survivors[@]}" >&2
    for entry in "${survivors[@]}"; do kill -KILL "${entry%% *}" 2>/dev/null || true; done
    fail "${#survivors[@]} process(es) outlived run.sh"
fi
for port in "${PORT}" "${FAKE_PORT}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
        fail "port ${port} still answers after the stack stopped"
    fi
done
"${PY}" - "${REDIS_URL_SMOKE}" <<'PY' || fail "the worker or scheduler did not sign off in Redis"
import sys

import redis

from workers.healthcheck import schedulers, workers

connection = redis.Redis.from_url(sys.argv[1])
live = [w.name for w in workers(connection) if w.alive] + [
    s.name for s in schedulers(connection) if s.alive
]
if live:
    sys.exit(f"smoke: still registered as alive in Redis: {', '.join(live)}")
PY
stop_redis
say "OK: the stack ran the demo and stopped without leftovers ($((SECONDS - began))s in all)"
