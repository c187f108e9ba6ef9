#!/usr/bin/env bash
# Starts and stops a throw-away PostgreSQL server for the tests (label pg): a fresh cluster on
# 127.0.0.1 with a free port, trust authentication, fsync off, its unix socket inside DIR.
#
#   tests/scripts/postgres.sh start DIR   initdb a cluster in DIR/data and start it; prints
#                                         export COHORTGATE_TEST_PG='host=127.0.0.1 port=N ...'
#   tests/scripts/postgres.sh start DIR tls   the same, TLS only on 127.0.0.1: a test CA and a
#                                         server certificate for 127.0.0.1 in DIR/tls (made with
#                                         openssl), plain TCP refused; the printed conninfo has
#                                         sslmode=verify-full and sslrootcert=DIR/tls/ca.crt
#   tests/scripts/postgres.sh stop DIR    stop it (fast mode); safe to call twice
#   tests/scripts/postgres.sh restart DIR stop it (fast mode: every session is cut) and start it
#                                         again on the same port
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` system user
# (Debian's package creates it) and initdb/pg_ctl run through runuser; DIR is chowned to it.
# The binaries come from $COHORTGATE_PG_BIN, else pg_config --bindir, else the newest
# /usr/lib/postgresql/*/bin (Debian keeps initdb and pg_ctl off the PATH).
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

find_bin() {
    local d
    for d in "${COHORTGATE_PG_BIN:-}" "$(pg_config --bindir 2>/dev/null || true)" \
        $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    die "initdb and pg_ctl not found (install Debian's postgresql, or set COHORTGATE_PG_BIN)"
}

# Runs a command as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

log_tail() {
    local dir=$1
    if [ -f "$dir/postgres.log" ]; then
        log "last lines of $dir/postgres.log:"
        tail -n 30 "$dir/postgres.log" >&2 || true
    fi
}

# A test CA and a server certificate for 127.0.0.1 (SAN IP) in $1/tls, for start DIR tls.
make_tls() {
    local t=$1/tls
    mkdir -p "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cohortgate test PG CA" \
        -keyout "$t/ca.key" -out "$t/ca.crt" >"$t/openssl.log" 2>&1 || die "openssl (CA)"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$t/server.key" \
        -out "$t/server.csr" >>"$t/openssl.log" 2>&1 || die "openssl (server key)"
    printf 'subjectAltName=IP:127.0.0.1\n' >"$t/san.ext"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial \
        -days 2 -extfile "$t/san.ext" -out "$t/server.crt" >>"$t/openssl.log" 2>&1 ||
        die "openssl (server certificate)"
    chmod 600 "$t/server.key"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$t"; fi
}

start() {
    local dir=$1 tls=${2:-} bin port user
    bin=$(find_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ ! -e "$dir/data" ] || die "$dir/data already exists: stop it and use a fresh DIR"
    # a unix socket path is limited to 107 bytes: DIR/.s.PGSQL.NNNNN
    [ ${#dir} -le 90 ] || die "DIR path too long for a unix socket (${#dir} > 90 bytes): $dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the postgres system user"
        chown -R postgres: "$dir"
        runuser -u postgres -- test -w "$dir" ||
            die "user postgres cannot write $dir (a parent directory closed to it?)"
    fi
    user=postgres
    # cd: the owner may not be allowed into the caller's working directory
    (cd "$dir" && as_owner "$bin/initdb" -D "$dir/data" -U "$user" -A trust -E UTF8 --no-locale \
        --no-sync >"$dir/initdb.log" 2>&1) || {
        tail -n 30 "$dir/initdb.log" >&2
        die "initdb (log in $dir/initdb.log)"
    }
    local ssl_conf="" conn_tls=""
    if [ "$tls" = tls ]; then
        make_tls "$dir"
        ssl_conf="ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'"
        conn_tls=" sslmode=verify-full sslrootcert=$dir/tls/ca.crt"
        # TCP only over TLS; the unix socket stays for pg_ctl
        printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n' \
            >"$dir/data/pg_hba.conf"
        if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir/data/pg_hba.conf"; fi
    fi
    local attempt
    for attempt in 1 2 3; do
        port=$(free_port)
        # a free port may be taken again before the server binds it: try another
        cat >"$dir/data/cohortgate.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
$ssl_conf
CONF
        if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir/data/cohortgate.conf"; fi
        grep -q "^include_if_exists = 'cohortgate.conf'" "$dir/data/postgresql.conf" ||
            echo "include_if_exists = 'cohortgate.conf'" >>"$dir/data/postgresql.conf"
        if (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
            start >"$dir/pg_ctl.log" 2>&1); then
            if "$bin/pg_isready" -q -h "$dir" -p "$port" -t 10 2>/dev/null ||
                [ ! -x "$bin/pg_isready" ]; then
                local conninfo="host=127.0.0.1 port=$port dbname=postgres user=$user$conn_tls"
                echo "$conninfo" >"$dir/conninfo"
                log "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') up on 127.0.0.1:$port" \
                    "(data and log in $dir)"
                echo "export COHORTGATE_TEST_PG='$conninfo'"
                return 0
            fi
            log "server started but 127.0.0.1:$port does not answer"
            stop "$dir"
        fi
        if ! grep -qi 'could not bind\|address already in use' "$dir/postgres.log" 2>/dev/null; then
            break
        fi
        log "port $port was taken (attempt $attempt), trying another"
    done
    cat "$dir/pg_ctl.log" >&2 2>/dev/null || true
    log_tail "$dir"
    die "PostgreSQL did not start (log in $dir/postgres.log)"
}

stop() {
    local dir=$1 bin
    if [ ! -f "$dir/data/postmaster.pid" ]; then
        log "no server running in $dir"
        return 0
    fi
    bin=$(find_bin)
    if ! (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop \
        >"$dir/pg_ctl.log" 2>&1); then
        # pg_ctl fails on a stale pid file of a server that died: that is stopped too
        if [ -f "$dir/data/postmaster.pid" ] &&
            kill -0 "$(head -n 1 "$dir/data/postmaster.pid")" 2>/dev/null; then
            cat "$dir/pg_ctl.log" >&2 || true
            log_tail "$dir"
            die "pg_ctl stop"
        fi
    fi
    log "PostgreSQL in $dir stopped"
}

restart() {
    local dir=$1 bin
    bin=$(find_bin)
    (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -m fast -w -t 60 \
        restart >"$dir/pg_ctl.log" 2>&1) || {
        cat "$dir/pg_ctl.log" >&2 || true
        log_tail "$dir"
        die "pg_ctl restart"
    }
    log "PostgreSQL in $dir restarted"
}

case "${1:-}" in
start) start "${2:?usage: $0 start DIR [tls]}" "${3:-}" ;;
stop) stop "${2:?usage: $0 stop DIR}" ;;
restart) restart "${2:?usage: $0 restart DIR}" ;;
*)
    echo "usage: $0 start DIR | stop DIR | restart DIR" >&2
    exit 2
    ;;
esac
