#!/usr/bin/env bash
# bench_xml.sh - C-CDA documents through parse, map (specs/cda-ccda-omop.json) and encode on one
# core: documents/s and MB/s per stage, medians of BENCH_RUNS (default 5) runs over at least
# BENCH_MB (default 50) megabytes. The input is the whole documents of the shared C-CDA corpus
# (root ClinicalDocument; the section fragments have no patient and fail at "select", so they are
# left out), read at run time and never copied into the project. Pinned to CPU 0 with taskset.
# usage: tests/bench/bench_xml.sh [CORPUS_DIR]   (default ../shared/corpus/ccda)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BENCH_BUILD_DIR:-$here/build-bench}
corpus=${1:-$here/../shared/corpus/ccda}
if [ ! -d "$corpus" ]; then
    echo "bench_xml: SKIPPED: corpus $corpus not found (it is read at run time, never shipped)"
    exit 0
fi
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_xml -j"$(nproc)" >/dev/null

pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
docs=()
while IFS= read -r -d '' f; do
    grep -q '<ClinicalDocument' "$f" && docs+=("$f")
done < <(find "$corpus" -name '*.xml' -print0 | sort -z)
echo "bench_xml: ${#docs[@]} documents from $corpus; $(nproc) cores, $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
"${pin[@]}" "$build/tests/bench/bench_xml" --runs "${BENCH_RUNS:-5}" --mb "${BENCH_MB:-50}" \
    "$here/specs/cda-ccda-omop.json" "$here/specs/vocab" "${docs[@]}"
