#!/usr/bin/env bash
# Configures and builds cohortgate into a build folder: tests/scripts/build.sh [DIR] [CMAKE ARGS...]
# Used by demo.sh and test.sh; DIR defaults to build/. BUILD_TARGET=NAME builds only that target
# (the demo needs only cohortgate), so one folder serves both and the tests stay configured.
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
cmake --build "$dir" -j "$(nproc)" ${BUILD_TARGET:+--target "$BUILD_TARGET"}
