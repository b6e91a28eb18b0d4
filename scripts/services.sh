#!/usr/bin/env bash
# Make sure the services the test suite requires under CI answer on 127.0.0.1:
# PostgreSQL on 5432 (trust auth, database "test") and Redis on 6379.  On a
# machine that already runs them this does nothing; otherwise it installs
# Debian's packages and starts them.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

installed_update=0
apt_install() {
    if [[ $installed_update -eq 0 ]]; then
        as_root apt-get update -qq
        installed_update=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if answers 5432; then
    echo "   PostgreSQL answers on 127.0.0.1:5432"
else
    echo "   PostgreSQL is not running: installing and starting it"
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    config=/etc/postgresql/$version/main
    # Trust local connections, as the tests' URL (postgres@127.0.0.1, no password) expects.
    as_root sed -i -E 's/^(host|local)(\s+\S+\s+\S+(\s+\S+)?\s+)(peer|md5|scram-sha-256)$/\1\2trust/' \
        "$config/pg_hba.conf"
    as_root pg_ctlcluster "$version" main start || as_root pg_ctlcluster "$version" main reload
    for _ in $(seq 1 30); do answers 5432 && break; sleep 1; done
    answers 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname = 'test'" postgres | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -c "create database test" postgres >/dev/null
fi

if answers 6379; then
    echo "   Redis answers on 127.0.0.1:6379"
else
    echo "   Redis is not running: installing and starting it"
    command -v redis-server >/dev/null || apt_install redis-server
    redis-server --bind 127.0.0.1 --port 6379 --save "" --daemonize yes >/dev/null
    for _ in $(seq 1 30); do answers 6379 && break; sleep 1; done
    answers 6379 || { echo "Redis did not start" >&2; exit 1; }
fi
