#!/usr/bin/env bash
# bench_gateway.sh - `cohortgate run` end to end against a real Apache Kafka broker on this
# machine: throughput, latency and memory, per delivery semantics and worker count.
#
# Starts its own broker (tests/scripts/kafka-broker.sh, stopped on every exit), builds cohortgate
# and the load generator tests/bench/cg_loadgen, and for each semantics x workers row runs:
#
#   flat out   MESSAGES HL7 v2 ORU/ADT messages are preloaded to a fresh raw topic, then the
#              gateway starts and consumes them as fast as it can. msgs/s = messages over the span
#              from the first to the last output record timestamp (the gateway's start-up and
#              group join are outside it). Latency is not reported: preloaded inputs wait in the
#              topic by design.
#   rate R     the gateway runs idle, then cg_loadgen streams RATE messages/s for DURATION seconds
#              (paced every millisecond) and the gateway keeps up or not. msgs/s = inputs over the
#              output span; p50/p99/max latency per input = its last output record's timestamp
#              minus its own (CreateTime on both, as read back by a read_committed consumer),
#              over the inputs after the first WARMUP seconds; the warm-up's own p99 (the first
#              records of each output topic wait for the topic's creation, and, exactly-once,
#              for the first transactions) is a column of its own.
#
# and prints one table row each, with the gateway's RSS when its partitions were assigned
# (start), just before SIGTERM (end), and its peak (VmHWM), all from /proc/PID/status.
# Exactly-once rows are skipped with a note while the gateway does not accept
# `delivery.semantics: exactly-once`, 2-worker rows while it has no `workers` setting. Under
# exactly-once, record timestamps are set when the record is produced; a read_committed
# consumer sees it when its transaction commits (delivery.commit_interval_ms, default 500 ms, at
# most later), which the latency columns do not include.
#
# The gateway's config is the shipped specs and cohorts with a random pseudonym key, every
# other setting at its default (log.level info logs only life-cycle events; the metrics endpoint
# goes on a free port).
# The input topic has PARTITIONS partitions (default 4). BENCH_DELIVERY adds members to the
# "delivery" object, e.g. BENCH_DELIVERY='"transaction_max_messages": 5000' to compare settings.
#
# usage: tests/bench/bench_gateway.sh [options]
#   --duration S        seconds the rate phase streams (default 30; 600 for the 10-minute RSS run)
#   --rate R            messages/s of the rate phase (default 5000)
#   --messages N        messages preloaded for the flat-out phase (default 200000)
#   --flat-out-only     only the flat-out phase
#   --rate-only         only the rate phase (e.g. --rate-only --rate 5000 --duration 600)
#   --semantics "LIST"  default "at-least-once exactly-once"
#   --workers "LIST"    default "1 2"
#   --partitions P      input partitions (default 4)
#   --warmup S          whole seconds at the start of the rate phase kept out of p50/p99/max
#                       (default 5; 0 when the run is not longer than twice that)
# BENCH_BUILD_DIR: the build folder (default build-bench, configured Release with the tests);
# BENCH_RSS_EVERY: seconds between RSS samples printed for rate runs of 120 s or more (default 60).
# Example, the 10-minute flat-RSS run:
#   tests/bench/bench_gateway.sh --rate-only --duration 600 --semantics at-least-once --workers 1
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$root/build-bench}
duration=30 rate=5000 messages=200000 partitions=4 warmup=5
do_flat=1 do_rate=1
semantics_list="at-least-once exactly-once" workers_list="1 2"
rss_every=${BENCH_RSS_EVERY:-60}

while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2 && shift ;;
    --rate) rate=$2 && shift ;;
    --messages) messages=$2 && shift ;;
    --flat-out-only) do_rate=0 ;;
    --rate-only) do_flat=0 ;;
    --semantics) semantics_list=$2 && shift ;;
    --workers) workers_list=$2 && shift ;;
    --partitions) partitions=$2 && shift ;;
    --warmup) warmup=$2 && shift ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "bench_gateway: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

log() { printf 'bench_gateway: %s\n' "$*" >&2; }
# a warm-up longer than half the run leaves too little to measure: none then
[ "$duration" -gt "$((2 * warmup))" ] || warmup=0

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCG_BUILD_TESTS=ON >/dev/null
fi
cmake --build "$build" --target cohortgate cg_loadgen -j2 >/dev/null
cg=$build/gateway/cohortgate
lg=$build/tests/bench/cg_loadgen
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
tmp=$(mktemp -d /tmp/cg-bench.XXXXXX)
gw_pid= sampler_pid=
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
        kill -KILL "$gw_pid" 2>/dev/null || true
    fi
    bash "$root/tests/scripts/kafka-broker.sh" stop "$tmp/broker" || true
    rm -rf "$tmp"
}
trap cleanup EXIT

started=$(bash "$root/tests/scripts/kafka-broker.sh" start "$tmp/broker") # exits when it fails
eval "$started"
boot=$COHORTGATE_TEST_BOOTSTRAP
head -c 32 /dev/urandom | base64 >"$tmp/key"
"$cg" check --reference >"$tmp/reference.md"
knows() { grep -qF "| \`$1\` |" "$tmp/reference.md"; }

# write_config NAME SEMANTICS WORKERS: the config of one run in $tmp/NAME.json
write_config() {
    local name=$1 sem=$2 workers=$3 extra=""
    # workers: set when the gateway has the setting; asked for anyway when not 1, so that the
    # check refuses it and the row says why
    if knows workers || [ "$workers" != 1 ]; then
        extra="$extra\"workers\": $workers, "
    fi
    if knows metrics.listen; then
        extra="$extra\"metrics\": {\"listen\": \"127.0.0.1:0\"}, "
    fi
    cat >"$tmp/$name.json" <<JSON
{"group_id": "$name", "inputs": [{"topic": "$name.raw"}],
 "output": {"topic": "$name.records", "dead_letter_topic": "$name.dlq"},
 "mapping": {"specs": "$root/specs"}, "pseudonym": {"key_file": "$tmp/key"},
 "cohorts": {"path": "$root/specs/cohorts", "topic": "$name.cohort.{cohort}.{table}"},
 "delivery": {"semantics": "$sem"${BENCH_DELIVERY:+, $BENCH_DELIVERY}}, $extra
 "log": {"level": "info"}, "kafka": {"bootstrap.servers": "$boot"}}
JSON
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# start_gateway NAME: runs the gateway and waits until it holds its partitions; sets gw_pid and
# rss0 (VmRSS then, in kB)
start_gateway() {
    local name=$1 i
    "$cg" run -c "$tmp/$name.json" >"$tmp/$name.out" 2>"$tmp/$name.log" &
    gw_pid=$!
    for i in $(seq 1 1200); do
        grep -q '"partition.assigned"' "$tmp/$name.log" && break
        if ! kill -0 "$gw_pid" 2>/dev/null; then
            cat "$tmp/$name.log" >&2
            log "FAILED: the gateway exited during start-up"
            exit 1
        fi
        sleep 0.05
    done
    rss0=$(status_kb "$gw_pid" VmRSS)
}

# stop_gateway NAME: SIGTERM, waits for exit 0; sets rss1, hwm
stop_gateway() {
    local name=$1 i rc=0
    rss1=$(status_kb "$gw_pid" VmRSS)
    hwm=$(status_kb "$gw_pid" VmHWM)
    kill -TERM "$gw_pid"
    wait "$gw_pid" || rc=$?
    gw_pid=
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
    if [ "$rc" != 0 ]; then
        tail -20 "$tmp/$name.log" >&2
        log "FAILED: the gateway exited $rc after SIGTERM"
        exit 1
    fi
}

get() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

rows=()
fmt='| %-13s | %7s | %-26s | %9s | %6s | %6s | %6s | %11s | %9s | %9s | %9s |'
row() { rows+=("$(printf "$fmt" "$@")"); }
notes=()

for sem in $semantics_list; do
    for workers in $workers_list; do
        name=cg-bench-$sem-w$workers-$$
        write_config "$name-probe" "$sem" "$workers"
        if ! err=$("$cg" check -c "$tmp/$name-probe.json" 2>&1 >/dev/null); then
            row "$sem" "$workers" "skipped" "-" "-" "-" "-" "-" "-" "-" "-"
            notes+=("$sem, $workers worker(s): skipped, the gateway refuses the config: ${err##*error: }")
            continue
        fi
        if [ "$do_flat" = 1 ]; then
            n=$name-flat
            write_config "$n" "$sem" "$workers"
            log "$sem, $workers worker(s): preloading $messages messages"
            "$lg" produce -b "$boot" -t "$n.raw" -p "$partitions" -n "$messages" >"$tmp/$n.produce"
            log "$sem, $workers worker(s): consuming flat out"
            start_gateway "$n"
            "$lg" wait -b "$boot" -g "$n" -t "$n.raw" -n "$messages" >"$tmp/$n.wait"
            stop_gateway "$n"
            s=$("$lg" stats -b "$boot" -t "$n.raw" -x "$n.")
            [ "$(get matched "$s")" = "$messages" ] || notes+=("$sem/$workers flat out: only $(get matched "$s") of $messages inputs have output: $s")
            row "$sem" "$workers" "flat out, $messages preloaded" "$(get rate "$s")" "-" "-" "-" "-" \
                "$(mb "$rss0")" "$(mb "$rss1")" "$(mb "$hwm")"
            notes+=("$sem/$workers flat out: $(get records "$s") records in $(get span_s "$s") s of output timestamps; $(cat "$tmp/$n.wait")")
        fi
        if [ "$do_rate" = 1 ]; then
            n=$name-rate
            write_config "$n" "$sem" "$workers"
            "$lg" create -b "$boot" -t "$n.raw" -p "$partitions"
            start_gateway "$n"
            (
                t=0
                while kill -0 "$gw_pid" 2>/dev/null; do
                    echo "$t $(status_kb "$gw_pid" VmRSS)"
                    sleep "$rss_every"
                    t=$((t + rss_every))
                done
            ) >"$tmp/$n.rss" &
            sampler_pid=$!
            log "$sem, $workers worker(s): $rate messages/s for $duration s"
            p=$("$lg" produce -b "$boot" -t "$n.raw" -r "$rate" -d "$duration")
            "$lg" wait -b "$boot" -g "$n" -t "$n.raw" -n "$(get produced "$p")" >/dev/null
            stop_gateway "$n"
            s=$("$lg" stats -b "$boot" -t "$n.raw" -x "$n." --warmup "$warmup")
            row "$sem" "$workers" "$rate/s for $duration s" "$(get rate "$s")" "$(get p50_ms "$s")" \
                "$(get p99_ms "$s")" "$(get max_ms "$s")" "$(get warmup_p99_ms "$s")" \
                "$(mb "$rss0")" "$(mb "$rss1")" "$(mb "$hwm")"
            notes+=("$sem/$workers at $rate/s: loadgen $p; $(get matched "$s") of $(get inputs "$s") inputs have output, $(get records "$s") records")
            if [ "$duration" -ge 120 ]; then
                notes+=("$sem/$workers at $rate/s: RSS (MB) every $rss_every s: $(awk '{ printf "%.1f ", $2 / 1024 }' "$tmp/$n.rss")")
            fi
        fi
    done
done

echo
echo "cohortgate gateway benchmark: $(nproc) CPU(s), $(uname -m), build $build_type, broker Apache Kafka on 127.0.0.1 (same machine), $partitions input partitions"
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf "$fmt\n" semantics workers load "msgs/s" "p50 ms" "p99 ms" "max ms" "warm-up p99" "RSS start" "RSS end" "peak RSS"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' --------------- --------- ---------------------------- ----------- -------- -------- -------- ------------- ----------- ----------- -----------
printf '%s\n' "${rows[@]}"
echo
echo "(latency: after the first $warmup s of the rate phase; warm-up p99: of those first $warmup s."
echo " RSS in MB from /proc/PID/status: VmRSS once the gateway holds its partitions, VmRSS before SIGTERM, VmHWM)"
for n in "${notes[@]}"; do echo "- $n"; done
