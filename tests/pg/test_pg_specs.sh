#!/usr/bin/env bash
# test_pg_specs.sh COHORTGATE CG_OMOP_LOAD SOURCE_DIR - OMOP conformance of the shipped specs:
# every row they produce from the golden inputs and from ../shared/corpus/hl7v2 (when present)
# must insert into the CDM tables of a real PostgreSQL server (COHORTGATE_TEST_PG) with no type,
# NOT NULL or length error. Rows with a stable id arriving again (a visit updated by a later
# event) replace the earlier one, as a sink does.
set -uo pipefail
cg=$1 load=$2 src=$3
if [ -z "${COHORTGATE_TEST_PG:-}" ]; then
    echo "SKIPPED: COHORTGATE_TEST_PG not set (tests/scripts/test.sh starts PostgreSQL)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
key=$src/tests/golden/key
status=0

check() { # check NAME MAP_OPTION... -- FILE...
    local name=$1 opts=()
    shift
    while [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    # map failures (messages no spec takes, malformed input) are not this test's business
    "$cg" map --quiet --spec "$src/specs" --key-file "$key" "${opts[@]}" "$@" >"$tmp/$name.ndjson" 2>"$tmp/$name.err"
    local rows
    rows=$(grep -c '"standard":"omop-cdm-5.4"' "$tmp/$name.ndjson")
    if [ "$rows" -eq 0 ]; then
        echo "FAIL $name: no OMOP rows were produced"
        status=1
        return
    fi
    if "$load" --strict --upsert "$tmp/$name.ndjson" >"$tmp/$name.load" 2>&1; then
        echo "PASS $name: $rows OMOP row(s) inserted ($(wc -l <"$tmp/$name.err") line(s) on stderr: failures and no-record outcomes)"
        sed 's/^/    /' "$tmp/$name.load"
    else
        echo "FAIL $name: rows refused by PostgreSQL or the OMOP checker:"
        head -20 "$tmp/$name.load"
        status=1
    fi
}

check golden -- "$src"/tests/golden/*/input.hl7
corpus=$src/../shared/corpus/hl7v2
if [ -d "$corpus" ]; then
    find "$corpus" -type f | sort >"$tmp/files"
    mapfile -t files <"$tmp/files"
    # the corpus's feeds mostly send no assigning authority: each facility is its own
    check corpus --authority-missing facility -- "${files[@]}"
else
    echo "SKIPPED corpus: $corpus not found"
fi
[ $status -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $status
