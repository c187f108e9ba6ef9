#!/usr/bin/env bash
# Starts and stops a real Apache Kafka broker for the tests: one KRaft node (broker + controller)
# on 127.0.0.1 with free ports and a fresh log directory.
#
#   tests/scripts/kafka-broker.sh fetch        fetch the broker jars with Maven into the cache
#   tests/scripts/kafka-broker.sh start DIR    start a broker whose state lives in DIR; prints
#                                              `export COHORTGATE_TEST_BOOTSTRAP=127.0.0.1:PORT`
#   tests/scripts/kafka-broker.sh stop DIR     stop it (SIGTERM, then SIGKILL after 20 s)
#   tests/scripts/kafka-broker.sh restart DIR  stop the broker of DIR if it runs, then start it
#                                              again on the same ports with the same state (topics,
#                                              offsets, groups survive); prints the same export line
#
# The jars (org.apache.kafka:kafka_2.13 and its runtime dependencies, tests/kafka/pom.xml) are
# cached in ${COHORTGATE_CACHE:-~/.cache/cohortgate}, outside the repository.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${COHORTGATE_CACHE:-$HOME/.cache/cohortgate}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$root/tests/kafka/pom.xml")
libs="$cache/kafka-$kafka_version/libs"

log() { printf 'kafka-broker: %s\n' "$*" >&2; }

# shellcheck source=maven-jars.sh
. "$here/maven-jars.sh"
fetch() {
    maven_jars "$root/tests/kafka/pom.xml" "$libs" \
        "Apache Kafka $kafka_version broker jars (org.apache.kafka:kafka_2.13)" 'kafka_2.13-*.jar' ||
        exit 1
}

# C1 only starts the broker sooner, for tests; a benchmark wants the broker at full speed:
# COHORTGATE_KAFKA_FULL_JIT=1 keeps the JVM's optimizing compiler
java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true)
[ -n "${COHORTGATE_KAFKA_FULL_JIT:-}" ] || java_opts+=(-XX:TieredStopAtLevel=1)

# A cluster id as Kafka's own Uuid.randomUuid makes them: 16 random bytes in base64url, never one
# that starts with '-' (the storage tool's argument parser would take it for an option).
cluster_id() {
    python3 -c 'import base64, uuid
s = "-"
while s.startswith("-"):
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
print(s)'
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local dir=$1
    fetch
    rm -rf "$dir" && mkdir -p "$dir/data"
    local bport cport
    bport=$(free_port)
    cport=$(free_port)
    while [ "$cport" = "$bport" ]; do cport=$(free_port); done
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=1000000
PROPS
    cat >"$dir/log4j.properties" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=INFO
PROPS
    java "${java_opts[@]}" "-Dlog4j.configuration=file:$dir/log4j.properties" -cp "$libs/*" \
        kafka.tools.StorageTool format \
        --cluster-id="$(cluster_id)" \
        -c "$dir/server.properties" >"$dir/format.out" 2>&1 || {
        cat "$dir/format.out" >&2
        log "FAILED: kafka-storage format"
        exit 1
    }
    echo "127.0.0.1:$bport" >"$dir/bootstrap"
    launch "$dir"
}

# How many times the broker of DIR has logged that it started.
started_count() {
    local n
    n=$(grep -c 'Kafka Server started' "$1/server.log" 2>/dev/null) || true
    echo "${n:-0}"
}

# Runs the broker of an already formatted DIR and waits until it has started (this start, not an
# earlier one: server.log keeps the lines of every start, so the new line is counted).
launch() {
    local dir=$1 bootstrap before
    bootstrap=$(cat "$dir/bootstrap")
    before=$(started_count "$dir")
    nohup java "${java_opts[@]}" "-Dlog4j.configuration=file:$dir/log4j.properties" -cp "$libs/*" \
        kafka.Kafka "$dir/server.properties" >>"$dir/broker.out" 2>&1 &
    echo $! >"$dir/broker.pid"
    local i
    for i in $(seq 1 120); do
        if [ "$(started_count "$dir")" -gt "$before" ]; then
            log "Apache Kafka $kafka_version up on $bootstrap (pid $(cat "$dir/broker.pid"), logs in $dir)"
            echo "export COHORTGATE_TEST_BOOTSTRAP=$bootstrap"
            return 0
        fi
        if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
            tail -30 "$dir/broker.out" "$dir/server.log" >&2 || true
            log "FAILED: broker exited during start-up"
            exit 1
        fi
        sleep 0.5
    done
    tail -30 "$dir/server.log" >&2 || true
    log "FAILED: broker not started after 60 s"
    stop "$dir"
    exit 1
}

restart() {
    local dir=$1
    if [ ! -f "$dir/server.properties" ] || [ ! -f "$dir/bootstrap" ]; then
        log "FAILED: $dir holds no broker started by this script"
        exit 1
    fi
    fetch
    stop "$dir"
    launch "$dir"
}

stop() {
    local dir=$1 pid
    [ -f "$dir/broker.pid" ] || return 0
    pid=$(cat "$dir/broker.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/broker.pid"
    log "broker stopped"
}

case "${1:-}" in
fetch) fetch ;;
start) start "${2:?usage: $0 start DIR}" ;;
stop) stop "${2:?usage: $0 stop DIR}" ;;
restart) restart "${2:?usage: $0 restart DIR}" ;;
*)
    echo "usage: $0 fetch | start DIR | stop DIR | restart DIR" >&2
    exit 2
    ;;
esac
