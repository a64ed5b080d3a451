#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1: start them when installed, install them
# from the OS packages (Debian) when not. Idempotent; safe to run before every command.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }

apt_install() {
    echo "services: installing $* from the OS packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "$@" >/dev/null
}

if ! pg_up; then
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-client
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null |
        sort -V | tail -n 1)
    if [[ -z "${version}" ]]; then
        echo "services: PostgreSQL is installed but has no cluster in /etc/postgresql" >&2
        exit 1
    fi
    # Exit 2 means "already running"; trust auth on loopback is what the tests expect.
    pg_ctlcluster --skip-systemctl-redirect "${version}" main start || [[ $? -eq 2 ]]
    for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
    pg_up || { echo "services: PostgreSQL did not start" >&2; exit 1; }
fi

if ! redis_up; then
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/throttle.log
    for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
    redis_up || { echo "services: Redis did not start" >&2; exit 1; }
fi
echo "services: PostgreSQL and Redis are up on 127.0.0.1" >&2
