#!/usr/bin/env bash
# Configures and builds cohortgate into a build folder: tests/scripts/build.sh [DIR] [CMAKE ARGS...]
# Used by demo.sh and test.sh; DIR defaults to build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/build}
shift || true
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$dir" "${gen[@]}" "$@" >/dev/null
else
    cmake -S "$root" -B "$dir" "$@" >/dev/null
fi
cmake --build "$dir" -j "$(nproc)"
