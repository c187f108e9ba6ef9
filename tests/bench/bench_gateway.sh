#!/usr/bin/env bash
# bench_gateway.sh - `cohortgate run` end to end against a real Apache Kafka broker on this
# machine: throughput, latency and memory, per delivery semantics and worker count.
#
# Starts its own broker (tests/scripts/kafka-broker.sh, stopped on every exit), builds cohortgate,
# the load generator tests/bench/cg_loadgen and the passthrough tests/bench/cg_passthrough, and
# for each semantics x workers row runs:
#
#   flat out   MESSAGES HL7 v2 ORU/ADT messages are preloaded once to a raw topic, then the
#              gateway starts (a fresh group, fresh output topics) and consumes them as fast as it
#              can. msgs/s = messages over the span from the first to the last output record
#              timestamp (the gateway's start-up and group join are outside it), the median of
#              ROUNDS runs. Latency is not reported: preloaded inputs wait in the topic by design.
#   ceiling    the transport ceiling, in the same run: cg_passthrough consumes the same preloaded
#              topic with the gateway's own Kafka clients, settings, commit rule (at-least-once)
#              or transactions (exactly-once), and produces for each input the records the
#              gateway produced for it (same count, topics, keys, headers and sizes; filler
#              values) without decoding or mapping. The records per input (the plan) are read
#              back from the output of one untimed gateway run before the timed ones, which also
#              warms the broker up. Per semantics, ROUNDS passthrough runs alternate with the
#              gateway's (odd rounds gateway first, even rounds passthrough first), msgs/s is
#              measured the same way, and a second table gives the gateway's median as a
#              percentage of the passthrough's median.
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
# BENCH_RELEASE=N (1-3) adds N graded-release subscribers (release_config below), whose records
# count as outputs like the others (not in the passthrough's plan, which is per input: they carry
# no source position), and routes no cohorts
# (the shipped ones stay out: each row's own record goes to the output topic), so that the run
# without policies below can send exactly the same records.
# BENCH_PLAIN=1 with BENCH_RELEASE=N is that run without policies, the one to compare a
# BENCH_RELEASE=N run with for the cost of enforcement (issue #18): the same N subscribers get the
# same rows with no policy work. It has no release section; instead, cohorts made from the N
# policies (plain_cohorts below, from `bench_release --granted`, which compiles the same
# policies): one per subscriber, named after it, that every row of a table its policy releases
# joins, and "records" that every row joins (the release run's output-topic record), with the
# topics NAME.release.{cohort}: each subscriber's records go to the very topic the release run
# sends them to. Every row is then encoded once and produced 1 + N times, as the release run
# produces it; what the release run does more is the policy work: each subscriber's copy
# released (columns dropped and generalized, pseudonyms re-keyed, dates shifted) and encoded
# again, the released records' own headers (subscriber, policy, level in place of the source
# position), their counts and the audit. Equal volume holds while no row is withheld
# by its level (the load generator's messages carry no sensitive codes) and the tables granted
# are the same (the policies above and bench_release's are one list); each run's notes give its
# records and bytes (keys and values) to check it: the counts are the same (the release run's
# audit records are not counted: release_config), and the plain run sends about a fifth more
# bytes (each subscriber's copy is the whole row with its cohorts and source position; a
# released one drops columns and the position), which only favours the release run. The notes
# also give the gateway's CPU seconds per round, steadier than msgs/s on a shared machine.
# BENCH_PLAIN=pair with BENCH_RELEASE=N runs both in one invocation, on one broker: each flat-out
# round runs the gateway with the policies and without (odd rounds with them first), and a table
# gives the two medians of msgs/s and of CPU seconds and their ratios (issue #18's target: the
# release run at 85 % or more of the run without policies).
# BENCH_FANOUT=N (1-8) replaces the shipped cohorts with N cohorts that every row of the clinical
# tables joins, so each row goes out N times with no policy applied (the volume only roughly
# that of BENCH_RELEASE=N-1: prefer BENCH_PLAIN).
#
# usage: tests/bench/bench_gateway.sh [options]
#   --duration S        seconds the rate phase streams (default 30; 600 for the 10-minute RSS run)
#   --rate R            messages/s of the rate phase (default 5000)
#   --messages N        messages preloaded for the flat-out phase (default 200000)
#   --rounds N          flat-out runs per row, and passthrough runs per semantics (default 3; an
#                       even N reports the lower of the two middle runs)
#   --no-ceiling        no passthrough runs (and no untimed plan run)
#   --quick             --messages 50000 --rounds 3 --workers 1 --duration 10 --warmup 2 (~2 min)
#   --flat-out-only     only the flat-out phase
#   --rate-only         only the rate phase (e.g. --rate-only --rate 5000 --duration 600)
#   --semantics "LIST"  default "at-least-once exactly-once"
#   --workers "LIST"    default "1 2"
#   --partitions P      input partitions (default 4)
#   --warmup S          whole seconds at the start of the rate phase kept out of p50/p99/max
#                       (default 5; 0 when the run is not longer than twice that)
# BENCH_PERF=DIR: each gateway and passthrough run is profiled with `perf record -g`
# from the moment it holds its partitions until just before SIGTERM, into DIR/NAME.data (read
# with `perf report -i`); the sampling costs a few percent, so compare profiles, not msgs/s.
# BENCH_BUILD_DIR: the build folder (default build-bench, configured Release with the tests);
# BENCH_RSS_EVERY: seconds between RSS samples printed for rate runs of 120 s or more (default 60).
# Example, the 10-minute flat-RSS run:
#   tests/bench/bench_gateway.sh --rate-only --duration 600 --semantics at-least-once --workers 1
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$root/build-bench}
duration=30 rate=5000 messages=200000 partitions=4 warmup=5 rounds=3
do_flat=1 do_rate=1 do_ceiling=1
semantics_list="at-least-once exactly-once" workers_list="1 2"
rss_every=${BENCH_RSS_EVERY:-60}

while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2 && shift ;;
    --rate) rate=$2 && shift ;;
    --messages) messages=$2 && shift ;;
    --rounds) rounds=$2 && shift ;;
    --no-ceiling) do_ceiling=0 ;;
    --quick) messages=50000 rounds=3 workers_list=1 duration=10 warmup=2 ;;
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
else # refresh: the sources may have changed since it was configured
    cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target cohortgate cg_loadgen cg_passthrough bench_release -j2 >/dev/null
cg=$build/gateway/cohortgate
br=$build/tests/bench/bench_release
lg=$build/tests/bench/cg_loadgen
pt=$build/tests/bench/cg_passthrough
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date +%s)
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

# release_config NAME: BENCH_RELEASE subscribers (at most 3) with topics NAME.release.*, so that
# the output statistics count their records: a sponsor at level 3 with dates to the month, a
# registry at level 5 with free text, a level-4 database with its own date shift. The audit topic
# NAME-audit is outside the NAME. prefix the statistics read: its records are per interval, not
# per input, and the last ones are written at SIGTERM, after the last input's records, so they
# would stretch the span msgs/s is measured over by the time the harness takes to stop the run
# (a second of a 7-second run)
release_config() {
    local subs=(
        "{\"name\": \"sponsor\", \"topic\": \"$1.release.sponsor\", \"agreement\": \"B-1\", \"expires\": \"2999-12-31\", \"max_level\": 3, \"levels\": {\"3\": \"generalize\"}}"
        "{\"name\": \"registry\", \"topic\": \"$1.release.registry\", \"agreement\": \"B-2\", \"expires\": \"2999-12-31\", \"max_level\": 5, \"free_text\": true}"
        "{\"name\": \"disease-db\", \"topic\": \"$1.release.disease-db\", \"agreement\": \"B-3\", \"expires\": \"2999-12-31\", \"max_level\": 4, \"date_shift_days\": 30}")
    local n=${BENCH_RELEASE:-0} list="" i
    [ "$n" -le 3 ] || n=3
    for ((i = 0; i < n; i++)); do
        list="$list${list:+, }${subs[$i]}"
    done
    printf '"release": {"audit_topic": "%s-audit", "subscribers": [%s]}, ' "$1" "$list"
}

# fanout_cohorts: BENCH_FANOUT cohorts in $tmp/fanout that every row with a person_id joins
fanout_cohorts() {
    local n=${BENCH_FANOUT:-0} i t rules=""
    [ "$n" -le 8 ] || n=8
    mkdir -p "$tmp/fanout"
    for t in person observation_period visit_occurrence visit_detail condition_occurrence \
        drug_exposure procedure_occurrence device_exposure measurement observation death note \
        specimen; do
        rules="$rules${rules:+, }{\"table\": \"$t\", \"column\": \"person_id\"}"
    done
    for ((i = 1; i <= n; i++)); do
        printf '{"cohort": "all%d", "version": 1, "match": [%s]}\n' "$i" "$rules" \
            >"$tmp/fanout/all$i.json"
    done
}

# plain_cohorts: BENCH_PLAIN's cohorts in $tmp/plain (see the header): per subscriber of the
# first BENCH_RELEASE policies, every row of the tables it is granted; "records", every row
plain_cohorts() {
    local n=${BENCH_RELEASE:-0} sub rules all=""
    [ "$n" -le 3 ] || n=3
    mkdir -p "$tmp/plain"
    "$br" --subscribers "$n" --granted "$root/specs" >"$tmp/granted"
    for sub in $(cut -d' ' -f1 "$tmp/granted" | uniq); do
        rules=$(awk -v s="$sub" '$1 == s { printf "%s{\"table\": \"%s\", \"column\": \"%s\"}", (n++ ? ", " : ""), $2, $3 }' "$tmp/granted")
        printf '{"cohort": "%s", "version": 1, "match": [%s]}\n' "$sub" "$rules" >"$tmp/plain/$sub.json"
    done
    all=$(sort -u -k2,2 "$tmp/granted" | awk '{ printf "%s{\"table\": \"%s\", \"column\": \"%s\"}", (n++ ? ", " : ""), $2, $3 }')
    printf '{"cohort": "records", "version": 1, "match": [%s]}\n' "$all" >"$tmp/plain/records.json"
}

# write_config NAME SEMANTICS WORKERS [INPUT]: the config of one run in $tmp/NAME.json, reading
# INPUT (default NAME.raw); the passthrough reads the gateway's config format too
write_config() {
    local name=$1 sem=$2 workers=$3 input=${4:-$1.raw} extra=""
    # workers: set when the gateway has the setting; asked for anyway when not 1, so that the
    # check refuses it and the row says why
    if knows workers || [ "$workers" != 1 ]; then
        extra="$extra\"workers\": $workers, "
    fi
    if knows metrics.listen; then
        extra="$extra\"metrics\": {\"listen\": \"127.0.0.1:0\"}, "
    fi
    local cohorts="\"cohorts\": {\"path\": \"$root/specs/cohorts\", \"topic\": \"$name.cohort.{cohort}.{table}\"},"
    if [ "${BENCH_RELEASE:-0}" -gt 0 ] && [ "${BENCH_PLAIN:-0}" = 1 ]; then
        plain_cohorts
        cohorts="\"cohorts\": {\"path\": \"$tmp/plain\", \"topic\": \"$name.release.{cohort}\"},"
    elif [ "${BENCH_RELEASE:-0}" -gt 0 ]; then
        extra="$extra$(release_config "$name")"
        cohorts=
    elif [ "${BENCH_FANOUT:-0}" -gt 0 ]; then
        fanout_cohorts
        cohorts="\"cohorts\": {\"path\": \"$tmp/fanout\", \"topic\": \"$name.cohort.{cohort}.{table}\"},"
    fi
    cat >"$tmp/$name.json" <<JSON
{"group_id": "$name", "inputs": [{"topic": "$input"}],
 "output": {"topic": "$name.records", "dead_letter_topic": "$name.dlq"},
 "mapping": {"specs": "$root/specs"}, "pseudonym": {"key_file": "$tmp/key"},
 $cohorts
 "delivery": {"semantics": "$sem"${BENCH_DELIVERY:+, $BENCH_DELIVERY}}, $extra
 "log": {"level": "info"}, "kafka": {"bootstrap.servers": "$boot"}}
JSON
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# start_gateway NAME [PLAN]: runs the gateway (with PLAN: the passthrough instead, producing to
# NAME.*) and waits until it holds its partitions; sets gw_pid and rss0 (VmRSS then, in kB)
start_gateway() {
    local name=$1 plan=${2:-} i
    if [ -n "$plan" ]; then
        "$pt" run -c "$tmp/$name.json" -p "$plan" -x "$name." >"$tmp/$name.out" 2>"$tmp/$name.log" &
    else
        "$cg" run -c "$tmp/$name.json" >"$tmp/$name.out" 2>"$tmp/$name.log" &
    fi
    gw_pid=$!
    for i in $(seq 1 1200); do
        grep -q '"partition.assigned"' "$tmp/$name.log" && break
        if ! kill -0 "$gw_pid" 2>/dev/null; then
            cat "$tmp/$name.log" >&2
            log "FAILED: ${plan:+the passthrough instead of }the gateway exited during start-up"
            exit 1
        fi
        sleep 0.05
    done
    rss0=$(status_kb "$gw_pid" VmRSS)
    perf_pid=
    if [ -n "${BENCH_PERF:-}" ]; then # a CPU profile of this run, once it holds its partitions
        mkdir -p "$BENCH_PERF"
        perf record -q -F 999 -g -p "$gw_pid" -o "$BENCH_PERF/$name.data" >/dev/null 2>&1 &
        perf_pid=$!
    fi
}

# the CPU seconds (user + system, all threads) process $1 has used
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
        "/proc/$1/stat" 2>/dev/null || echo 0
}

# stop_gateway NAME: SIGTERM, waits for exit 0; sets rss1, hwm, cpu (CPU seconds until then)
stop_gateway() {
    local name=$1 i rc=0
    rss1=$(status_kb "$gw_pid" VmRSS)
    hwm=$(status_kb "$gw_pid" VmHWM)
    cpu=$(cpu_s "$gw_pid")
    if [ -n "${perf_pid:-}" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        perf_pid=
    fi
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
fmt='| %-13s | %7s | %-29s | %9s | %6s | %6s | %6s | %11s | %9s | %9s | %9s |'
row() { rows+=("$(printf "$fmt" "$@")"); }
notes=()
ceil_rows=()
cfmt='| %-13s | %7s | %14s | %18s | %21s | %13s |'
pair_rows=()
pfmt='| %-13s | %7s | %14s | %18s | %17s | %13s | %17s | %14s |'
pair=0
[ "${BENCH_PLAIN:-0}" != pair ] || [ "${BENCH_RELEASE:-0}" -le 0 ] || pair=1

# the semantics x workers the gateway accepts; the others get a row that says so
combos=()
for sem in $semantics_list; do
    for workers in $workers_list; do
        name=cg-bench-$sem-w$workers-$$
        write_config "$name-probe" "$sem" "$workers"
        if ! err=$("$cg" check -c "$tmp/$name-probe.json" 2>&1 >/dev/null); then
            row "$sem" "$workers" "skipped" "-" "-" "-" "-" "-" "-" "-" "-"
            notes+=("$sem, $workers worker(s): skipped, the gateway refuses the config: ${err##*error: }")
            continue
        fi
        combos+=("$sem $workers")
    done
done

# the line of FILE ("msgs/s ...", one per run) with the median msgs/s; of an even count, the lower
# of the two middle ones, so that the other columns come from a run that happened
median_line() { sort -n -k1,1 "$1" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
# the median of FILE's CPU seconds (field 8), the lower of the two middle ones of an even count
median_cpu() { cut -d' ' -f8 "$1" | sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
runs_of() { cut -d' ' -f1 "$1" | paste -sd' '; }

# flat_run NAME SEMANTICS WORKERS FILE [PLAN]: one flat-out run over the preloaded $flat_in, by the
# gateway (by the passthrough with PLAN); appends "msgs/s rss0 rss1 hwm records span_s bytes cpu"
# to FILE (bytes: the output records' keys and values; cpu: the process's CPU seconds, start-up
# included: steadier than msgs/s when other work shares the machine)
flat_run() {
    local n=$1 sem=$2 workers=$3 file=$4 plan=${5:-} s
    write_config "$n" "$sem" "$workers" "$flat_in"
    start_gateway "$n" "$plan"
    "$lg" wait -b "$boot" -g "$n" -t "$flat_in" -n "$messages" >"$tmp/$n.wait"
    stop_gateway "$n"
    s=$("$lg" stats -b "$boot" -t "$flat_in" -x "$n.")
    [ "$(get matched "$s")" = "$messages" ] ||
        notes+=("$n: only $(get matched "$s") of $messages inputs have output: $s")
    [ -z "$plan_records" ] || [ "$(get records "$s")" = "$plan_records" ] ||
        notes+=("$n: $(get records "$s") records where the plan has $plan_records")
    echo "$(get rate "$s") $rss0 $rss1 $hwm $(get records "$s") $(get span_s "$s") $(get bytes "$s") $cpu" >>"$file"
}

if [ "$do_flat" = 1 ] && [ ${#combos[@]} -gt 0 ]; then
    # one input topic for every flat-out run: each run is a fresh group with output topics of its
    # own, so the gateway and the passthrough read the very same records
    flat_in=cg-bench-$$-flat.raw plan= plan_records=
    log "preloading $messages messages to $flat_in"
    "$lg" produce -b "$boot" -t "$flat_in" -p "$partitions" -n "$messages" >"$tmp/flat.produce"
    if [ "$do_ceiling" = 1 ]; then
        # the plan: what the gateway produced for each input, read back from an untimed run
        set -- ${combos[0]}
        log "$1, $2 worker(s): untimed gateway run for the passthrough's plan"
        flat_run "cg-bench-$$-plan" "$1" "$2" "$tmp/plan.run"
        "$pt" plan -b "$boot" -t "$flat_in" -x "cg-bench-$$-plan." -o "$tmp/plan" >"$tmp/plan.out"
        plan=$tmp/plan plan_records=$(get records "$(cat "$tmp/plan.out")")
        notes+=("passthrough plan: $(cat "$tmp/plan.out"), from an untimed $1/$2 gateway run ($(cut -d' ' -f1 "$tmp/plan.run") msgs/s)")
    fi
    for sem in $semantics_list; do
        ws=()
        for c in "${combos[@]}"; do
            set -- $c
            [ "$1" != "$sem" ] || ws+=("$2")
        done
        [ ${#ws[@]} -gt 0 ] || continue
        for r in $(seq 1 "$rounds"); do
            # alternated, so that neither side always runs first on a broker that just did work
            order="gw pt"
            [ $((r % 2)) = 1 ] || order="pt gw"
            [ -n "$plan" ] || order=gw
            for kind in $order; do
                if [ "$kind" = pt ]; then
                    log "$sem: passthrough, round $r of $rounds"
                    flat_run "cg-bench-$$-$sem-pt-r$r" "$sem" 1 "$tmp/flat.$sem.pt" "$plan"
                    continue
                fi
                for workers in "${ws[@]}"; do
                    log "$sem, $workers worker(s): flat out, round $r of $rounds"
                    # BENCH_PLAIN=pair: the run without policies beside it, alternated
                    [ "$pair" = 0 ] || [ $((r % 2)) = 1 ] ||
                        BENCH_PLAIN=1 flat_run "cg-bench-$$-$sem-w$workers-r$r-plain" "$sem" \
                            "$workers" "$tmp/flat.$sem.w$workers.plain"
                    flat_run "cg-bench-$$-$sem-w$workers-r$r" "$sem" "$workers" "$tmp/flat.$sem.w$workers"
                    [ "$pair" = 0 ] || [ $((r % 2)) = 0 ] ||
                        BENCH_PLAIN=1 flat_run "cg-bench-$$-$sem-w$workers-r$r-plain" "$sem" \
                            "$workers" "$tmp/flat.$sem.w$workers.plain"
                done
            done
        done
        for workers in "${ws[@]}"; do
            f=$tmp/flat.$sem.w$workers
            set -- $(median_line "$f")
            row "$sem" "$workers" "flat out, $messages preloaded" "$1" "-" "-" "-" "-" \
                "$(mb "$2")" "$(mb "$3")" "$(mb "$4")"
            notes+=("$sem/$workers flat out: msgs/s by round $(runs_of "$f"); the median run: $5 records ($7 bytes) in $6 s of output timestamps; CPU s by round $(cut -d' ' -f8 "$f" | paste -sd' ')")
            gw_rate=$1
            if [ "$pair" = 1 ]; then
                p=$f.plain
                set -- $(median_line "$p")
                row "$sem" "$workers" "flat out, no policies" "$1" "-" "-" "-" "-" \
                    "$(mb "$2")" "$(mb "$3")" "$(mb "$4")"
                notes+=("$sem/$workers flat out without policies: msgs/s by round $(runs_of "$p"); the median run: $5 records ($7 bytes) in $6 s of output timestamps; CPU s by round $(cut -d' ' -f8 "$p" | paste -sd' ')")
                cpu_r=$(median_cpu "$f") cpu_p=$(median_cpu "$p")
                pair_rows+=("$(printf "$pfmt" "$sem" "$workers" "$gw_rate" "$1" \
                    "$(awk -v g="$gw_rate" -v p="$1" 'BEGIN { printf "%.1f %%", (p > 0 ? 100 * g / p : 0) }')" \
                    "$cpu_r" "$cpu_p" \
                    "$(awk -v g="$cpu_r" -v p="$cpu_p" 'BEGIN { printf "%.1f %%", (p > 0 ? 100 * g / p : 0) }')")")
            fi
            if [ -n "$plan" ]; then
                set -- $(median_line "$tmp/flat.$sem.pt")
                ceil_rows+=("$(printf "$cfmt" "$sem" "$workers" "$gw_rate" "$1" \
                    "$(awk -v g="$gw_rate" -v p="$1" 'BEGIN { printf "%.1f %%", (p > 0 ? 100 * g / p : 0) }')" \
                    "$(awk -v r="$plan_records" -v m="$messages" 'BEGIN { printf "%.3f", r / m }')")")
            fi
        done
        if [ -n "$plan" ]; then
            f=$tmp/flat.$sem.pt
            set -- $(median_line "$f")
            row "$sem" "-" "passthrough, $messages preloaded" "$1" "-" "-" "-" "-" \
                "$(mb "$2")" "$(mb "$3")" "$(mb "$4")"
            notes+=("$sem passthrough: msgs/s by round $(runs_of "$f"); the median run: $5 records ($7 bytes) in $6 s of output timestamps; CPU s by round $(cut -d' ' -f8 "$f" | paste -sd' ')")
        fi
    done
fi

if [ "$do_rate" = 1 ]; then
    for c in "${combos[@]}"; do
        set -- $c
        sem=$1 workers=$2
        n=cg-bench-$sem-w$workers-$$-rate
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
    done
fi

echo
echo "cohortgate gateway benchmark: $(nproc) CPU(s), $(uname -m), build $build_type, broker Apache Kafka on 127.0.0.1 (same machine), $partitions input partitions"
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - started_at)) s in all"
echo
printf "$fmt\n" semantics workers load "msgs/s" "p50 ms" "p99 ms" "max ms" "warm-up p99" "RSS start" "RSS end" "peak RSS"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' --------------- --------- ------------------------------- ----------- -------- -------- -------- ------------- ----------- ----------- -----------
printf '%s\n' "${rows[@]}"
echo
echo "(flat out: the median of $rounds run(s). latency: after the first $warmup s of the rate phase; warm-up p99: of those first $warmup s."
echo " RSS in MB from /proc/PID/status: VmRSS once the gateway holds its partitions, VmRSS before SIGTERM, VmHWM)"
if [ ${#ceil_rows[@]} -gt 0 ]; then
    echo
    echo "transport ceiling: flat-out msgs/s, medians of $rounds gateway and $rounds passthrough run(s), alternated; target: the gateway at 90 % or more"
    echo
    printf "$cfmt\n" semantics workers "gateway msgs/s" "passthrough msgs/s" "gateway / passthrough" "records/input"
    printf '|%s|%s|%s|%s|%s|%s|\n' --------------- --------- ---------------- -------------------- ----------------------- ---------------
    printf '%s\n' "${ceil_rows[@]}"
fi
if [ ${#pair_rows[@]} -gt 0 ]; then
    echo
    echo "cost of enforcement: flat out with ${BENCH_RELEASE} subscriber(s), medians of $rounds run(s) with the policies and $rounds without (the same records), alternated; target: 85 % or more"
    echo
    printf "$pfmt\n" semantics workers "release msgs/s" "no policies msgs/s" "release / none" "release CPU s" "no policies CPU s" "release / none"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' --------------- --------- ---------------- -------------------- ------------------- --------------- ------------------- ----------------
    printf '%s\n' "${pair_rows[@]}"
fi
echo
for n in "${notes[@]}"; do echo "- $n"; done
