#!/usr/bin/env bash
# test_pg_specs.sh COHORTGATE CG_OMOP_LOAD SOURCE_DIR - OMOP conformance of the shipped specs:
# every row they produce from the golden inputs (HL7 v2 and C-CDA) and from ../shared/corpus's
# hl7v2 and ccda folders (when present) must insert into the CDM tables of a real PostgreSQL server (COHORTGATE_TEST_PG) with no type,
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
# the documents of the C-CDA cases, in each case's order (a replacement after what it replaces)
mapfile -t docs < <(find "$src"/tests/golden -name '*.xml' | sort)
check golden_ccda -- "${docs[@]}"
corpus=$src/../shared/corpus
if [ -d "$corpus/hl7v2" ]; then
    find "$corpus/hl7v2" -type f | sort >"$tmp/files"
    mapfile -t files <"$tmp/files"
    # the corpus's feeds mostly send no assigning authority: each facility is its own
    check corpus --authority-missing facility -- "${files[@]}"
else
    echo "SKIPPED corpus: $corpus/hl7v2 not found"
fi
if [ -d "$corpus/ccda" ]; then
    # its section fragments (no header) fail to map, on stderr; the documents' rows must load
    find "$corpus/ccda" -type f | sort >"$tmp/docs"
    mapfile -t files <"$tmp/docs"
    check corpus_ccda -- "${files[@]}"
else
    echo "SKIPPED corpus_ccda: $corpus/ccda not found"
fi
[ $status -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $status
