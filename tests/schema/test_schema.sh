#!/usr/bin/env bash
# The envelope as a contract: specs/schema/records.schema.json is what `cohortgate schema` prints
# (generated from the target registry), and everything cohortgate writes validates against it:
# every golden output, every output of the shared corpus (beside this repository, skipped with a
# message when absent), the same with 64-bit ids as strings, and the Kafka messages of a real run
# (records, dead letters, quality records, records released to two subscribers and their audit
# records, with their headers, through the embedded broker and the file sink). Lines broken on purpose must fail, or the schema would prove nothing.
# usage: test_schema.sh COHORTGATE SOURCE_DIR
set -euo pipefail
cg=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
validate() { python3 "$root/tests/schema/validate.py" "$@"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# 1. the repository's copy is the generated one
"$cg" schema >"$tmp/schema.json"
"$cg" schema --ids-as-strings >"$tmp/schema-str.json"
diff -u "$root/specs/schema/records.schema.json" "$tmp/schema.json" >"$tmp/drift" ||
    fail "specs/schema/records.schema.json is stale: run \`cohortgate schema > specs/schema/records.schema.json\`
$(head -40 "$tmp/drift")"
schema=$root/specs/schema/records.schema.json

# 2. the golden outputs
validate "$schema" "$root"/tests/golden/*/expected.ndjson

# and with --trace and --cohorts: each column's trace and each cohort's rule
"$cg" map -q --trace --spec "$root/specs" --key-file "$root/tests/golden/key" \
    --cohorts "$root/specs/cohorts" "$root"/tests/golden/*/input.hl7 >"$tmp/trace.ndjson" 2>/dev/null || true
grep -q '"cohort_rules":{"t2dm":"match\[' "$tmp/trace.ndjson" || fail "no record with its cohort rule traced"
validate "$schema" "$tmp/trace.ndjson"

# 3. lines broken on purpose are refused (each alone)
line=$(grep -h -m1 '"table":"measurement","op":"upsert"' "$root"/tests/golden/*/expected.ndjson | sed -n 1p)
[ -n "$line" ] || fail "no golden measurement upsert to break"
i=0
for edit in 's/"measurement_date":"\([0-9-]*\)"/"measurement_date":"bad"/' \
    's/"person_id":\([0-9]*\),//' \
    's/"person_id":\([0-9]*\)/"person_id":"\1"/' \
    's/"op":"upsert"/"op":"merge"/' \
    's/"row":{/"row":{"no_such_column":1,/' \
    's/"standard":"omop-cdm-5.4"/"standard":"cohortgate"/' \
    's/,"source":{.*}}$/}/'; do
    i=$((i + 1))
    echo "$line" | sed "$edit" >"$tmp/bad$i.ndjson"
    cmp -s <(echo "$line") "$tmp/bad$i.ndjson" && fail "edit $edit changed nothing"
    if validate "$schema" "$tmp/bad$i.ndjson" >/dev/null 2>&1; then
        fail "a broken record passed the schema: $edit"
    fi
done
echo "test_schema: $i broken records refused"

# 4. the shared corpus, as numbers and as strings; its feeds mostly send no assigning authority
#    (PID-3.4), so each sending facility is the authority of its own numbers
#    (pseudonym.authorities.missing "facility")
corpus=$root/../shared/corpus
export COHORTGATE_PSEUDONYM_KEY=
if [ -d "$corpus" ]; then
    find "$corpus" -type f | sort >"$tmp/files"
    xargs -a "$tmp/files" -d '\n' "$cg" map -q --spec "$root/specs" --key-file "$root/tests/golden/key" \
        --authority-missing facility --cohorts "$root/specs/cohorts" >"$tmp/corpus.ndjson" 2>/dev/null || true
    [ -s "$tmp/corpus.ndjson" ] || fail "the corpus mapped to nothing"
    validate "$schema" "$tmp/corpus.ndjson"
    xargs -a "$tmp/files" -d '\n' "$cg" map -q --ids-as-strings --spec "$root/specs" \
        --key-file "$root/tests/golden/key" --authority-missing facility >"$tmp/corpus-str.ndjson" 2>/dev/null || true
    validate "$tmp/schema-str.json" "$tmp/corpus-str.ndjson"
    # strings are not numbers: the default schema must refuse them. 50 records with a string
    # person_id show it (the whole corpus, every line failing, took the validator ~40 s to report).
    grep -m 50 '"person_id":"' "$tmp/corpus-str.ndjson" >"$tmp/some-str.ndjson" ||
        fail "no corpus record with person_id as a string"
    if validate "$schema" "$tmp/some-str.ndjson" >/dev/null 2>&1; then
        fail "ids as strings passed the schema of ids as numbers"
    fi
else
    echo "test_schema: SKIP corpus: $corpus not found (the project workspace's shared corpus)"
fi

# 5. a real run: the demo feeds and every golden input through the embedded broker into the
#    file sink, whose lines are the Kafka messages with their headers
mkdir "$tmp/feeds"
cp "$root"/config/demo/feeds/* "$tmp/feeds/"
for d in "$root"/tests/golden/*/; do
    for f in "$d"*; do
        [ -f "$f" ] || continue
        case $f in *expected* | */key | */case.json) continue ;; esac
        cp "$f" "$tmp/feeds/$(basename "$d")-$(basename "$f")"
    done
done
for ids in false true; do
    cat >"$tmp/run.json" <<JSON
{"group_id": "schema", "inputs": [{"topic": "raw", "format": "auto"}],
 "output": {"sink": "file", "file": {"path": "$tmp/out-$ids.ndjson"}, "ids_as_strings": $ids,
            "outcome_topic": "cohortgate.outcomes"},
 "mapping": {"specs": "$root/specs"},
 "pseudonym": {"key_file": "$root/tests/golden/key"},
 "cohorts": {"path": "$root/specs/cohorts"},
 "release": {"subscribers": [
   {"name": "sponsor", "topic": "release.sponsor", "agreement": "DUA-1", "expires": "2999-12-31",
    "max_level": 3, "levels": {"3": "generalize"}},
   {"name": "registry", "topic": "release.registry", "agreement": "DUA-2", "expires": "2999-12-31",
    "max_level": 5, "free_text": true}]},
 "metrics": {"listen": "off"}, "log": {"level": "error"},
 "embedded_broker": {"enabled": true, "partitions": 2,
                     "preload": [{"topic": "raw", "dir": "$tmp/feeds"}]}}
JSON
    "$cg" run -c "$tmp/run.json" --idle-exit 1000 --no-report >"$tmp/run.log" 2>&1 ||
        fail "run failed: $(tail -5 "$tmp/run.log")"
    s=$schema
    [ $ids = true ] && s=$tmp/schema-str.json
    validate "$s" --kafka "$tmp/out-$ids.ndjson" | tee "$tmp/v.txt"
    for kind in "dead letter" quality record "released record" audit outcome; do
        grep -q "[1-9][0-9]* $kind" "$tmp/v.txt" || fail "the run wrote no $kind"
    done
done
echo "test_schema: ok"
