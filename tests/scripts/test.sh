#!/usr/bin/env bash
# Everything CI runs, in order: install what is missing, build with warnings as errors and again
# with AddressSanitizer+UBSan, check formatting, run the unit tests in both builds, start a real
# PostgreSQL server and run the OMOP conformance tests against it, start a real Apache Kafka
# broker (KRaft, one node, loopback) and run the Kafka integration tests against it, in both
# builds, and run the fuzz targets briefly. The servers are stopped on every exit.
#
# Every test runs in both builds; nothing is left out. To stay well under 30 minutes as suites
# grow, each suite runs in parallel with ctest -j (the tests use their own topics, groups,
# schemas, temp dirs and ports): the unit tests with one job a core (CG_UNIT_JOBS, they use the
# CPU), the Kafka tests with CG_KAFKA_JOBS (default 4: they mostly wait on the broker and on their
# own timers). Slow tests (15 s or more) carry the label `slow` and a COST, so ctest starts them
# first; `ctest --test-dir build -LE slow` is the fast loop while developing (README, "Building by
# hand"). Measured on 2 shared cores: the Kafka suite ~7.5 min -> ~2.5 min a build. The fuzz smoke
# stays after the suites: run alongside the ASan Kafka suite it doubled that suite's time.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
started=$(date +%s)
unit_jobs=${CG_UNIT_JOBS:-$(nproc)}
kafka_jobs=${CG_KAFKA_JOBS:-4}
# each step's name and how long it took, printed at the end
times=() last_name= last_at=$started
step() {
    local now
    now=$(date +%s)
    [ -z "$last_name" ] || times+=("$(printf '%5ds  %s' $((now - last_at)) "$last_name")")
    last_name=$* last_at=$now
    printf '\n== %s (%ds)\n' "$*" $((now - started))
}

step "dependencies"
bash tests/scripts/install-deps.sh
bash tests/scripts/kafka-broker.sh fetch
bash tests/interop/hapi/hapi-peer.sh fetch # HAPI's MLLP client and server (test_hapi_interop)

step "build (warnings are errors)"
bash tests/scripts/build.sh build -DCG_WERROR=ON -DCG_BUILD_TESTS=ON

step "format (.clang-format)"
bad=()
while IFS= read -r f; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find gateway mappers include tests -name '*.[ch]')
if [ ${#bad[@]} -gt 0 ]; then
    echo "clang-format would change: ${bad[*]}" >&2
    echo "run: clang-format -i ${bad[*]}" >&2
    exit 1
fi
echo "format ok"

step "AddressSanitizer + UBSan build"
bash tests/scripts/build.sh build-asan -DCG_WERROR=ON -DCG_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
    -DCG_BUILD_TESTS=ON
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

step "unit tests"
ctest --no-tests=error --test-dir build -L unit -j"$unit_jobs" --output-on-failure

step "unit tests under AddressSanitizer + UBSan"
ctest --no-tests=error --test-dir build-asan -L unit -j"$unit_jobs" --output-on-failure

# the servers below are stopped on every exit, failed or not
pg_dir= broker_dir=
cleanup() {
    if [ -n "$broker_dir" ]; then
        bash tests/scripts/kafka-broker.sh stop "$broker_dir"
        rm -rf "$broker_dir"
    fi
    if [ -n "$pg_dir" ]; then
        bash tests/scripts/postgres.sh stop "$pg_dir"
        rm -rf "$pg_dir"
    fi
}
trap cleanup EXIT

step "PostgreSQL server"
pg_dir=$(mktemp -d /tmp/cohortgate-pg.XXXXXX)
eval "$(bash tests/scripts/postgres.sh start "$pg_dir")"
export COHORTGATE_TEST_PG

step "PostgreSQL conformance tests against $COHORTGATE_TEST_PG"
# (the tests that need the broker too, labels kafka and pg, run with the Kafka tests below)
ctest --no-tests=error --test-dir build -L pg -LE kafka -j"$unit_jobs" --output-on-failure
ctest --no-tests=error --test-dir build-asan -L pg -LE kafka -j"$unit_jobs" --output-on-failure

step "Apache Kafka broker"
broker_dir=$(mktemp -d /tmp/cohortgate-kafka.XXXXXX)
eval "$(bash tests/scripts/kafka-broker.sh start "$broker_dir")"
export COHORTGATE_TEST_BOOTSTRAP

step "Kafka integration tests against $COHORTGATE_TEST_BOOTSTRAP (and $COHORTGATE_TEST_PG for the sink's)"
ctest --no-tests=error --test-dir build -L kafka -j"$kafka_jobs" --output-on-failure
echo "the broker's own log shows the test topics it created:"
# (awk reads to the end: `| head` would end sort with SIGPIPE, and pipefail would stop the run)
grep -o "Created log for partition cg-it-[^ ]*" "$broker_dir/server.log" | sort -u | awk 'NR <= 5' 
n=$(grep -c "Created log for partition cg-it-" "$broker_dir/server.log" || true)
echo "($n test topic partitions in $broker_dir/server.log)"
[ "$n" -gt 0 ]

step "Kafka integration tests under AddressSanitizer + UBSan"
ctest --no-tests=error --test-dir build-asan -L kafka -j"$kafka_jobs" --output-on-failure

# (not alongside the Kafka suites: on 2 cores the fuzzers' CPU doubled the ASan suite's time)
if [ -f tests/scripts/fuzz-smoke.sh ]; then
    step "fuzz smoke"
    bash tests/scripts/fuzz-smoke.sh
fi

step "all tests passed"
printf '%s\n' "${times[@]}"
