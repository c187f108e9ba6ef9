#!/usr/bin/env bash
# Graded release end to end, against the real broker and PostgreSQL: `cohortgate run` releases
# synthetic ORU/ADT traffic (cg_loadgen) to a level-3 sponsor with dates to the month, and
# `cohortgate sink` with pg.subscriber loads the sponsor's topic into its own schema. Every
# released record loads (no rejects), its audit table counts them by table and level 3, and
# every date in the database is a first of the month.
# usage: test_release_e2e.sh COHORTGATE CG_LOADGEN SOURCE_DIR (exit 77 without a broker or PG)
set -euo pipefail
cg=$1 lg=$2 root=$3
if [ -z "${COHORTGATE_TEST_BOOTSTRAP:-}" ] || [ -z "${COHORTGATE_TEST_PG:-}" ]; then
    echo "SKIPPED: COHORTGATE_TEST_BOOTSTRAP and COHORTGATE_TEST_PG are set by tests/scripts/test.sh"
    exit 77
fi
b=$COHORTGATE_TEST_BOOTSTRAP
t=cg_it_rel_$$_$RANDOM
tmp=$(mktemp -d)
export E2E_PG=$COHORTGATE_TEST_PG
cleanup() {
    psql -q "$E2E_PG" -c "DROP SCHEMA IF EXISTS $t CASCADE" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
sub='{"name": "sponsor", "topic": "'$t'.sponsor", "agreement": "D1", "expires": "2999-01-01",
      "max_level": 3, "levels": {"3": "generalize"}}'
cat >"$tmp/run.json" <<JSON
{"group_id": "$t-run", "inputs": [{"topic": "$t.raw"}],
 "output": {"topic": "$t.records", "dead_letter_topic": "$t.dlq"},
 "mapping": {"specs": "$root/specs"}, "pseudonym": {"key_file": "$root/tests/golden/key"},
 "release": {"audit_topic": "$t.audit", "subscribers": [$sub]},
 "metrics": {"listen": "off"}, "log": {"level": "warn"}, "kafka": {"bootstrap.servers": "$b"}}
JSON
cat >"$tmp/sink.json" <<JSON
{"group_id": "$t-sink", "inputs": [{"topic": "$t.sponsor"}], "output": {"sink": "pg"},
 "pg": {"conninfo_env": "E2E_PG", "schema": "$t", "subscriber": "sponsor"},
 "release": {"subscribers": [$sub]},
 "metrics": {"listen": "off"}, "log": {"level": "warn"}, "kafka": {"bootstrap.servers": "$b"}}
JSON
"$lg" produce -b "$b" -t "$t.raw" -p 2 -n 1000 >/dev/null
"$cg" check -c "$tmp/run.json" >/dev/null || fail "check refused the run config"
"$cg" run -c "$tmp/run.json" --idle-exit 3000 --no-report 2>"$tmp/run.log" ||
    fail "run: $(tail -3 "$tmp/run.log")"
"$cg" sink --init -c "$tmp/sink.json" >/dev/null 2>"$tmp/init.log" || fail "init: $(cat "$tmp/init.log")"
"$cg" sink -c "$tmp/sink.json" --idle-exit 4000 2>"$tmp/sink.log" || fail "sink: $(tail -3 "$tmp/sink.log")"
q() { psql -qtA "$E2E_PG" -c "$1"; }
rejects=$(q "SELECT count(*) FROM $t.cg_rejects")
[ "$rejects" = 0 ] || fail "$rejects record(s) rejected: $(q "SELECT reason FROM $t.cg_rejects LIMIT 3")"
audited=$(q "SELECT coalesce(sum(rows), 0) FROM $t.cohortgate_release_audit")
levels=$(q "SELECT string_agg(DISTINCT level::text, ',') FROM $t.cohortgate_release_audit")
[ "$audited" -gt 1000 ] || fail "the audit table counts $audited rows"
[ "$levels" = 3 ] || fail "levels in the audit: $levels (a level-3 sponsor)"
m=$(q "SELECT count(*) FROM $t.measurement")
[ "$m" -gt 0 ] || fail "no measurement loaded"
notfirst=$(q "SELECT count(*) FROM $t.measurement WHERE extract(day FROM measurement_date) <> 1")
[ "$notfirst" = 0 ] || fail "$notfirst measurement date(s) are not a first of the month"
persons=$(q "SELECT count(*) FROM $t.person")
echo "release e2e: $audited rows loaded for the sponsor ($m measurements, $persons persons), 0 rejects, dates to the month"
