#!/usr/bin/env bash
# The demo's research database (step 4 of tests/scripts/demo.sh, and the test demo_sink): the
# demo's `cohortgate run` kept running on its in-process broker while `cohortgate sink -c
# config/demo-sink.json` loads its records topic and cohort topics into the OMOP CDM v5.4 schema
# demo_cdm (dropped first: the demo's own); then a few rows per table and checks in the style of
# OHDSI's Data Quality Dashboard. Exits 1 when a check fails.
#
#   tests/scripts/demo-sink.sh [COHORTGATE]   (default build/gateway/cohortgate)
#
# The database is COHORTGATE_DEMO_PG's (a libpq connection string) when it is set, else a
# PostgreSQL server of its own (tests/scripts/postgres.sh), stopped at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cg=$(realpath "${1:-build/gateway/cohortgate}")

work=$(mktemp -d)
chmod 755 "$work" # the postgres user runs the server when this runs as root
own_pg= run_pid=
cleanup() {
    if [ -n "$run_pid" ]; then kill "$run_pid" 2>/dev/null || true; fi
    if [ -n "$own_pg" ]; then bash tests/scripts/postgres.sh stop "$work/pg" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "demo-sink: $*" >&2
    exit 1
}

if [ -z "${COHORTGATE_DEMO_PG:-}" ]; then
    own_pg=1
    pg_env=$(bash tests/scripts/postgres.sh start "$work/pg" 2>"$work/pg.log") ||
        { cat "$work/pg.log" >&2; fail "PostgreSQL did not start"; }
    COHORTGATE_DEMO_PG=$(sed -n "s/^export COHORTGATE_TEST_PG='\(.*\)'$/\1/p" <<<"$pg_env")
fi
export COHORTGATE_DEMO_PG
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$COHORTGATE_DEMO_PG" "$@"; }
psql -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS demo_cdm CASCADE"

"$cg" run -c config/demo.json --no-report 2>"$work/run.log" &
run_pid=$!
COHORTGATE_DEMO_BOOTSTRAP=
for _ in $(seq 100); do
    COHORTGATE_DEMO_BOOTSTRAP=$(sed -n 's/.*"librdkafka mock cluster on \([^ ]*\) .*/\1/p' "$work/run.log")
    [ -n "$COHORTGATE_DEMO_BOOTSTRAP" ] && break
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$COHORTGATE_DEMO_BOOTSTRAP" ] || { cat "$work/run.log" >&2; fail "the run's broker did not start"; }
export COHORTGATE_DEMO_BOOTSTRAP
"$cg" sink --init -c config/demo-sink.json
"$cg" sink -c config/demo-sink.json --idle-exit 2000
kill -TERM "$run_pid"
wait "$run_pid" || true
run_pid=

for table in person observation_period visit_occurrence condition_occurrence measurement \
    drug_exposure care_site provider; do
    echo "-- demo_cdm.$table: $(psql -At -c "SELECT count(*) FROM demo_cdm.$table") row(s)"
    psql -P footer=off -c "SELECT * FROM demo_cdm.$table ORDER BY 1 LIMIT 3"
done

# checks in the style of OHDSI's Data Quality Dashboard, on what was loaded
q() { psql -At -c "$1"; }
no_period=$(q "SELECT count(*) FROM demo_cdm.person p WHERE NOT EXISTS
    (SELECT 1 FROM demo_cdm.observation_period o WHERE o.person_id = p.person_id)")
overlaps=$(q "SELECT count(*) FROM demo_cdm.observation_period a JOIN demo_cdm.observation_period b
    ON a.person_id = b.person_id AND a.observation_period_id < b.observation_period_id
    AND a.observation_period_start_date <= b.observation_period_end_date
    AND b.observation_period_start_date <= a.observation_period_end_date")
orphans=0
for table in observation_period visit_occurrence condition_occurrence measurement drug_exposure; do
    orphans=$((orphans + $(q "SELECT count(*) FROM demo_cdm.$table t WHERE NOT EXISTS
        (SELECT 1 FROM demo_cdm.person p WHERE p.person_id = t.person_id)")))
done
applied=$(q "SELECT coalesce(sum(next_offset), 0) FROM demo_cdm.cg_offsets")
rejects=$(q "SELECT count(*) FROM demo_cdm.cg_rejects")
echo "-- checks: $no_period person(s) without an observation period, $overlaps overlapping" \
    "period(s), $orphans row(s) naming a person the database does not hold, $rejects record(s)" \
    "refused; $applied record(s) applied, their offsets in the database; ids are compact" \
    "integers (cg_id_map holds the 63-bit row identities)"
[ "$(q "SELECT count(*) FROM demo_cdm.person")" -gt 0 ] || fail "no person was loaded"
[ "$no_period$overlaps$orphans$rejects" = 0000 ] || fail "a check failed (see above)"
