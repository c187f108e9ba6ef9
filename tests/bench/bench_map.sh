#!/usr/bin/env bash
# bench_map.sh - `cohortgate map` end to end on one core: read, decode, map with every shipped
# spec, NDJSON encoding. Prints input MB, messages, rows, median wall time, MB/s, messages/s,
# rows/s and peak RSS, then maps a 4x larger input once to show that RSS does not grow with it.
#
# The input is the shared corpus (every file, sorted) concatenated and repeated to at least
# BENCH_MB megabytes (default 50) in a temporary folder outside the repository; the corpus is
# read at run time and never copied into the project. Runs BENCH_RUNS times (default 5), pinned to
# CPU 0 when taskset exists, output to /dev/null. The corpus's feeds mostly send no assigning
# authority (PID-3.4), so it maps with --authority-missing facility, as a site taking them would.
# The corpus's broken messages fail on purpose, and messages that map to no record say so (no_rows, no_research_content); their stderr lines are
# counted and summarised, not hidden. Then the same measurement
# over only the corpus files that map without an error (so no message is skipped cheaply), each
# repeated to the same volume: the figure for a feed every message of which becomes rows.
# usage: tests/bench/bench_map.sh [CORPUS_DIR]   (default ../shared/corpus/hl7v2)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$here/build-bench}
mb=${BENCH_MB:-50}
runs=${BENCH_RUNS:-5}
corpus=${1:-$here/../shared/corpus/hl7v2}
if [ ! -d "$corpus" ]; then
    echo "bench_map: SKIPPED: corpus $corpus not found (it is read at run time, never shipped)"
    exit 0
fi

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target cohortgate -j"$(nproc)" >/dev/null
cg=$build/gateway/cohortgate

pin=()
if command -v taskset >/dev/null; then
    pin=(taskset -c 0)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 64 /dev/urandom >"$tmp/key" # a throwaway pseudonym key

# one pass over the corpus; a newline after each file so the next MSH starts a line (blank lines
# between messages are skipped by the reader)
find "$corpus" -type f -print0 | sort -z | while IFS= read -r -d '' f; do
    cat "$f"
    printf '\n'
done >"$tmp/once.hl7"
once=$(stat -c %s "$tmp/once.hl7")
reps=$(((mb * 1000000 + once - 1) / once))
for ((i = 0; i < reps; i++)); do cat "$tmp/once.hl7"; done >"$tmp/in.hl7"
rm -f "$tmp/once.hl7"
# the files every message of which maps (exit 0, nothing on stderr), for the mapped-only figure
find "$corpus" -type f -print0 | sort -z | while IFS= read -r -d '' f; do
    if "$cg" map --quiet --authority-missing facility --spec "$here/specs" --key-file "$tmp/key" "$f" >/dev/null \
        2>"$tmp/one.err" && [ ! -s "$tmp/one.err" ]; then
        printf '%s\n' "$f" >>"$tmp/mapped_files"
        cat "$f"
        printf '\n'
    fi
done >"$tmp/mapped_once.hl7"
n_mapped_files=$(wc -l <"$tmp/mapped_files" 2>/dev/null || echo 0)

if [ -x /usr/bin/time ]; then
    rss_how="max RSS from /usr/bin/time -f %M"
else
    rss_how="VmHWM polled from /proc/PID/status every 10 ms"
fi

# run_once FILE: maps FILE, stdout to /dev/null; sets wall (s), rss (kB) and leaves stderr in
# $tmp/err
run_once() {
    local t0 t1 pid
    t0=$(date +%s%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f %M -o "$tmp/rss" "${pin[@]}" "$cg" map --quiet --authority-missing facility --spec "$here/specs" \
            --key-file "$tmp/key" "$1" >/dev/null 2>"$tmp/err" || true
        t1=$(date +%s%N)
        rss=$(tail -n1 "$tmp/rss")
    else
        "${pin[@]}" "$cg" map --quiet --authority-missing facility --spec "$here/specs" --key-file "$tmp/key" "$1" \
            >/dev/null 2>"$tmp/err" &
        pid=$!
        rss=0
        while [ -r "/proc/$pid/status" ]; do
            local h
            h=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [ -n "$h" ] && rss=$h
            sleep 0.01
        done
        wait "$pid" || true
        t1=$(date +%s%N)
    fi
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
}

# measure FILE: maps FILE $runs times; sets walls, med (median s) and rss_max (kB)
measure() {
    walls=()
    rss_max=0
    for ((r = 0; r < runs; r++)); do
        run_once "$1"
        walls+=("$wall")
        ((rss > rss_max)) && rss_max=$rss
    done
    med=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR] = $1} END { print a[int((NR + 1) / 2)] }')
}

# row BYTES MESSAGES ROWS SECONDS RSS_KB [NOTE]: one line of the table
row() {
    awk -v b="$1" -v m="$2" -v w="$3" -v t="$4" -v k="$5" -v note="${6:-}" 'BEGIN {
        printf "%-8s %10d %10d %7.3fs %9.1f %11.0f %11.0f %7.1f MB%s\n", sprintf("%.1fMB", b / 1e6),
            m, w, t, b / 1e6 / t, m / t, w / t, k / 1024, note }'
}

bytes=$(stat -c %s "$tmp/in.hl7")
# counts (parse and map exit 1 because some corpus messages fail; that is expected here)
messages=$({ "$cg" parse --stats "$tmp/in.hl7" 2>/dev/null || true; } |
    sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
rows=$({ "$cg" map --quiet --authority-missing facility --spec "$here/specs" --key-file "$tmp/key" "$tmp/in.hl7" \
    2>"$tmp/err" || true; } | wc -l)
failed=$(wc -l <"$tmp/err")

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $(uname -sr)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "corpus: $corpus ($(find "$corpus" -type f | wc -l) files, ${once} bytes) x ${reps}"
echo "specs: $(ls "$here"/specs/*.json | xargs -n1 basename | tr '\n' ' ')"
echo "peak RSS: $rss_how"

measure "$tmp/in.hl7"
echo "wall times (s): ${walls[*]}"
echo "failed messages (stderr lines) per run: $failed of $messages; by reason:"
sed -E 's/^[^:]*: message [0-9]+: //; s/byte [0-9]+/byte N/' "$tmp/err" | sort | uniq -c | sort -rn | head -10 |
    sed 's/^/    /'
echo
printf '%-8s %10s %10s %8s %9s %11s %11s %10s\n' "input" "messages" "rows" "median" "MB/s" \
    "messages/s" "rows/s" "peak RSS"
row "$bytes" "$messages" "$rows" "$med" "$rss_max"

# 4x the input, one run: memory must not follow the input size
for ((i = 0; i < 4; i++)); do cat "$tmp/in.hl7"; done >"$tmp/in4.hl7"
rm -f "$tmp/in.hl7"
run_once "$tmp/in4.hl7"
row "$((bytes * 4))" "$((messages * 4))" "$((rows * 4))" "$wall" "$rss" "  (4x, one run)"
echo "failed messages at 4x: $(wc -l <"$tmp/err") (expected $((failed * 4)))"
rm -f "$tmp/in4.hl7"

# mapped only: the same volume made of the files that map without an error
m_once=$(stat -c %s "$tmp/mapped_once.hl7")
if [ "$m_once" -gt 0 ]; then
    m_reps=$(((mb * 1000000 + m_once - 1) / m_once))
    for ((i = 0; i < m_reps; i++)); do cat "$tmp/mapped_once.hl7"; done >"$tmp/inm.hl7"
    m_bytes=$(stat -c %s "$tmp/inm.hl7")
    m_messages=$({ "$cg" parse --stats "$tmp/inm.hl7" 2>/dev/null || true; } |
        sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
    m_rows=$({ "$cg" map --quiet --authority-missing facility --spec "$here/specs" --key-file "$tmp/key" "$tmp/inm.hl7" \
        2>/dev/null || true; } | wc -l)
    measure "$tmp/inm.hl7"
    echo
    echo "mapped only: the $n_mapped_files corpus files that map without an error, x ${m_reps};" \
        "failed messages per run: $(wc -l <"$tmp/err"); wall times (s): ${walls[*]}"
    row "$m_bytes" "$m_messages" "$m_rows" "$med" "$rss_max" "  (mapped only)"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
