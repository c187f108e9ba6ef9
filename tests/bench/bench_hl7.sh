#!/usr/bin/env bash
# bench_hl7.sh - HL7 v2 structural-index throughput on one core, and the @medplum/core peer.
#
# Builds bench_hl7 (Release) in its own build directory, indexes the corpus repeated to at least
# BENCH_MB megabytes (default 64) in memory, median of BENCH_RUNS runs (default 7), pinned to one
# CPU when taskset exists. Then, when npm is present, installs @medplum/core into a scratch folder
# outside the repository (MEDPLUM_DIR, default ~/.cache/cohortgate/medplum) and runs
# Hl7Message.parse on the same messages at the same volume; prints both figures and the ratio.
# cohortgate prints three figures (see bench_hl7.c): index (reader_next: what the ratio uses),
# index+fields (every field of every segment reached through the API) and index+values (every
# repetition, component and subcomponent too); the ratio is printed for the first two.
# BENCH_BASELINE_BIN: another bench_hl7 binary (e.g. built from the previous commit) run on the
# same input right after this one, for A/B figures against the same peer run.
# usage: tests/bench/bench_hl7.sh [CORPUS_DIR]   (default ../shared/corpus/hl7v2, else fixtures)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$here/build-bench}
mb=${BENCH_MB:-64}
runs=${BENCH_RUNS:-7}
corpus=${1:-$here/../shared/corpus/hl7v2}
if [ ! -d "$corpus" ]; then
    echo "bench_hl7: $corpus not found; using tests/fixtures/hl7" >&2
    corpus=$here/tests/fixtures/hl7
fi
medplum_dir=${MEDPLUM_DIR:-$HOME/.cache/cohortgate/medplum}

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_hl7 -j2 >/dev/null

pin=()
if command -v taskset >/dev/null; then
    pin=(taskset -c 0)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $(uname -sr)"
echo "corpus: $corpus"
"${pin[@]}" "$build/tests/bench/bench_hl7" --runs "$runs" --mb "$mb" --emit "$tmp/messages.bin" \
    "$corpus" | tee "$tmp/c.txt"
c_mb=$(sed -n 's/^cohortgate_mb_per_s=//p' "$tmp/c.txt")
c_msgs=$(sed -n 's/^cohortgate_msgs_per_s=//p' "$tmp/c.txt")
c_fmb=$(sed -n 's/^cohortgate_fields_mb_per_s=//p' "$tmp/c.txt")
if [ -n "${BENCH_BASELINE_BIN:-}" ]; then
    "${pin[@]}" "$BENCH_BASELINE_BIN" --runs "$runs" --mb "$mb" "$corpus" |
        sed -n 's/^cohortgate_/baseline_/p' | tee "$tmp/b.txt"
fi
# The same run with the portable (SSE2) scanner, for machines without AVX2 + BMI2; for reference.
"${pin[@]}" "$build/tests/bench/bench_hl7" --runs "$runs" --mb "$mb" --portable 1 "$corpus" |
    sed -n 's/^cohortgate_mb_per_s=/portable_scanner_mb_per_s=/p'

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "peer: SKIPPED (npm/node not found): @medplum/core not measured"
    exit 0
fi
# the peer version is pinned so figures compare across runs (MEDPLUM_VERSION overrides)
if ! grep -qs "\"version\": \"${MEDPLUM_VERSION:-5.2.13}\"" "$medplum_dir/node_modules/@medplum/core/package.json"; then
    mkdir -p "$medplum_dir"
    echo "peer: installing @medplum/core into $medplum_dir"
    (cd "$medplum_dir" && npm install --no-audit --no-fund --silent "@medplum/core@${MEDPLUM_VERSION:-5.2.13}" >/dev/null)
fi
"${pin[@]}" node "$here/tests/bench/medplum_peer.js" "$medplum_dir" "$tmp/messages.bin" "$mb" \
    "$runs" | tee "$tmp/p.txt"
p_mb=$(sed -n 's/^medplum_mb_per_s=//p' "$tmp/p.txt")
p_msgs=$(sed -n 's/^medplum_msgs_per_s=//p' "$tmp/p.txt")
awk -v a="$c_mb" -v b="$p_mb" -v c="$c_msgs" -v d="$p_msgs" 'BEGIN {
    printf "ratio: cohortgate/medplum = %.1fx (MB/s), %.1fx (messages/s)\n", a / b, c / d }'
if [ -n "$c_fmb" ]; then
    awk -v a="$c_fmb" -v b="$p_mb" 'BEGIN {
        printf "ratio (index + every field reached): %.1fx (MB/s)\n", a / b }'
fi
if [ -s "$tmp/b.txt" ]; then
    b_mb=$(sed -n 's/^baseline_mb_per_s=//p' "$tmp/b.txt")
    awk -v a="$b_mb" -v b="$p_mb" 'BEGIN { printf "baseline ratio: %.1fx (MB/s)\n", a / b }'
fi
