#!/usr/bin/env bash
# Kafka Connect standalone with Debezium's JDBC sink connector, the comparison row of
# tests/bench/bench_sink.sh (the jars of pom.xml beside this script, fetched with Maven).
#
#   tests/bench/connect/connect-peer.sh fetch     copy the jars of pom.xml into the cache (once)
#   tests/bench/connect/connect-peer.sh check     exit 0 when java and the cached jars are there
#                                                 (nothing fetched), else say what is missing
#                                                 and exit 77
#   tests/bench/connect/connect-peer.sh run WORKER.properties CONNECTOR.properties
#                                                 fetch, then run Connect standalone in the
#                                                 foreground (stop it with SIGTERM)
#
# The jars are cached in ${COHORTGATE_CACHE:-~/.cache/cohortgate}/connect-VERSION/libs, outside
# the repository. CONNECT_LOG_LEVEL (default warn) is Connect's log level on stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${COHORTGATE_CACHE:-$HOME/.cache/cohortgate}
version=$(sed -n 's:.*<connect.version>\(.*\)</connect.version>.*:\1:p' "$here/pom.xml")
debezium=$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$here/pom.xml")
libs="$cache/connect-$version-debezium-$debezium/libs"

log() { printf 'connect-peer: %s\n' "$*" >&2; }

# shellcheck source=../../scripts/maven-jars.sh
. "$here/../../scripts/maven-jars.sh"
fetch() {
    local rc=0
    maven_jars "$here/pom.xml" "$libs" \
        "Kafka Connect $version and Debezium's JDBC sink connector $debezium" \
        'connect-runtime-*.jar' 'debezium-connector-jdbc-*.jar' || rc=$?
    [ "$rc" = 0 ] || exit "$rc"
}

check() {
    local missing=()
    command -v java >/dev/null || missing+=("java")
    [ -f "$libs/.complete" ] || missing+=("the Connect jars in $libs (tests/bench/connect/connect-peer.sh fetch)")
    if [ ${#missing[@]} -gt 0 ]; then
        log "missing: ${missing[*]}"
        exit 77
    fi
}

run() {
    command -v java >/dev/null || { log "java is not installed"; exit 77; }
    fetch
    # the connector is on the class path, so no plugin.path scan
    exec java -Xms256m -Xmx2g \
        -Dorg.slf4j.simpleLogger.defaultLogLevel="${CONNECT_LOG_LEVEL:-warn}" \
        -Dorg.slf4j.simpleLogger.logFile=System.err \
        -cp "$libs/*" org.apache.kafka.connect.cli.ConnectStandalone "$1" "$2"
}

case "${1:-}" in
fetch) fetch ;;
check) check ;;
run) run "${2:?usage: connect-peer.sh run WORKER.properties CONNECTOR.properties}" \
    "${3:?usage: connect-peer.sh run WORKER.properties CONNECTOR.properties}" ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
