#!/usr/bin/env bash
# bench_sink.sh - `cohortgate sink`: rows/s from a record topic into PostgreSQL OMOP tables, and
# a plain COPY of the same rows into the same table shape in the same run, as the ceiling.
#
# BENCH_ROWS measurement upserts (default 200000) of 2000 persons on a 3-partition topic (made
# by cg_sinkgen, which also writes the same rows as COPY text with the integer ids the id map
# would give). Then:
#   copy: psql's \copy of that file into a fresh schema made by `sink --init` (one COPY, one
#         transaction, no id map, no staging, no conflict handling);
#   sink: `cohortgate sink` into another fresh schema, from its start until the database holds
#         every offset (wall, including the group join), and from its first committed
#         transaction to its last (steady);
#   connect: Kafka Connect standalone with Debezium's JDBC sink connector into a third fresh
#         schema, from the same rows on a topic of their own in Connect's JSON with a schema
#         (ids already integers: Connect has no id map), timed like the sink by polling the
#         table's row count; upsert mode, at-least-once as Connect's sinks are; polls and
#         batches of BENCH_TXN records, pgjdbc's reWriteBatchedInserts (a third more rows/s
#         here), BENCH_CONNECT_TASKS tasks (default 3, one per partition: a tenth more than
#         one). Its jars come with Maven (tests/bench/connect/connect-peer.sh fetch);
#         BENCH_CONNECT=0 skips it, and where they cannot be fetched the row says why;
# and prints rows/s, the sink's steady rate as a percentage of the COPY's and as a ratio to
# Connect's, and the sink's peak RSS. Uses the broker and server of COHORTGATE_TEST_BOOTSTRAP /
# COHORTGATE_TEST_PG when set, else starts both (tests/scripts/kafka-broker.sh, postgres.sh) and
# stops them on exit. On a shared machine the figures move with the other load: the load average
# is printed.
#
# BENCH_SECONDS=N (the long run, for "peak RSS flat"): instead of the above, new measurement
# rows are offered for N seconds at BENCH_RATE rows/s (default 20000, in one-second chunks of
# cg_sinkgen) while one sink loads them; its RSS (VmRSS) is printed after its first commit, at
# N/2 and at N seconds, then its peak (VmHWM) once it has caught up, with the rows/s it kept.
#
# BENCH_COPY_FORMAT=text runs the sink with pg.copy_format "text" (default "binary"), for an
# A/B of the direct path's COPY formats on one build.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$here/build-bench}
rows=${BENCH_ROWS:-200000}
txn=${BENCH_TXN:-20000}

# a Release build of its own, configured once (BENCH_BUILD_DIR may name an existing one)
[ -f "$build/CMakeCache.txt" ] || cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target cohortgate cg_sinkgen -j2 >/dev/null
cg=$build/gateway/cohortgate
gen=$build/tests/bench/cg_sinkgen

tmp=$(mktemp -d)
chmod 755 "$tmp" # the postgres user runs the server it starts below
started_pg= started_kafka=
cleanup() {
    [ -n "$started_kafka" ] && bash "$here/tests/scripts/kafka-broker.sh" stop "$tmp/kafka" || true
    [ -n "$started_pg" ] && bash "$here/tests/scripts/postgres.sh" stop "$tmp/pg" || true
    rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "${COHORTGATE_TEST_PG:-}" ]; then
    mkdir -p "$tmp/pg"
    eval "$(bash "$here/tests/scripts/postgres.sh" start "$tmp/pg")"
    started_pg=1
fi
if [ -z "${COHORTGATE_TEST_BOOTSTRAP:-}" ]; then
    mkdir -p "$tmp/kafka"
    eval "$(bash "$here/tests/scripts/kafka-broker.sh" start "$tmp/kafka")"
    started_kafka=1
fi
export COHORTGATE_TEST_PG
psql() { command psql -qAtX "$COHORTGATE_TEST_PG" "$@"; }
# The progress polls go through one psql session kept open (a coprocess), not a psql per poll:
# starting psql and a server backend twenty times a second took about a quarter of this 2-core
# machine's CPU (perf, by command) from the sink being measured, and none from the plain COPY.
# ask SQL: its one-line answer in $ANS. Called in this shell, never in $(...): a subshell does not
# have the coprocess's pipes.
coproc POLL { command psql -qAtX "$COHORTGATE_TEST_PG" 2>&1; }
ask() {
    printf '%s;\n' "$1" >&"${POLL[1]}"
    IFS= read -r -t 30 ANS <&"${POLL[0]}" || { echo "bench_sink: the polling psql did not answer"; exit 1; }
}
now() { echo "$EPOCHREALTIME"; }
if [ -n "${BENCH_SECONDS:-}" ]; then
    echo "bench_sink: ${BENCH_SECONDS} s at ${BENCH_RATE:-20000} rows/s, transactions of $txn; $(nproc) CPU(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
else
    echo "bench_sink: $rows rows, transactions of $txn; $(nproc) CPU(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
fi

id=$$-$(date +%s)
topic=bench-sink-$id
config() { # config SCHEMA FILE
    cat >"$2" <<JSON
{"group_id": "bench-sink-$id-$1", "inputs": [{"topic": "$topic"}], "output": {"sink": "pg"},
 "delivery": {"transaction_max_messages": $txn, "commit_interval_ms": 1000},
 "kafka": {"bootstrap.servers": "$COHORTGATE_TEST_BOOTSTRAP"},
 "pg": {"conninfo_env": "COHORTGATE_TEST_PG", "schema": "$1", "copy_format": "${BENCH_COPY_FORMAT:-binary}"},
 "metrics": {"listen": "off"}, "log": {"level": "warn"}}
JSON
}
if [ -n "${BENCH_SECONDS:-}" ]; then
    secs=$BENCH_SECONDS rate=${BENCH_RATE:-20000}
    long_schema=bench_long_${id//-/_}
    config "$long_schema" "$tmp/long.json"
    "$cg" sink --init -c "$tmp/long.json" >/dev/null
    # the topic made (and the group's start) before the sink subscribes
    "$gen" "$COHORTGATE_TEST_BOOTSTRAP" "$topic" "$rate" 2000 /dev/null 0 2>/dev/null ||
        { echo "bench_sink: producing the input failed"; exit 1; }
    "$cg" sink -c "$tmp/long.json" --idle-exit 5000 2>"$tmp/sink.log" &
    pid=$!
    rss() { awk -v k="$1:" '$1 == k {printf "%d MB", $2 / 1024}' "/proc/$pid/status"; }
    committed() { ask "SELECT coalesce(sum(next_offset), 0) FROM $long_schema.cg_offsets"; }
    until committed && [ "$ANS" -gt 0 ]; do
        kill -0 "$pid" 2>/dev/null || { echo "bench_sink: the sink stopped:"; tail -5 "$tmp/sink.log"; exit 1; }
        sleep 0.1
    done
    echo "offering $rate rows/s for $secs s; sink RSS after its first commit: $(rss VmRSS)"
    t0=$(now)
    for ((s = 1; s < secs; s++)); do
        "$gen" "$COHORTGATE_TEST_BOOTSTRAP" "$topic" "$rate" 2000 /dev/null $((s * rate)) 2>/dev/null
        [ "$s" -eq $((secs / 2)) ] && committed && echo "at $s s: sink RSS $(rss VmRSS), $ANS rows committed, load $(cut -d' ' -f1-3 /proc/loadavg)"
        kill -0 "$pid" 2>/dev/null || { echo "bench_sink: the sink stopped:"; tail -5 "$tmp/sink.log"; exit 1; }
        wait_s=$(echo "$t0 + $s + 1 - $(now)" | bc -l)
        [ "${wait_s:0:1}" != "-" ] && sleep "$wait_s"
    done
    total=$((secs * rate))
    committed
    echo "at $secs s: sink RSS $(rss VmRSS), $ANS of $total rows committed, load $(cut -d' ' -f1-3 /proc/loadavg)"
    until committed && [ "$ANS" -ge "$total" ]; do
        kill -0 "$pid" 2>/dev/null || { echo "bench_sink: the sink stopped:"; tail -5 "$tmp/sink.log"; exit 1; }
        sleep 0.2
    done
    t1=$(now)
    echo "caught up after $(printf %.1f "$(echo "$t1 - $t0" | bc -l)") s ($(printf %.0f "$(echo "($total - $rate) / ($t1 - $t0)" | bc -l)") rows/s kept); sink peak RSS $(rss VmHWM)"
    [ "$(psql -c "SELECT count(*) FROM $long_schema.measurement")" = "$total" ]
    kill -TERM "$pid"
    wait "$pid" || true
    psql -c "DROP SCHEMA $long_schema CASCADE" 2>/dev/null || true
    exit 0
fi

"$gen" "$COHORTGATE_TEST_BOOTSTRAP" "$topic" "$rows" 2000 "$tmp/rows.copy" 2>/dev/null ||
    { echo "bench_sink: producing the input failed (does the broker create topics?)"; exit 1; }
connect_why=
if [ "${BENCH_CONNECT:-1}" = 0 ]; then
    connect_why="skipped (BENCH_CONNECT=0)"
elif ! bash "$here/tests/bench/connect/connect-peer.sh" fetch 2>"$tmp/connect-fetch.log"; then
    connect_why="not run: $(tail -1 "$tmp/connect-fetch.log")"
else
    "$gen" --connect "$COHORTGATE_TEST_BOOTSTRAP" "$topic-connect" "$rows" 2000 /dev/null 2>/dev/null ||
        { echo "bench_sink: producing Connect's input failed"; exit 1; }
fi

# plain COPY into the same table shape
copy_schema=bench_copy_${id//-/_}
config "$copy_schema" "$tmp/copy.json"
"$cg" sink --init -c "$tmp/copy.json" >/dev/null
t0=$(now)
psql -c "\\copy $copy_schema.measurement (measurement_id, person_id, measurement_concept_id, measurement_date, measurement_datetime, measurement_type_concept_id, value_as_number, unit_concept_id, measurement_source_value, unit_source_value) FROM '$tmp/rows.copy'"
t1=$(now)
copy_s=$(echo "$t1 - $t0" | bc -l)
[ "$(psql -c "SELECT count(*) FROM $copy_schema.measurement")" = "$rows" ]

# the sink
sink_schema=bench_sink_${id//-/_}
config "$sink_schema" "$tmp/sink.json"
"$cg" sink --init -c "$tmp/sink.json" >/dev/null
committed() { ask "SELECT coalesce(sum(next_offset), 0) FROM $sink_schema.cg_offsets"; }
t0=$(now)
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f %M -o "$tmp/rss" "$cg" sink -c "$tmp/sink.json" --idle-exit 1000 2>"$tmp/sink.log" &
else
    "$cg" sink -c "$tmp/sink.json" --idle-exit 1000 2>"$tmp/sink.log" &
fi
pid=$!
first=
while :; do
    committed
    c=$ANS
    if [ -z "$first" ] && [ "$c" -gt 0 ]; then first=$(now) first_rows=$c; fi
    [ "$c" -ge "$rows" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "bench_sink: the sink stopped early:"; tail -5 "$tmp/sink.log"; exit 1; }
    sleep 0.05
done
t1=$(now)
wait "$pid"
[ "$(psql -c "SELECT count(*) FROM $sink_schema.measurement")" = "$rows" ]
[ "$(psql -c "SELECT count(*) FROM $sink_schema.cg_rejects")" = 0 ]
wall_s=$(echo "$t1 - $t0" | bc -l)
steady_rows=$((rows - first_rows))
steady_s=$(echo "$t1 - $first" | bc -l)

# Kafka Connect with Debezium's JDBC sink, on the same rows
if [ -z "$connect_why" ]; then
    connect_schema=bench_connect_${id//-/_}
    config "$connect_schema" "$tmp/connect.json"
    "$cg" sink --init -c "$tmp/connect.json" >/dev/null
    pg_port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$COHORTGATE_TEST_PG")
    pg_user=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' <<<"$COHORTGATE_TEST_PG")
    pg_db=$(sed -n 's/.*dbname=\([^ ]*\).*/\1/p' <<<"$COHORTGATE_TEST_PG")
    cat >"$tmp/worker.properties" <<PROPS
bootstrap.servers=$COHORTGATE_TEST_BOOTSTRAP
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename=$tmp/connect.offsets
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:0
consumer.max.poll.records=$txn
PROPS
    cat >"$tmp/connector.properties" <<PROPS
name=bench-connect-$id
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=${BENCH_CONNECT_TASKS:-3}
topics=$topic-connect
connection.url=jdbc:postgresql://127.0.0.1:$pg_port/${pg_db:-postgres}?reWriteBatchedInserts=true
connection.username=$pg_user
insert.mode=upsert
primary.key.mode=record_value
primary.key.fields=measurement_id
schema.evolution=none
collection.name.format=$connect_schema.measurement
batch.size=$txn
use.time.zone=UTC
PROPS
    counted() { ask "SELECT count(*) FROM $connect_schema.measurement"; }
    t0=$(now)
    bash "$here/tests/bench/connect/connect-peer.sh" run "$tmp/worker.properties" \
        "$tmp/connector.properties" >"$tmp/connect.log" 2>&1 &
    cpid=$!
    cfirst=
    while :; do
        counted
        c=$ANS
        if [ -z "$cfirst" ] && [ "$c" -gt 0 ]; then cfirst=$(now) cfirst_rows=$c; fi
        [ "$c" -ge "$rows" ] && break
        if ! kill -0 "$cpid" 2>/dev/null || [ "$(echo "$(now) - $t0 > 600" | bc)" = 1 ]; then
            connect_why="failed after $c of $rows rows: $(grep -m1 -E 'ERROR|Exception' "$tmp/connect.log" | cut -c1-160)"
            break
        fi
        sleep 0.25
    done
    t1=$(now)
    kill -TERM "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    if [ -z "$connect_why" ]; then
        cwall_s=$(echo "$t1 - $t0" | bc -l)
        csteady_rows=$((rows - cfirst_rows))
        csteady_s=$(echo "$t1 - $cfirst" | bc -l)
        # the same rows as the COPY's
        [ "$(psql -c "SELECT count(*) FROM (SELECT * FROM $copy_schema.measurement EXCEPT SELECT * FROM $connect_schema.measurement) d")" = 0 ]
    fi
fi

printf '%-34s %12s %10s\n' "" "seconds" "rows/s"
printf '%-34s %12.2f %10.0f\n' "plain COPY (one \\copy)" "$copy_s" "$(echo "$rows / $copy_s" | bc -l)"
printf '%-34s %12.2f %10.0f\n' "cohortgate sink, wall" "$wall_s" "$(echo "$rows / $wall_s" | bc -l)"
if [ "$steady_rows" -gt 0 ]; then
    rate=$(echo "$steady_rows / $steady_s" | bc -l)
    printf '%-34s %12.2f %10.0f\n' "cohortgate sink, steady ($steady_rows rows)" "$steady_s" "$rate"
    printf 'sink steady rate / plain COPY rate: %.0f %%\n' "$(echo "100 * $rate * $copy_s / $rows" | bc -l)"
else
    echo "(one transaction held every row: no steady figure; lower BENCH_TXN)"
fi
if [ -n "$connect_why" ]; then
    echo "Kafka Connect + Debezium JDBC sink: $connect_why"
else
    printf '%-34s %12.2f %10.0f\n' "Kafka Connect + JDBC sink, wall" "$cwall_s" "$(echo "$rows / $cwall_s" | bc -l)"
    if [ "$csteady_rows" -gt 0 ]; then
        connect_rate=$(echo "$csteady_rows / $csteady_s" | bc -l)
        printf '%-34s %12.2f %10.0f\n' "Kafka Connect, steady ($csteady_rows rows)" "$csteady_s" "$connect_rate"
        [ "$steady_rows" -gt 0 ] && printf 'sink steady rate / Kafka Connect steady rate: %.2f\n' "$(echo "$rate / $connect_rate" | bc -l)"
    fi
fi
[ -f "$tmp/rss" ] && echo "sink peak RSS: $(($(tail -1 "$tmp/rss") / 1024)) MB"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
psql -c "DROP SCHEMA $copy_schema CASCADE; DROP SCHEMA $sink_schema CASCADE" 2>/dev/null || true
if [ -n "${connect_schema:-}" ]; then
    psql -c "DROP SCHEMA $connect_schema CASCADE" 2>/dev/null || true
fi
