#!/usr/bin/env bash
# bench_mllp.sh - `cohortgate listen` under MLLP load, against a real Apache Kafka broker on this
# machine, and a Java listener built on HAPI's HL7 server under the same load in the same run.
#
# Starts its own broker (tests/scripts/kafka-broker.sh, stopped on every exit), builds cohortgate
# and the load generator tests/bench/cg_mllp_load (CONNECTIONS connections, each sending an
# HL7 v2 ORU^R01 of ~800 bytes with its own MSH-10 and waiting for its ACK before the next, as
# interface engines do; every ACK must be AA naming its message). Both listeners run for the whole
# benchmark, each producing to a raw topic of its own, and get PRIME s of unmeasured flat-out load
# after their start; then per round, against each listener (the other one stopped with SIGSTOP
# meanwhile, so that its background work takes no CPU from the one measured):
#
#   flat out   every connection sends its next message as soon as its ACK is in, for FLAT
#              seconds; msgs/s = ACKs after the first WARMUP seconds over the rest of the time
#   rate R     RATE messages/s in all (scheduled every 1/RATE s, each on an idle connection) for
#              RATE_S seconds; p50/p99/max latency from each message's scheduled time to its
#              ACK (no coordinated omission), after the first WARMUP seconds
#
# Before each run the page cache is written back (sync): the broker's log from the run before
# would otherwise be flushed by the kernel in one burst in the middle of this one.
#
# The listeners:
#   cohortgate  `cohortgate listen` (the built binary): idempotent producer, acks=all, each
#               message acknowledged after the broker's delivery report
#   HAPI        tests/interop/hapi/HapiKafkaListener.java: HAPI 2.5.1's HL7 server
#               (HapiContext.newServer, a thread per connection) with a ReceivingApplication that
#               sends each message with the Kafka Java producer (acks=all, idempotent) and returns
#               the ACK after the send's future completes; the same key (a keyed hash of MSH-4 and
#               PID-3) and headers as cohortgate. Needs java, javac and the HAPI jars
#               (tests/interop/hapi/hapi-peer.sh fetch, here when mvn can); without them it is
#               left out with a note.
# Both producers use linger.ms LINGER (default 1, as config/listen.json advises for ACK latency).
# Rounds alternate the order (odd rounds cohortgate first, even rounds HAPI first); each figure is
# the median of ROUNDS runs (an even count reports the lower of the two middle runs), printed as a
# markdown table with the cohortgate/HAPI ratios, the targets (flat out at least 20,000 msgs/s, p99
# at most 20 ms at 2,000 msgs/s), the machine and the load average at the start and the end: on
# a shared machine the figures move with the other load.
#
# usage: tests/bench/bench_mllp.sh [options]
#   --rounds N          rounds (default 3)
#   --flat S            seconds of each flat-out run (default 15)
#   --rate R            messages/s of the rate runs (default 2000)
#   --rate-duration S   seconds of each rate run (default 20)
#   --warmup S          seconds at the start of each run kept out of the figures (default 3)
#   --connections N     connections (default 50)
#   --linger MS         linger.ms of both producers (default 1)
#   --prime S           seconds of unmeasured flat-out load each listener gets once after its
#                       start, before the rounds (default 15: the JVM compiles its hot paths)
#   --no-hapi           cohortgate only
#   --quick             --rounds 3 --flat 6 --rate-duration 8 --warmup 2 --prime 8 (~2 min)
# BENCH_BUILD_DIR: the build folder (default build-bench, configured Release with the tests).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$root/build-bench}
rounds=3 flat=15 rate=2000 rate_s=20 warmup=3 conns=50 linger=1 do_hapi=1 prime=15

while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2 && shift ;;
    --flat) flat=$2 && shift ;;
    --rate) rate=$2 && shift ;;
    --rate-duration) rate_s=$2 && shift ;;
    --warmup) warmup=$2 && shift ;;
    --connections) conns=$2 && shift ;;
    --linger) linger=$2 && shift ;;
    --no-hapi) do_hapi=0 ;;
    --prime) prime=$2 && shift ;;
    --quick) rounds=3 flat=6 rate_s=8 warmup=2 prime=8 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "bench_mllp: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

log() { printf 'bench_mllp: %s\n' "$*" >&2; }
notes=()

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCG_BUILD_TESTS=ON >/dev/null
else # refresh: the sources may have changed since it was configured
    cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target cohortgate cg_mllp_load -j2 >/dev/null
cg=$build/gateway/cohortgate
lg=$build/tests/bench/cg_mllp_load
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")

hapi_cp=
if [ "$do_hapi" = 1 ]; then
    if hapi_cp=$(bash "$root/tests/interop/hapi/hapi-peer.sh" build "$build/tests/interop/hapi-classes"); then
        :
    else
        do_hapi=0
        notes+=("HAPI left out: java, javac or the HAPI jars are missing (tests/interop/hapi/hapi-peer.sh fetch)")
    fi
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date +%s)
tmp=$(mktemp -d /tmp/cg-bench-mllp.XXXXXX)
declare -A lpids=() ports=() hwms=()
cleanup() {
    local p
    for p in "${lpids[@]}"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    bash "$root/tests/scripts/kafka-broker.sh" stop "$tmp/broker" || true
    rm -rf "$tmp"
}
trap cleanup EXIT

started=$(bash "$root/tests/scripts/kafka-broker.sh" start "$tmp/broker") # exits when it fails
eval "$started"
boot=$COHORTGATE_TEST_BOOTSTRAP
head -c 32 /dev/urandom | base64 >"$tmp/key"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# start_listener IMPL NAME: runs the listener IMPL (cg or hapi) on a free port, producing to topic
# NAME, and waits until it accepts; sets pid_IMPL and port_IMPL
start_listener() {
    local impl=$1 name=$2 i ready port pid
    port=$(free_port)
    if [ "$impl" = cg ]; then
        cat >"$tmp/$name.json" <<JSON
{"source": "mllp", "listen": {"address": "127.0.0.1:$port", "topic": "$name",
  "max_connections": $((conns + 16))},
 "pseudonym": {"key_file": "$tmp/key"},
 "kafka": {"bootstrap.servers": "$boot", "linger.ms": $linger},
 "metrics": {"listen": "127.0.0.1:0"}, "log": {"level": "info"}}
JSON
        "$cg" listen -c "$tmp/$name.json" >"$tmp/$name.out" 2>"$tmp/$name.log" &
        ready='"listen.started"'
    else
        # in $tmp: HAPI's default message id generator keeps its state in ./id_file
        (cd "$tmp" && exec java -Xms256m -Xmx1g -Djava.awt.headless=true -cp "$hapi_cp" \
            HapiKafkaListener --port "$port" --bootstrap "$boot" --topic "$name" \
            --linger-ms "$linger" >"$tmp/$name.log" 2>&1) &
        ready='listening on'
    fi
    pid=$!
    lpids[$impl]=$pid
    ports[$impl]=$port
    for i in $(seq 1 600); do
        grep -q "$ready" "$tmp/$name.log" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$tmp/$name.log" >&2
            log "FAILED: the $impl listener exited during start-up"
            exit 1
        fi
        sleep 0.05
    done
    log "FAILED: the $impl listener did not start within 30 s"
    exit 1
}

# stop_listener IMPL: SIGTERM; sets hwm_IMPL (VmHWM, kB) first
stop_listener() {
    local pid=${lpids[$1]}
    hwms[$1]=$(status_kb "$pid" VmHWM)
    kill -TERM "$pid"
    wait "$pid" || true
    lpids[$1]=
}

get() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# run_load IMPL: the flat-out run, then the rate run, against the listener IMPL; the other
# listener is stopped (SIGSTOP) meanwhile, so that its background work (the JVM's compiler
# threads, timers) takes no CPU from the one measured
run_load() {
    local impl=$1 port=${ports[$1]} f r other
    for other in "${!lpids[@]}"; do
        if [ "$other" != "$impl" ]; then kill -STOP "${lpids[$other]}"; fi
    done
    sync # see below
    f=$("$lg" --port "$port" --connections "$conns" --duration "$flat" --warmup "$warmup" \
        --tag "$impl-$round-f") || {
        log "FAILED: the flat-out run against $impl ($f)"
        exit 1
    }
    # the flat-out run left ~200 MB of the broker's log in dirty pages, which the kernel writes
    # back 30 s later (vm.dirty_expire_centisecs) in one burst (270 MB/s, iowait 30 % seen on
    # this machine): inside this run's window it stalled the broker's appends for up to 300 ms
    # and measured the disk, not the listener. Written back here, before the run.
    sync
    r=$("$lg" --port "$port" --connections "$conns" --duration "$rate_s" --warmup "$warmup" \
        --rate "$rate" --tag "$impl-$round-r") || {
        log "FAILED: the rate run against $impl ($r)"
        exit 1
    }
    for other in "${!lpids[@]}"; do
        if [ "$other" != "$impl" ]; then kill -CONT "${lpids[$other]}"; fi
    done
    echo "$(get msgs_per_s "$f") $(get msgs_per_s "$r") $(get p50_ms "$r") $(get p99_ms "$r") $(get max_ms "$r") $(get late "$r") 0 $(get unacked "$r")" >>"$tmp/res.$impl"
    log "round $round, $impl: flat out $(get msgs_per_s "$f") msgs/s; at $rate/s: $r"
}

impls="cg"
[ "$do_hapi" = 1 ] && impls="cg hapi"
# both listeners run for the whole benchmark; each is primed with PRIME s of flat-out load first
# (the JVM compiles HAPI's and the Kafka client's hot paths; the same load for cohortgate)
for impl in $impls; do
    start_listener "$impl" "bench-mllp-$impl-$$"
done
for impl in $impls; do
    for other in "${!lpids[@]}"; do if [ "$other" != "$impl" ]; then kill -STOP "${lpids[$other]}"; fi; done
    "$lg" --port "${ports[$impl]}" --connections "$conns" --duration "$prime" --warmup 0 \
        --tag "$impl-prime" >/dev/null || { log "FAILED: the priming run against $impl"; exit 1; }
    for other in "${!lpids[@]}"; do if [ "$other" != "$impl" ]; then kill -CONT "${lpids[$other]}"; fi; done
done
for round in $(seq 1 "$rounds"); do
    order=$impls
    [ $((round % 2)) = 0 ] && [ "$do_hapi" = 1 ] && order="hapi cg"
    for impl in $order; do
        run_load "$impl"
    done
done
for impl in $impls; do
    stop_listener "$impl"
done

# median COLUMN FILE: the median of one column over the rounds (the lower middle of an even count)
median() { awk -v c="$1" '{ print $c }' "$2" | sort -g | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
by_round() { awk -v c="$1" '{ printf "%s%s", (NR > 1 ? ", " : ""), $c }' "$2"; }

declare -A label=([cg]="cohortgate listen" [hapi]="HAPI 2.5.1 server + Kafka producer")
fmt='| %-34s | %15s | %17s | %8s | %8s | %8s | %12s | %13s |'
echo
echo "MLLP listener benchmark: $(nproc) CPU(s), $(uname -m), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), cohortgate build $build_type, broker Apache Kafka on 127.0.0.1 (same machine), linger.ms $linger"
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - started_at)) s in all"
echo
printf "$fmt\n" listener "flat-out msgs/s" "at $rate/s: msgs/s" "p50 ms" "p99 ms" "max ms" "late sends" "peak RSS MB"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------------------------------ ----------------- ------------------- ---------- ---------- ---------- -------------- ---------------
for impl in $impls; do
    f="$tmp/res.$impl"
    printf "$fmt\n" "${label[$impl]}" "$(median 1 "$f")" "$(median 2 "$f")" "$(median 3 "$f")" \
        "$(median 4 "$f")" "$(median 5 "$f")" "$(median 6 "$f")" "$((${hwms[$impl]:-0} / 1024))"
    awk -v got="$(median 2 "$f")" -v r="$rate" 'BEGIN { exit !(got < 0.95 * r) }' &&
        notes+=("${label[$impl]} did not sustain $rate msgs/s (median $(median 2 "$f")/s): its latencies at that rate are mostly time queued behind earlier messages")
    notes+=("${label[$impl]}: flat-out msgs/s by round $(by_round 1 "$f"); p99 ms at $rate/s by round $(by_round 4 "$f"); ACKs still outstanding 5 s after a rate run's end (left out) by round $(by_round 8 "$f")")
done
echo
echo "($conns connections, each waiting for its ACK before its next message; medians of $rounds round(s), each column on its own; the first $warmup s of every run left out."
echo " latency: from each message's scheduled time to its ACK; late sends: messages sent over 1 ms after their time for want of an idle connection (or a descheduled load generator).)"
echo
cg_flat=$(median 1 "$tmp/res.cg") cg_p99=$(median 4 "$tmp/res.cg")
if [ "$do_hapi" = 1 ]; then
    h_flat=$(median 1 "$tmp/res.hapi") h_p99=$(median 4 "$tmp/res.hapi")
    awk -v a="$cg_flat" -v b="$h_flat" -v c="$cg_p99" -v d="$h_p99" -v r="$rate" 'BEGIN {
        printf "cohortgate / HAPI: flat-out throughput %.1fx; p99 at %s/s: HAPI %.1fx cohortgate'"'"'s\n",
            (b > 0 ? a / b : 0), r, (c > 0 ? d / c : 0) }'
fi
awk -v a="$cg_flat" -v c="$cg_p99" -v r="$rate" 'BEGIN {
    printf "targets: flat out >= 20,000 msgs/s: %s (%s); p99 <= 20 ms at %s/s: %s (%s ms)\n",
        (a >= 20000 ? "met" : "NOT met"), a, r, (c <= 20 ? "met" : "NOT met"), c }'
echo
for n in "${notes[@]}"; do echo "- $n"; done
