#!/usr/bin/env bash
# bench_cohort.sh - patient-level cohorts kept by `cohortgate sink` (pg.cohorts, issue #15):
# the latency from a record produced to its enter event visible to a read_committed consumer at
# a fixed rate, and the time of one fixed batch against a small and a large database.
#
# One schema (`sink --init`), one record topic (keyed by person; 3 partitions on the test
# broker), the shipped definitions (specs/cohorts/circe) and an events topic; every record goes
# through the sink, made by tests/bench/cg_cohortload. In order:
#   base:    BENCH_BASE rows (default 100000): persons, each a person record and 9 HbA1c 5.5 %
#            measurements (no cohort), loaded by the sink (transactions of 20,000);
#   batch:   against that base (ANALYZEd first), a warm-up batch and then BENCH_BATCH_ROUNDS
#            (default 5) batches of BENCH_BATCH records (default 2000) with
#            BENCH_BATCH_TRIGGERS (default 100) new persons entering t2dm (a person record and
#            an HbA1c 7.2 %), the rest new HbA1c 5.5 % rows of existing persons; each batch is
#            one transaction of the sink, timed by its cohortgate_sink_batch_seconds (COPY,
#            upserts, the cohort evaluation of the changed persons, offsets, COMMIT);
#   rate:    BENCH_RATE records/s (default 5000) for BENCH_DURATION s (default 30), paced every
#            millisecond: fillers of existing persons and, in every BENCH_TRIGGER_EVERY records
#            (default 100, so 2 % of the records), a trigger (a new person, then their HbA1c
#            7.2 %). A read_committed consumer of the events topic matches every "enter" of
#            definition 1 to its trigger: p50/p99/max from the trigger's produce to the event's
#            consumption, after a BENCH_WARMUP s warm-up (default 5). Sink settings:
#            delivery.commit_interval_ms BENCH_COMMIT_MS (default 250), transactions of at most
#            BENCH_TXN records (default 5000). After the load every trigger must enter (a
#            sink behind is waited for until no enter event has come for BENCH_WAIT s, default
#            60);
#   grow:    the base grown by the sink to BENCH_BIG rows (default 1000000) in the same schema;
#   batch:   the same batches again (same shape, same filler persons, new trigger persons);
# then the median batch time at each size and their ratio (target: within 2x), the latency
# (target: p99 at most 2 s at 5,000 records/s) and the sink's peak RSS (VmHWM) in the rate
# phase and the highest of every phase. Fails (exit 1) when an enter event is missing, the sink dies, a batch
# is split or a row is rejected. ~6-8 min on 2 cores (most of it growing the base);
# --quick: 10,000 and 50,000 rows, 1,000 records/s for 10 s, batches of 1,000 (~1 min).
# Uses the broker and server of COHORTGATE_TEST_BOOTSTRAP / COHORTGATE_TEST_PG when set, else
# starts both (tests/scripts/kafka-broker.sh, postgres.sh) and stops them on exit. On a shared
# machine the figures move with the other load: the load average is printed.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$here/build-bench}
quick=
for a in "$@"; do
    case $a in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_cohort: unknown argument $a (--quick, --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$quick" ]; then
    d_base=10000 d_big=50000 d_rate=1000 d_duration=10 d_warmup=2 d_batch=1000 d_btrig=50 d_rounds=3
else
    d_base=100000 d_big=1000000 d_rate=5000 d_duration=30 d_warmup=5 d_batch=2000 d_btrig=100 d_rounds=5
fi
base=${BENCH_BASE:-$d_base}
big=${BENCH_BIG:-$d_big}
rate=${BENCH_RATE:-$d_rate}
duration=${BENCH_DURATION:-$d_duration}
warmup=${BENCH_WARMUP:-$d_warmup}
every=${BENCH_TRIGGER_EVERY:-100}
batch=${BENCH_BATCH:-$d_batch}
btrig=${BENCH_BATCH_TRIGGERS:-$d_btrig}
rounds=${BENCH_BATCH_ROUNDS:-$d_rounds}
commit_ms=${BENCH_COMMIT_MS:-250}
txn=${BENCH_TXN:-5000}
wait_s=${BENCH_WAIT:-60}
per=10 # rows of a base person: the person and 9 measurements
persons=$((base / per))
[ "$persons" -ge 1 ] && [ "$big" -gt "$base" ] ||
    { echo "bench_cohort: BENCH_BASE must be at least $per and BENCH_BIG above it" >&2; exit 2; }

# a Release build of its own, configured once (BENCH_BUILD_DIR may name an existing one)
[ -f "$build/CMakeCache.txt" ] || cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target cohortgate cg_cohortload -j2 >/dev/null
cg=$build/gateway/cohortgate
load=$build/tests/bench/cg_cohortload

tmp=$(mktemp -d)
chmod 755 "$tmp" # the postgres user runs the server it starts below
started_pg= started_kafka= sink_pid= schema=
cleanup() {
    if [ -n "$sink_pid" ] && kill -0 "$sink_pid" 2>/dev/null; then
        kill -TERM "$sink_pid" 2>/dev/null || true
        wait "$sink_pid" 2>/dev/null || true
    fi
    [ -n "$schema" ] && command psql -qAtX "$COHORTGATE_TEST_PG" \
        -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
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
psql() { command psql -qAtX -v ON_ERROR_STOP=1 "$COHORTGATE_TEST_PG" "$@"; }
now() { date +%s.%N; }
sink_log=
fail() { # the temporary directory goes on exit: the sink's log is shown here
    if [ -n "$sink_log" ] && [ -f "$sink_log" ]; then
        echo "bench_cohort: the end of the sink's log:" >&2
        tail -8 "$sink_log" >&2
    fi
    echo "bench_cohort: FAILED: $*" >&2
    exit 1
}
echo "bench_cohort: base $base rows, big $big, $rate records/s for $duration s (a trigger in" \
    "every $every), batches of $batch with $btrig triggers; $(nproc) CPU(s)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"

id=$$-$(date +%s)
topic=bench-cohort-$id
events=bench-cohort-$id.events
schema=bench_cohort_${id//-/_}
bootstrap=$COHORTGATE_TEST_BOOTSTRAP
config() { # config FILE TXN_MAX COMMIT_MS
    cat >"$1" <<JSON
{"group_id": "bench-cohort-$id", "inputs": [{"topic": "$topic"}], "output": {"sink": "pg"},
 "delivery": {"transaction_max_messages": $2, "commit_interval_ms": $3},
 "kafka": {"bootstrap.servers": "$bootstrap"},
 "pg": {"conninfo_env": "COHORTGATE_TEST_PG", "schema": "$schema",
        "cohorts": {"definitions": "$here/specs/cohorts/circe", "topic": "$events"}},
 "metrics": {"listen": "127.0.0.1:0"}, "log": {"level": "info"}}
JSON
}
config "$tmp/load.json" 20000 1000
config "$tmp/batch.json" "$batch" 3000
config "$tmp/rate.json" "$txn" "$commit_ms"
"$cg" sink --init -c "$tmp/load.json" >"$tmp/init.log" 2>&1 ||
    { cat "$tmp/init.log"; fail "sink --init"; }

produced=0 peak_hwm=0 peak_where=
committed() { psql -c "SELECT coalesce(sum(next_offset), 0) FROM $schema.cg_offsets"; }
rows() { psql -c "SELECT (SELECT count(*) FROM $schema.person) + (SELECT count(*) FROM $schema.measurement)"; }
sink_alive() {
    kill -0 "$sink_pid" 2>/dev/null && return 0
    fail "the sink died"
}
start_sink() { # start_sink LABEL CONFIG: waits for its partitions and its /metrics
    sink_log=$tmp/sink.$1.log
    : >"$sink_log"
    "$cg" sink -c "$2" 2>"$sink_log" &
    sink_pid=$!
    local until=$(($(date +%s) + 60))
    until grep -q '"partition.assigned"' "$sink_log" && grep -q 'metrics.listening' "$sink_log"; do
        sink_alive
        [ "$(date +%s)" -lt "$until" ] || fail "the sink got no partition within 60 s"
        sleep 0.1
    done
    metrics_url=$(grep -o 'http://[^ "]*/metrics' "$sink_log" | head -1)
    sleep 1 # past the assignment, at the database's offsets
}
stop_sink() {
    sink_alive
    hwm=$(awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$sink_pid/status")
    if [ "$hwm" -gt "$peak_hwm" ]; then peak_hwm=$hwm peak_where=${sink_log##*/sink.}; fi
    kill -TERM "$sink_pid"
    local rc=0
    wait "$sink_pid" || rc=$?
    sink_pid=
    [ "$rc" = 0 ] || fail "the sink exited $rc on SIGTERM"
}
wait_committed() { # wait_committed TIMEOUT_S: until the database holds every produced record
    local until=$(($(date +%s) + $1))
    while [ "$(committed)" -lt "$produced" ]; do
        sink_alive
        [ "$(date +%s)" -lt "$until" ] ||
            fail "the sink holds $(committed) of $produced records after $1 s"
        sleep 0.05
    done
}
preload() { # preload FIRST PERSONS
    [ "$2" -ge 1 ] || return 0
    local t0 n
    t0=$(now)
    # produced first: the topic then exists when the sink subscribes
    n=$("$load" preload "$bootstrap" "$topic" "$1" "$2" "$per") || fail "producing the base"
    start_sink load "$tmp/load.json"
    produced=$((produced + n))
    wait_committed $((600 + n / 1000))
    stop_sink
    local t1
    t1=$(now)
    printf 'base: %d rows more through the sink in %.0f s (%.0f rows/s, wall from producing)\n' \
        "$n" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$n / ($t1 - $t0)" | bc -l)"
}
batch_seconds() { # the sum and count of cohortgate_sink_batch_seconds
    curl -sf "$metrics_url" | awk '/^cohortgate_sink_batch_seconds_sum / {s = $2}
        /^cohortgate_sink_batch_seconds_count / {c = $2} END {printf "%.6f %d\n", s, c}'
}
tag=0
batches() { # batches LABEL: a warm-up batch, then the timed rounds; sets median_ms
    local r n before after dt dn times=() enters
    psql -c "ANALYZE" >/dev/null # planner statistics as autovacuum would keep them
    start_sink "batch-$1" "$tmp/batch.json"
    local size
    size=$(rows)
    for r in $(seq 0 "$rounds"); do
        tag=$((tag + 1))
        before=$(batch_seconds)
        n=$("$load" batch "$bootstrap" "$topic" "$persons" "$batch" "$btrig" "$tag") ||
            fail "producing batch $tag"
        produced=$((produced + n))
        wait_committed 120
        sleep 0.2 # the histogram is observed just after the commit
        after=$(batch_seconds)
        dt=$(echo "${after% *} - ${before% *}" | bc -l)
        dn=$((${after#* } - ${before#* }))
        [ "$dn" = 1 ] || fail "batch $tag took $dn transactions, not 1"
        enters=$(psql -c "SELECT count(*) FROM $schema.cg_cohort_events WHERE event = 'enter' AND
            cohort_definition_id = 1 AND person_source_value LIKE 'trg-$tag-%'")
        [ "$enters" = "$btrig" ] || fail "batch $tag: $enters enter events of $btrig"
        if [ "$r" = 0 ]; then
            printf '  %s: warm-up batch %.0f ms\n' "$1" "$(echo "$dt * 1000" | bc -l)"
        else
            times+=("$(echo "$dt * 1000" | bc -l)")
            printf '  %s: batch %d against %d rows: %.0f ms\n' "$1" "$r" "$size" "${times[-1]}"
        fi
    done
    stop_sink
    median_ms=$(printf '%s\n' "${times[@]}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
    batch_rows=$size
}

# the small base, its batches, then the rate (the events topic exists by then)
preload 0 "$persons"
batches small
small_ms=$median_ms small_rows=$batch_rows

echo "rate: $rate records/s for $duration s, a trigger in every $every records"
start_sink rate "$tmp/rate.json"
set +e
"$load" rate "$bootstrap" "$topic" "$events" "$persons" "$rate" "$duration" "$every" "$warmup" \
    "$wait_s" "$((tag + 1))" "$sink_pid" | tee "$tmp/rate.out"
rc=${PIPESTATUS[0]}
set -e
tag=$((tag + 1))
[ "$rc" = 0 ] || { sink_alive; fail "enter events missing (cg_cohortload exited $rc)"; }
produced=$((produced + $(awk '/^records / {print $2}' "$tmp/rate.out")))
wait_committed 120
stop_sink
rate_hwm=$hwm
[ "$(psql -c "SELECT count(*) FROM $schema.cg_rejects")" = 0 ] || fail "rows rejected (cg_rejects)"

# the same batches against the big base
now_rows=$(rows)
more=$(((big - now_rows) / per))
preload "$persons" "$more"
batches big
big_ms=$median_ms big_rows=$batch_rows
[ "$(psql -c "SELECT count(*) FROM $schema.cg_rejects")" = 0 ] || fail "rows rejected (cg_rejects)"

echo
echo "batch of $batch records ($btrig enter), median of $rounds, one transaction each:"
printf '  against %9d rows: %6.0f ms\n' "$small_rows" "$small_ms"
printf '  against %9d rows: %6.0f ms\n' "$big_rows" "$big_ms"
ratio=$(echo "$big_ms / $small_ms" | bc -l)
printf '  ratio %.2f (target: at most 2)\n' "$ratio"
echo "at $rate records/s (target: p99 at most 2 s at 5,000 records/s):"
sed 's/^/  /' "$tmp/rate.out"
echo "sink peak RSS (VmHWM): $rate_hwm MB in the rate phase; $peak_hwm MB at most" \
    "(${peak_where%.log}; the base loads in transactions of 20,000)"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
