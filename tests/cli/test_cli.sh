#!/usr/bin/env bash
# test_cli.sh COHORTGATE SOURCE_DIR - the command line as a user meets it: help, exit codes,
# error formats, map/check/test/parse on real files. Prints "N passed, N failed".
set -uo pipefail
cg=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
no() {
    fail=$((fail + 1))
    echo "FAIL: $*"
}
# expect STATUS DESCRIPTION -- COMMAND...; stdout/stderr land in $tmp/out, $tmp/err
expect() {
    local want=$1 what=$2
    shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" = "$want" ]; then ok; else no "$what: exit $got, expected $want ($(head -c 300 "$tmp/err"))"; fi
}
has() { # has FILE PATTERN DESCRIPTION
    if grep -qE -- "$2" "$1"; then ok; else no "$3: /$2/ not in $(basename "$1"): $(head -c 300 "$1")"; fi
}
export COHORTGATE_PSEUDONYM_KEY=cli-test-key-cli-test-key-cli-test-key-0001

# top level
expect 0 "--help" -- "$cg" --help
for c in run listen sink map parse check test; do has "$tmp/out" "^  $c " "--help lists $c"; done
expect 0 "--version" -- "$cg" --version
has "$tmp/out" '^cohortgate [0-9]+\.[0-9]+\.[0-9]+$' "--version prints the version"
expect 2 "unknown command" -- "$cg" frobnicate
has "$tmp/err" "unknown command 'frobnicate'" "unknown command named"
for c in run listen sink map parse check test; do
    expect 0 "$c --help" -- "$cg" "$c" --help
    has "$tmp/out" "^usage: cohortgate $c" "$c --help shows its usage"
done

# parse
expect 0 "parse --get" -- "$cg" parse --get MSH-9.1 --get 'PID-3[*].1' "$src/tests/golden/oru_r01_batch/input.hl7"
has "$tmp/out" $'^ORU\t300112$' "parse --get first message"
has "$tmp/out" $'^ORU\t300113$' "parse --get second message of the batch"
expect 0 "parse --get with a selector" -- "$cg" parse --get 'PID-3[5=XX|*].1' --get 'PID-3[5=XX].1' "$src/tests/golden/identifiers_by_type/2_oru_r01.hl7"
has "$tmp/out" $'^110101196704120023\t$' "parse --get: a selector's fallback, and no match"
printf 'MSH|^~\\&|A|B\rPID|1\r' >"$tmp/bad.hl7"
printf 'junk' >>"$tmp/bad.hl7"
expect 0 "parse --stats" -- "$cg" parse --stats "$src/tests/golden/oru_r01_results/input.hl7"
has "$tmp/out" '"messages": ?1' "parse --stats counts messages"

# map: refuses without a key, maps with one, errors with file and message number
expect 1 "map without a key" -- env -u COHORTGATE_PSEUDONYM_KEY "$cg" map --spec "$src/specs" "$src/tests/golden/oru_r01_results/input.hl7"
has "$tmp/err" "refusing to emit unkeyed pseudonyms" "map says why it refuses"
expect 0 "map" -- "$cg" map --spec "$src/specs" "$src/tests/golden/oru_r01_results/input.hl7"
has "$tmp/out" '"table":"measurement"' "map prints measurement rows"
[ "$(wc -l <"$tmp/out")" -eq 5 ] && ok || no "map prints 5 records for oru_r01_results"
expect 0 "map --trace" -- "$cg" map --trace --spec "$src/specs" "$src/tests/golden/oru_r01_results/input.hl7"
has "$tmp/out" '"trace":\{"measurement_id":\{"rule":"obx-numeric"' "map --trace adds the trace"
has "$tmp/out" '"measurement_concept_id":\{"rule":"obx-numeric","source":"OBX-3.1","steps":"lookup LN' "map --trace names the vocabulary row"

# map --for: what a subscriber would get (graded release): an HIV diagnosis withheld from a
# level-3 sponsor, dates to the month, its own person_id
cat >"$tmp/rel.json" <<JSON
{"inputs": [{"topic": "raw"}], "kafka": {"bootstrap.servers": "127.0.0.1:9"},
 "mapping": {"specs": "$src/specs"},
 "release": {"subscribers": [{"name": "sponsor", "topic": "rel.s", "agreement": "D1",
   "expires": "2999-01-01", "max_level": 3, "levels": {"3": "generalize"}}]}}
JSON
printf 'MSH|^~\\&|EPIC|GENHOSP|CG|RES|20240314101500||ADT^A01^ADT_A01|M1|P|2.5.1\rPID|1||MRN-1^^^GENHOSP^MR||Doe^Jane||19670412|F\rPV1|1|I|4W^402^B^GENHOSP||||||||MED|||||||||V-1|||||||||||||||||||||||||20240314080000\rDG1|1||B20.1^HIV disease^I10||20240314|A\rDG1|2||E11.9^T2DM^I10||20240314|A\r' >"$tmp/hiv.hl7"
expect 0 "map --for" -- "$cg" map -q --spec "$src/specs" --for sponsor --config "$tmp/rel.json" "$tmp/hiv.hl7"
has "$tmp/out" '"condition_source_value":"E11.9"' "map --for releases the diabetes row"
if grep -q 'B20' "$tmp/out"; then no "map --for released the HIV row to a level-3 sponsor"; else ok; fi
has "$tmp/out" '"condition_start_date":"2024-03-01"' "map --for: dates to the month"
has "$tmp/err" 'released to sponsor: [0-9]+ record\(s\); withheld: 0 table_not_granted, 0 not_in_cohort, 1 above_level' "map --for counts the withheld row"
"$cg" map -q --spec "$src/specs" "$tmp/hiv.hl7" >"$tmp/site.out" 2>/dev/null
site_pid=$(grep -o '"person_id":[0-9]*' "$tmp/site.out" | head -1)
if grep -q "$site_pid" "$tmp/out"; then no "map --for kept the site's person_id"; else ok; fi
expect 2 "map --for without --config" -- "$cg" map --spec "$src/specs" --for sponsor "$tmp/hiv.hl7"
expect 2 "map --for an undeclared subscriber" -- "$cg" map --spec "$src/specs" --for nobody --config "$tmp/rel.json" "$tmp/hiv.hl7"
has "$tmp/err" "declares no subscriber 'nobody'" "map --for names the missing subscriber"
# a cohort-scoped subscriber gets a result of its cohort and the result's delete (OBX-11 D),
# whose values say nothing of a cohort: every cohort gets a delete
cat >"$tmp/relc.json" <<JSON
{"inputs": [{"topic": "raw"}], "kafka": {"bootstrap.servers": "127.0.0.1:9"},
 "mapping": {"specs": "$src/specs"},
 "release": {"subscribers": [{"name": "sponsor", "topic": "rel.s", "agreement": "D1",
   "expires": "2999-01-01", "max_level": 3, "cohorts": ["t2dm"]}]}}
JSON
expect 0 "map --for a cohort's subscriber" -- "$cg" map --spec "$src/specs" --cohorts "$src/specs/cohorts" --for sponsor --config "$tmp/relc.json" "$src/tests/golden/lifecycle_result/input.hl7"
has "$tmp/err" 'released to sponsor: 4 record\(s\); withheld: 0 table_not_granted, 0 not_in_cohort' "map --for releases a cohort's result and its delete"
has "$tmp/out" '"op":"delete"' "map --for: the delete is among them"
# identifiers by type (specs/README.md, "Which identifier is the patient's"): --param sets it
printf 'MSH|^~\\&|A|H|C|R|20240101||ADT^A04|P1|P|2.5.1\rPID|1||H1^^^H^MR~N1^^^CHN^NNCHN||DOE||19600101|F\r' >"$tmp/a04.hl7"
expect 0 "map --param" -- "$cg" map --spec "$src/specs" --param 'patient_id_types=NNCHN|*' "$tmp/a04.hl7"
cp "$tmp/out" "$tmp/typed"
expect 0 "map, the first identifier" -- "$cg" map --spec "$src/specs" "$tmp/a04.hl7"
cmp -s "$tmp/out" "$tmp/typed" && no "patient_id_types changes the person" || ok
expect 1 "map --param of no spec" -- "$cg" map --spec "$src/specs" --param 'patient_id_typo=MR' "$tmp/a04.hl7"
has "$tmp/err" "parameter 'patient_id_typo': no loaded spec declares it" "an unknown parameter is named"
expect 2 "map --param without =" -- "$cg" map --spec "$src/specs" --param 'patient_id_types' "$tmp/a04.hl7"
# assigning authorities (specs/README.md, "What a pseudonym depends on"): refused without one
printf 'MSH|^~\\&|A|HOSP_A|C|R|20240101||ADT^A04|Q1|P|2.5.1\rPID|1||88001||DOE||19600101|F\r' >"$tmp/hosp_a.hl7"
printf 'MSH|^~\\&|A|HOSP_B|C|R|20240101||ADT^A04|Q2|P|2.5.1\rPID|1||88001||DOE||19600101|F\r' >"$tmp/hosp_b.hl7"
expect 1 "map: no assigning authority" -- "$cg" map --spec "$src/specs" "$tmp/hosp_a.hl7"
has "$tmp/err" 'hosp_a.hl7: message 1: map: the patient identifier \(PID-3\[5=\*\]\.1\) has no assigning authority' "map names the missing authority"
grep -q 88001 "$tmp/err" && no "the refusal quotes the identifier" || ok
expect 0 "map --authority-missing facility" -- "$cg" map --spec "$src/specs" --authority-missing facility "$tmp/hosp_a.hl7" "$tmp/hosp_b.hl7"
[ "$(grep -o '"person_id":[0-9]*' "$tmp/out" | sort -u | wc -l)" = 2 ] && ok || no "two hospitals' 88001 are two persons"
expect 0 "map --authority-default" -- "$cg" map --spec "$src/specs" --authority-default HOSP_A=MRN --authority-default HOSP_B=MRN "$tmp/hosp_a.hl7" "$tmp/hosp_b.hl7"
[ "$(grep -o '"person_id":[0-9]*' "$tmp/out" | sort -u | wc -l)" = 1 ] && ok || no "one default for both facilities: one person"
expect 2 "map --authority-missing merge" -- "$cg" map --spec "$src/specs" --authority-missing merge "$tmp/hosp_a.hl7"
has "$tmp/err" "--authority-missing is refuse or facility" "a bad --authority-missing is named"
expect 2 "map --authority-alias without =" -- "$cg" map --spec "$src/specs" --authority-alias HOSP_A "$tmp/hosp_a.hl7"
expect 1 "check --spec, an alias chain" -- "$cg" check --spec "$src/specs" --authority-alias A=B --authority-alias B=C
has "$tmp/err" "'A' maps to 'B', which is itself an alias" "check --spec refuses an alias chain"
# warnings: check prints them located and passes, map --strict refuses them
cat >"$tmp/warn.json" <<'JSON'
{"spec": "w", "version": 1, "input": {"format": "hl7v2", "messages": ["ORM^O1"]},
 "patient": {"id": "PID-3.1"},
 "rules": [{"name": "p", "table": "procedure_occurrence", "foreach": "OBR[*]",
   "columns": {"person_id": {"patient": "person_id"}, "procedure_concept_id": "OBR-4.1",
     "procedure_date": {"path": "OBR-7", "pipe": ["date"]}, "procedure_type_concept_id": "EHR"}}]}
JSON
expect 0 "check --spec with warnings" -- "$cg" check --spec "$tmp/warn.json"
has "$tmp/err" 'warn.json:1:71: warning: .O1. is not an HL7 v2 trigger event' "check warns about ORM^O1, located"
has "$tmp/err" 'warn.json:4:79: warning: rule .p.: procedure_concept_id is a concept id' "check warns about a raw concept id"
has "$tmp/err" 'warning: rule .p.: "EHR" is a path' "check warns about a bare string segment"
has "$tmp/err" 'warn.json:2:13: warning: "patient" has no "authority"' "check warns about a patient without an authority"
has "$tmp/out" 'ok \(1 spec\(s\), 5 warning\(s\)\)' "check counts the warnings"
expect 1 "map --strict" -- "$cg" map --strict --spec "$tmp/warn.json" "$tmp/a04.hl7"
has "$tmp/err" 'warn.json:1:71: error: .O1. is not' "map --strict makes them errors"
expect 0 "check --spec specs: no warnings" -- "$cg" check --spec "$src/specs"
[ -s "$tmp/err" ] && no "the shipped specs have warnings: $(head -c 300 "$tmp/err")" || ok
expect 1 "map with failing messages" -- "$cg" map --spec "$src/specs" "$src/tests/golden/errors_are_reported/input.hl7"
has "$tmp/err" 'input.hl7: message 2: map: the patient identifier' "map names file and message"
[ "$(wc -l <"$tmp/out")" -eq 1 ] && ok || no "map still prints the good message's record"
# map: a C-CDA entry that fails is left out (on_error "entry"): the rest on stdout, the finding on
# stderr without the value, exit 0; the same from stdin
doc="$src/tests/golden/cda_entry_left_out/input.xml"
expect 0 "map a document with bad entries" -- "$cg" map --spec "$src/specs" "$doc"
[ "$(wc -l <"$tmp/out")" -eq 3 ] && ok || no "map prints the 3 records of the good entries"
has "$tmp/err" 'input.xml: document 1: quality: map: rule encounters, column visit_start_date, entry 2 at /ClinicalDocument/component/structuredBody/component\[2\]/section/entry\[2\]/encounter \(line 35\): left out: invalid_datetime' "map prints the finding"
[ "$(grep -c ': quality: ' "$tmp/err")" -eq 2 ] && ok || no "map prints one line per entry left out"
grep -qE '200130212|2024-13-45|P1' "$tmp/err" "$tmp/out" && no "a finding or record quotes the bad value" || ok
expect 0 "map a document with bad entries from stdin" -- sh -c "\"$cg\" map --spec \"$src/specs\" - <\"$doc\""
has "$tmp/err" '^-: document 1: quality: map: rule problem' "map names stdin in the finding"
expect 0 "map from stdin" -- sh -c "\"$cg\" map --spec \"$src/specs\" - <\"$src/tests/golden/vxu_v04_immunization/input.hl7\""
has "$tmp/out" '"table":"drug_exposure"' "map reads stdin"

# inputs that hold no message fail as `run` dead-letters the same bytes (one record each): the
# same stage and reason, from a file and from stdin; a message that maps to no record is a line
# on stderr with its outcome, not a failure
: >"$tmp/empty.hl7"
printf '\xef\xbb\xbf' >"$tmp/bom.hl7"
printf '\x0b\x1c\x0d' >"$tmp/frame.hl7"
printf 'FHS|^~\\&|LAB|H\rFTS|0\r' >"$tmp/fhs.hl7"
for f in empty bom frame fhs; do
    expect 1 "map $f input" -- "$cg" map --spec "$src/specs" "$tmp/$f.hl7"
    has "$tmp/err" "^$tmp/$f.hl7: message 1: decode: byte [0-9]+: empty input: no MSH segment$" "map fails the $f input as run does"
    [ -s "$tmp/out" ] && no "map prints no record for the $f input" || ok
    expect 1 "map $f input from stdin" -- sh -c "\"$cg\" map --spec \"$src/specs\" - <\"$tmp/$f.hl7\""
    has "$tmp/err" "^-: message 1: decode: byte [0-9]+: empty input: no MSH segment$" "map fails the $f input on stdin"
done
printf 'MSH|^~\\&|LAB|H|CG|R|20240314||ORU^R01|N1|P|2.5.1\rPID|1||4711^^^H\rOBR|1|P1|F1|4548-4^HbA1c^LN\r' >"$tmp/no_obx.hl7"
expect 0 "map an ORU without OBX" -- "$cg" map --spec "$src/specs" "$tmp/no_obx.hl7"
has "$tmp/err" "no_obx.hl7: message 1: no_rows: ORU\^R01: a spec took it and no rule made a row" "map shows the no-rows outcome"
[ -s "$tmp/out" ] && no "no record for an ORU without OBX" || ok

# no raw patient identifier (PID-3) of any input reaches the output
"$cg" map --spec "$src/specs" "$src"/tests/golden/*/input.hl7 >"$tmp/all.ndjson" 2>/dev/null
"$cg" parse --get 'PID-3[*].1' "$src"/tests/golden/*/input.hl7 2>/dev/null | tr '~' '\n' | sort -u | grep -v '^$' >"$tmp/ids"
[ -s "$tmp/ids" ] && ok || no "found PID-3 identifiers in the inputs"
leaked=$(grep -owFf "$tmp/ids" "$tmp/all.ndjson" | sort -u | head -3)
[ -z "$leaked" ] && ok || no "raw PID-3 identifiers in the output: $leaked"

# a C-CDA document in UTF-16 (with a BOM, and big endian without one) maps as its UTF-8 self
doc="$src/tests/golden/cda_ccd_sections/input.xml"
if [ -f "$doc" ] && command -v iconv >/dev/null; then
    iconv -f UTF-8 -t UTF-16 "$doc" >"$tmp/u16.xml"
    iconv -f UTF-8 -t UTF-16BE "$doc" >"$tmp/u16be.xml"
    "$cg" map -q --key-file "$src/tests/golden/key" --spec "$src/specs" "$doc" >"$tmp/u8.out" 2>/dev/null
    for f in u16 u16be; do
        expect 0 "map $f.xml" -- "$cg" map -q --key-file "$src/tests/golden/key" --spec "$src/specs" "$tmp/$f.xml"
        if [ -s "$tmp/u8.out" ] && cmp -s "$tmp/out" "$tmp/u8.out"; then ok; else no "$f.xml maps as its UTF-8 self"; fi
    done
else
    no "the golden C-CDA document $doc (or iconv) is missing"
fi
# error reasons (map's stderr, the dead-letter header cg.error.reason) never quote an input value
for m in "MK1|19800101|MARKERNUM|20240314" "MK2|MARKERDOB|6.5|20240314" "MK3|19800101|6.5|MARKERDATE"; do
    IFS='|' read -r id dob val when <<<"$m"
    printf 'MSH|^~\\&|LIS|LAB|CG|CG|20240314101500||ORU^R01|%s|P|2.5\rPID|1||%s^^^HOSP^MR||ROE^ANN||%s|F\rOBR|1|O%s||4548-4^HbA1c^LN\rOBX|1|NM|4548-4^HbA1c^LN||%s|%%|||||F|||%s\r' \
        "$id" "$id" "$dob" "$id" "$val" "$when"
done >"$tmp/marked.hl7"
"$cg" map -q --key-file "$src/tests/golden/key" --spec "$src/specs" "$tmp/marked.hl7" >"$tmp/out" 2>"$tmp/err"
n=$(grep -c ': map: ' "$tmp/err" || true)
if [ "$n" -ge 1 ]; then ok; else no "a marked message fails in map: $(head -c 300 "$tmp/err")"; fi
if grep -q MARKER "$tmp/err"; then no "an error reason quotes a value: $(grep MARKER "$tmp/err" | head -2)"; else ok; fi
# the decoder's errors too: junk where a message should start, and (strict) a line that is no
# segment, such as a wrapped note; neither is quoted, not even its first letters
printf 'MKJUNK Roe Ann 19800101\rMSH|^~\\&|LIS|LAB|CG|CG|20240314101500||ORU^R01|MK4|P|2.5\rPID|1||MK4^^^HOSP^MR\rMKLINE Roe Ann called\r' >"$tmp/marked-decode.hl7"
"$cg" parse --strict-segments "$tmp/marked-decode.hl7" >/dev/null 2>"$tmp/err" || true
if [ "$(grep -c 'expected an MSH segment, found other text\|does not start with a 3-character segment name' "$tmp/err")" = 2 ]; then ok; else no "decoder errors on marked input: $(head -c 300 "$tmp/err")"; fi
if grep -q 'MK\|Roe' "$tmp/err"; then no "a decoder error quotes the input: $(grep 'MK\|Roe' "$tmp/err" | head -2)"; else ok; fi
# check: every error, located
cat >"$tmp/bad-spec.json" <<'JSON'
{"spec": "bad", "version": 1,
 "input": {"format": "hl7v2", "messages": ["ORU^R01"]},
 "rules": [{"name": "r", "table": "measurement",
   "columns": {"person_id": 1, "measurement_concept_id": {"path": "OBX-3.1", "pipe": ["nope"]},
               "measurement_date": "OBX-14", "measurement_type_concept_id": "OBX-99x"}}]}
JSON
expect 1 "check --spec with errors" -- "$cg" check --spec "$tmp/bad-spec.json"
has "$tmp/err" "bad-spec.json:4:87: error: rule 'r': unknown transform 'nope'" "check locates the transform"
has "$tmp/err" "bad-spec.json:5:.*rule 'r'.*OBX-99x" "check reports the second error too"
expect 0 "check --spec shipped" -- "$cg" check --spec "$src/specs"
expect 0 "check -c demo" -- "$cg" check -c "$src/config/demo.json"
# layers: --spec twice adds (a second --spec used to replace the first); check reports each layer
site="$src/tests/golden/site_two_layers/site"
expect 0 "check --spec twice" -- "$cg" check --spec "$src/specs" --spec "$site/specs" --vocab "$src/specs/vocab" --vocab "$site/vocab"
has "$tmp/out" "specs: ok \\(9 spec\\(s\\) from 2 layers\\)" "check compiles both spec layers"
has "$tmp/out" "specs layer 2 .*site/specs: 1 spec\\(s\\) \\(site-omi-omop\\)" "check names what the site layer adds"
has "$tmp/out" "vocab layer 2 .*site/vocab: 4 code\\(s\\) \\(99HLAB, 99HIMG\\), 2 reviewed as no mapping" "check counts the site's vocabulary"
# a site spec folder alone has no vocabulary: a warning, not silence (exit 0)
expect 0 "check a site layer alone" -- "$cg" check --spec "$site/specs"
has "$tmp/err" "site-omi-omop.json: warning: spec 'site-omi-omop' looks codes up .* no vocabulary is loaded" "check warns about lookups with no vocabulary"
cat >"$tmp/layers.json" <<EOF
{"inputs": [{"topic": "raw"}], "kafka": {"bootstrap.servers": "127.0.0.1:9"},
 "pseudonym": {"key_file": "$src/tests/golden/key"},
 "mapping": {"specs": ["$src/specs", "$site/specs"], "vocab": ["$src/specs/vocab", "$site/vocab"]}}
EOF
expect 0 "check -c with layer lists" -- "$cg" check -c "$tmp/layers.json"
has "$tmp/out" "specs layer 2 .*site/specs: 1 spec\\(s\\)" "check -c reports the config's spec layers"
has "$tmp/out" "vocab layer 2 .*site/vocab: 4 code\\(s\\)" "check -c reports the config's vocabulary layers"
expect 0 "map with two spec layers" -- "$cg" map --spec "$src/specs" --spec "$site/specs" --vocab "$src/specs/vocab" --vocab "$site/vocab" "$src/tests/golden/site_two_layers/1-oru-local-codes.hl7" "$src/tests/golden/site_two_layers/2-omi-site-spec.hl7"
has "$tmp/out" '"measurement_concept_id":3004410,.*"measurement_source_value":"GLYHB"' "map looks a local code up in the site's STCM"
has "$tmp/out" '"spec":"site-omi-omop"' "map applies the site's spec"
printf '{"inputs":[{"topic":"x"}],\n "kafka":{"bootstrap.servers":"h:1"},\n "outptu":{}}' >"$tmp/bad.json"
expect 1 "check -c with an unknown key" -- "$cg" check -c "$tmp/bad.json"
has "$tmp/err" "bad.json:3:2: error: unknown setting 'outptu'" "config error located"
# check loads what run loads: a config whose key file is missing fails as run would
sed -e "s#\"demo/pseudonym.key\"#\"$tmp/no-such.key\"#" -e "s#\"\\.\\./specs#\"$src/specs#" \
    -e "s#\"demo/feeds\"#\"$src/config/demo/feeds\"#" "$src/config/demo.json" >"$tmp/nokey.json"
expect 1 "check -c with a missing key file" -- "$cg" check -c "$tmp/nokey.json"
has "$tmp/err" "^error: pseudonym key file .*no-such.key" "check names the missing key file"
# check warns (exit 0) about a key file others can read and /metrics beyond loopback
cp "$src/tests/golden/key" "$tmp/open.key" && chmod 644 "$tmp/open.key"
sed -e "s#\"demo/pseudonym.key\"#\"$tmp/open.key\"#" -e "s#\"\\.\\./specs#\"$src/specs#" \
    -e "s#\"demo/feeds\"#\"$src/config/demo/feeds\"#" -e 's#"log": {#"metrics": {"listen": "0.0.0.0:9464"}, "log": {#' \
    "$src/config/demo.json" >"$tmp/exposed.json"
expect 0 "check -c with an exposed key and metrics" -- "$cg" check -c "$tmp/exposed.json"
has "$tmp/err" "warning: pseudonym.key_file .*open.key can be read or written by group or others \\(mode 644\\)" "check warns about the key file's mode"
has "$tmp/err" "warning: metrics.listen 0.0.0.0:9464 serves /metrics" "check warns about metrics beyond loopback"
chmod 600 "$tmp/open.key"
sed -e 's#"0.0.0.0:9464"#"127.0.0.1:9464"#' "$tmp/exposed.json" >"$tmp/closed.json"
expect 0 "check -c with a private key and loopback metrics" -- "$cg" check -c "$tmp/closed.json"
if grep -q warning "$tmp/err"; then no "no warnings for a private key and loopback metrics"; else ok; fi
# the README's example, on a fresh checkout: the key and the Kafka password from the environment
expect 0 "check -c config/production.json" -- env COHORTGATE_KAFKA_PASSWORD=not-shown "$cg" check -c "$src/config/production.json"
expect 1 "check -c config/production.json without the Kafka password" -- env -u COHORTGATE_KAFKA_PASSWORD "$cg" check -c "$src/config/production.json"
has "$tmp/err" "production.json:[0-9]+:[0-9]+: error: 'kafka.sasl.password' comes from the environment variable COHORTGATE_KAFKA_PASSWORD, which is not set" "the missing password is located"
# a Kafka password written in the config is a warning (exit 0), never printed; from the environment
# it is none
sed -e "s#\"demo/pseudonym.key\"#\"$tmp/open.key\"#" -e "s#\"\\.\\./specs#\"$src/specs#" \
    -e "s#\"demo/feeds\"#\"$src/config/demo/feeds\"#" -e 's#"log": {#"kafka": {"sasl.password": "hunter2"}, "log": {#' \
    "$src/config/demo.json" >"$tmp/pw.json"
expect 0 "check -c with a Kafka password in the file" -- "$cg" check -c "$tmp/pw.json"
has "$tmp/err" "pw.json: warning: kafka.sasl.password is written in the config" "check warns about a password in the file"
if grep -q hunter2 "$tmp/err" "$tmp/out"; then no "the password is printed"; else ok; fi
sed -e 's#"sasl.password": "hunter2"#"sasl.password": {"env": "CG_CLI_TEST_PW"}#' "$tmp/pw.json" >"$tmp/pw-env.json"
CG_CLI_TEST_PW=hunter2 expect 0 "check -c with a Kafka password from the environment" -- "$cg" check -c "$tmp/pw-env.json"
if grep -q 'kafka.sasl.password' "$tmp/err"; then no "a password from the environment is warned about"; else ok; fi
# mapping.params: the specs' parameters from the config; a name no spec declares is refused
sed -e 's#"specs": "\([^"]*\)"#"specs": "\1", "params": {"patient_id_types": "NNCHN|MR|*"}#' "$tmp/closed.json" >"$tmp/params.json"
expect 0 "check -c with mapping.params" -- "$cg" check -c "$tmp/params.json"
sed -e 's#"patient_id_types"#"patient_id_type"#' "$tmp/params.json" >"$tmp/params-typo.json"
expect 1 "check -c with a misspelt mapping.params" -- "$cg" check -c "$tmp/params-typo.json"
has "$tmp/err" "parameter 'patient_id_type': no loaded spec declares it" "check -c names the unknown parameter"
# a listener's config: no inputs, no specs; its address and key are checked
sed -e "s#/etc/cohortgate/pseudonym.key#$src/tests/golden/key#" "$src/config/listen.json" >"$tmp/listen.json"
expect 0 "check -c listen" -- "$cg" check -c "$tmp/listen.json"
has "$tmp/out" "MLLP listener" "check -c knows a listener"
sed -e "s#127.0.0.1:2575#127.0.0.1#" "$tmp/listen.json" >"$tmp/listen-bad.json"
expect 1 "check -c listen with a bad address" -- "$cg" check -c "$tmp/listen-bad.json"
has "$tmp/err" "listen.address" "the bad address is named"
expect 1 "listen with a Kafka source" -- "$cg" listen -c "$src/config/demo.json"
has "$tmp/err" '^\{"ts":.*"level":"error","event":"gateway.start_failed","msg":"cohortgate listen: .*demo.json: '"'source'"' must be \\"mllp\\"' "listen refuses a config without the MLLP source, as a JSON log line"

# a sink's config: record topics in, no specs; its connection settings are checked, never shown
echo "not-the-password" >"$tmp/pg.password"
sed -e "s#/etc/cohortgate/pg.password#$tmp/pg.password#" -e "s#/etc/cohortgate/cohorts#$src/specs/cohorts/circe#" \
    "$src/config/sink.json" >"$tmp/sink.json"
expect 0 "check -c sink" -- "$cg" check -c "$tmp/sink.json"
has "$tmp/out" "PostgreSQL sink" "check -c knows a sink"
expect 1 "check -c sink with a missing password file" -- "$cg" check -c "$src/config/sink.json"
has "$tmp/err" "pg.password_file /etc/cohortgate/pg.password cannot be read" "the missing password file is named"
sed -e 's#sslmode=prefer#sslmode=prefer password=hunter2#' "$tmp/sink.json" >"$tmp/sink-pw.json"
expect 1 "check -c sink with a password in pg.conninfo" -- "$cg" check -c "$tmp/sink-pw.json"
has "$tmp/err" "pg.conninfo holds a password" "a password in the config is refused"
if grep -q hunter2 "$tmp/err"; then no "the refused password is printed"; else ok; fi
sed -e 's#"id_type": "integer"#"id_type": "int"#' "$tmp/sink.json" >"$tmp/sink-bad.json"
expect 1 "check -c sink with a bad id_type" -- "$cg" check -c "$tmp/sink-bad.json"
has "$tmp/err" "sink-bad.json:[0-9]+:[0-9]+: error: 'pg.id_type' must be one of integer\|bigint" "the bad id_type is located"
# a cohort definition the sink would keep does not load: located, before anything connects
mkdir -p "$tmp/badcohorts"
sed -e 's#"PrimaryCriteriaLimit"#"Bogus": 1, "PrimaryCriteriaLimit"#' "$src/specs/cohorts/circe/ckd.json" >"$tmp/badcohorts/ckd.json"
sed -e "s#$src/specs/cohorts/circe#$tmp/badcohorts#" "$tmp/sink.json" >"$tmp/sink-badcohort.json"
expect 1 "check -c sink with a bad cohort definition" -- "$cg" check -c "$tmp/sink-badcohort.json"
has "$tmp/err" "badcohorts/ckd.json:[0-9]+:[0-9]+: PrimaryCriteria: element 'Bogus' is not supported" "the bad definition is located"
expect 1 "sink with a bad cohort definition" -- "$cg" sink -c "$tmp/sink-badcohort.json"
has "$tmp/err" "badcohorts/ckd.json:[0-9]+:[0-9]+: PrimaryCriteria: element 'Bogus'" "the sink names the bad definition at start"
expect 1 "sink with a Kafka sink" -- "$cg" sink -c "$src/config/demo.json"
has "$tmp/err" '"event":"gateway.start_failed","msg":"cohortgate sink: .*demo.json: '"'output.sink'"' must be \\"pg\\"' "sink refuses a config without the pg sink, as a JSON log line"
expect 2 "sink without a config" -- "$cg" sink
# the database is not there: a clear error naming where, never the password
sed -e 's#"conninfo": "[^"]*"#"conninfo": "host=127.0.0.1 port=1 dbname=omop connect_timeout=2"#' "$tmp/sink.json" >"$tmp/sink-nodb.json"
COHORTGATE_PG_CONNINFO= expect 1 "sink --init without a database" -- "$cg" sink --init -c "$tmp/sink-nodb.json"
has "$tmp/err" "cannot connect to PostgreSQL \(host 127.0.0.1, port 1, database omop" "the failed connection names the server"
if grep -q not-the-password "$tmp/err" "$tmp/out"; then no "the password is printed"; else ok; fi
# a server that takes the connection and never answers: the sink gives up after its default
# connect_timeout (10 s) instead of waiting in libpq for ever
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
conns = [s.accept() for _ in range(4)]
time.sleep(120)' >"$tmp/silent.port" &
silent=$!
for _ in $(seq 50); do [ -s "$tmp/silent.port" ] && break; sleep 0.1; done
sed -e 's#"conninfo": "[^"]*"#"conninfo": "host=127.0.0.1 port='"$(cat "$tmp/silent.port")"' dbname=omop"#' "$tmp/sink.json" >"$tmp/sink-silent.json"
COHORTGATE_PG_CONNINFO= expect 1 "sink --init against a server that never answers" -- timeout 60 "$cg" sink --init -c "$tmp/sink-silent.json"
has "$tmp/err" "cannot connect to PostgreSQL \(host 127.0.0.1, port [0-9]+, database omop.*timeout expired" "the silent server times out"
kill "$silent" 2>/dev/null || true

# map --cohorts: records list the cohorts the gateway would route them to
expect 0 "map --cohorts" -- "$cg" map -q --spec "$src/specs" --key-file "$src/tests/golden/key" --cohorts "$src/specs/cohorts" "$src/tests/golden/cda_ccd_sections/input.xml"
has "$tmp/out" '"table":"condition_occurrence","op":"upsert","cohorts":\["t2dm"\]' "a C-CDA type 2 diabetes problem joins t2dm"
has "$tmp/out" '"table":"person","op":"upsert","cohorts":\[\]' "a person row joins no cohort"
expect 0 "map an XML document" -- "$cg" map -q --spec "$src/specs" --key-file "$src/tests/golden/key" "$src/tests/golden/cda_discharge_gb18030/input.xml"
if grep -q value_as_string "$tmp/out"; then no "free text is written without an opt-in"; else ok; fi
has "$tmp/out" '"source":\{"message_id":"[0-9a-f]{40}"' "the document id is keyed by default"
if grep -q '出院-2024-0042' "$tmp/out"; then no "the document id is written as sent by default"; else ok; fi
expect 0 "map an XML document, free text opted in" -- "$cg" map -q --spec "$src/specs" --key-file "$src/tests/golden/key" --param free_text=value_as_string --message-id plain "$src/tests/golden/cda_discharge_gb18030/input.xml"
has "$tmp/out" '"value_as_string":"淡黄色，清亮"' "GB18030 text arrives as UTF-8"
has "$tmp/out" '"message_id":"2.16.156.10011.1.1\^出院-2024-0042"' "--message-id plain writes the document id as sent"
expect 2 "map --message-id of another kind" -- "$cg" map -q --spec "$src/specs" --message-id hashed x.hl7
has "$tmp/err" "--message-id is keyed or plain" "--message-id takes keyed or plain"
expect 1 "map a refused XML document" -- "$cg" map -q --spec "$src/specs" --key-file "$src/tests/golden/key" "$src/tests/golden/cda_errors_are_reported/b_xxe.xml"
has "$tmp/err" "b_xxe.xml: document 1: decode: .*refused" "XXE refused with the stage and reason"

# test: a wrong expectation fails with a readable difference
mkdir -p "$tmp/case"
cp "$src/tests/golden/oru_r01_results/input.hl7" "$tmp/case/"
sed 's/"value_as_number":7.2/"value_as_number":7.3/' "$src/tests/golden/oru_r01_results/expected.ndjson" >"$tmp/case/expected.ndjson"
expect 1 "test with a wrong expectation" -- "$cg" test --spec "$src/specs" --key-file "$src/tests/golden/key" "$tmp/case"
has "$tmp/out" "value_as_number: expected 7.3, got 7.2" "test shows the column difference"
has "$tmp/out" "^0 passed, 1 failed$" "test counts the failure"
expect 0 "test --update" -- "$cg" test --spec "$src/specs" --key-file "$src/tests/golden/key" --update "$tmp/case"
expect 0 "test after --update" -- "$cg" test --spec "$src/specs" --key-file "$src/tests/golden/key" "$tmp/case"
# a folder of cases given with a trailing slash names its cases with one slash
mkdir -p "$tmp/cases" && cp -r "$tmp/case" "$tmp/cases/one"
expect 0 "test cases/" -- "$cg" test --spec "$src/specs" --key-file "$src/tests/golden/key" "$tmp/cases/"
has "$tmp/out" "^PASS $tmp/cases/one " "test names a case as cases/name"
if grep -q '//' "$tmp/out"; then no "test prints a doubled slash: $(head -c 200 "$tmp/out")"; else ok; fi
# a column the table lacks: the error lists the table's columns and guesses the misspelt one
cat >"$tmp/col-spec.json" <<'JSON'
{"spec": "cols", "version": 1, "input": {"format": "hl7v2", "messages": ["ORU^R01"]},
 "rules": [{"name": "r", "table": "measurement",
   "columns": {"person_id": 1, "measurement_concept_id": 0, "measurement_type_concept_id": 0,
               "measurment_date": "OBX-14"}}]}
JSON
expect 1 "check --spec with a misspelt column" -- "$cg" check --spec "$tmp/col-spec.json"
has "$tmp/err" "col-spec.json:4:35: error: rule 'r': table measurement has no column 'measurment_date': did you mean 'measurement_date'\? its columns: measurement_id, person_id, .*, meas_event_field_concept_id$" "the error lists the columns"

# parse on XML: the summary, --get with XPath, refused DOCTYPEs, encodings, errors located
xml=$src/tests/unit/xml/ccda_small.xml
expect 0 "parse XML" -- "$cg" parse "$xml"
has "$tmp/out" '^\{"file":"[^"]*ccda_small.xml","document":1,"root":"ClinicalDocument","namespace":"urn:hl7-org:v3"' "parse XML prints the summary"
has "$tmp/out" '"sections":\[\{"kind":"problems","templateIds":\[[^]]*\],"title":"Miscellaneous notes","entries":2\}' "parse XML finds sections by templateId"
expect 0 "parse XML --get" -- "$cg" parse --get '/hl7:ClinicalDocument/hl7:id/@extension' --get '//hl7:section/hl7:title' "$xml"
has "$tmp/out" $'^DOC-0001\tMiscellaneous notes~Problems~' "parse XML --get prints XPath values"
printf '<?xml version="1.0"?>\n<!DOCTYPE a [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n<a>&xxe;</a>\n' >"$tmp/xxe.xml"
expect 1 "parse XML with an external entity" -- "$cg" parse "$tmp/xxe.xml" "$xml"
has "$tmp/err" "xxe.xml: document 1: line 3, column [0-9]+: DOCTYPE declares entities \('xxe'\); refused" "XXE refused and located"
if grep -q 'root:' "$tmp/out" "$tmp/err"; then no "XXE leaked /etc/passwd"; else ok; fi
has "$tmp/out" '"root":"ClinicalDocument"' "the good document after a refused one still prints"
expect 0 "parse --stats on HL7 and XML" -- "$cg" parse --stats "$xml" "$src/tests/golden/oru_r01_results/input.hl7"
has "$tmp/out" '"messages": ?1,"documents": ?1' "parse --stats counts documents"
printf '<?xml version="1.0" encoding="GB18030"?>\n<name>\xe5\xbc\xa0\xe4\xb8\x89</name>\n' | iconv -f UTF-8 -t GB18030 >"$tmp/gb.xml"
expect 0 "parse XML in GB18030" -- "$cg" parse --get /name "$tmp/gb.xml"
has "$tmp/out" $'^\xe5\xbc\xa0\xe4\xb8\x89$' "GB18030 converted to UTF-8"
printf '<name>\n\xd5\xc5</name>\n' >"$tmp/undeclared.xml"
expect 1 "parse XML with bytes that are not UTF-8" -- "$cg" parse "$tmp/undeclared.xml"
has "$tmp/err" 'undeclared.xml: document 1: line 2, column 1: bytes not valid in UTF-8' "invalid bytes located"
expect 0 "parse XML with --charset" -- "$cg" parse --charset GB18030 --get /name "$tmp/undeclared.xml"
has "$tmp/out" $'^\xe5\xbc\xa0$' "--charset applies to XML without a declaration"
expect 1 "HL7 path on XML" -- "$cg" parse --get 'PID-3[*].1' "$xml"
has "$tmp/err" "not an XPath expression" "an HL7 path on XML is reported"
expect 2 "--get that is neither" -- "$cg" parse --get '//nope:x' "$xml"
has "$tmp/err" "neither an HL7 v2 path nor an XPath" "--get explains both failures"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
