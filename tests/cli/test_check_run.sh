#!/usr/bin/env bash
# test_check_run.sh COHORTGATE SOURCE_DIR - `check -c` refuses what `run -c` refuses, for the same
# reason: each broken config of the list goes through both; check must exit 1 naming the reason,
# run must exit 1 before connecting (its bootstrap, 127.0.0.1:1, is never reached; a run that is
# still going after a few seconds got past its start-up checks) with the same reason as a JSON log
# line. A good config passes check and keeps run going. `listen` and `sink` configs go through
# check and their daemon the same way. Prints "N passed, N failed".
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
unset COHORTGATE_PSEUDONYM_KEY KAFKA_TEST_PASSWORD COHORTGATE_PG_CONNINFO
key=$src/tests/golden/key

# config NAME MAPPING KAFKA OUTPUT INPUTS DELIVERY EXTRA: a run config in $tmp/NAME.json
config() {
    local mapping=${2:-"\"specs\": \"$src/specs\""} output=${4:-'"topic": "records"'}
    local inputs=${5:-'{"topic": "hosp.raw"}'} delivery=${6:-'"semantics": "at-least-once"'}
    local kafka='"bootstrap.servers": "127.0.0.1:1"' extra=""
    [ -n "${3:-}" ] && kafka="$kafka, $3"
    [ -n "${7:-}" ] && extra=",
  $7"
    cat >"$tmp/$1.json" <<JSON
{
  "inputs": [$inputs],
  "output": {$output},
  "mapping": {$mapping},
  "pseudonym": {"key_file": "${KEYFILE-$key}"},
  "delivery": {$delivery},
  "metrics": {"listen": "off"},
  "kafka": {$kafka}$extra
}
JSON
}

# refused NAME REASON-REGEX: check and run (or $daemon) both refuse $tmp/NAME.json, for the
# same reasons
daemon=run
refused() {
    local name=$1 want=$2
    "$cg" check -c "$tmp/$name.json" >"$tmp/check.out" 2>"$tmp/check.err"
    local rc=$?
    [ "$rc" = 1 ] && ok || no "$name: check exits $rc, expected 1"
    if grep -qE -- "$want" "$tmp/check.err"; then ok; else no "$name: check does not say /$want/: $(head -c 400 "$tmp/check.err")"; fi
    timeout 20 "$cg" "$daemon" -c "$tmp/$name.json" >"$tmp/run.out" 2>"$tmp/run.err"
    rc=$?
    [ "$rc" = 1 ] && ok || no "$name: $daemon exits $rc, expected 1 (124: it did not refuse at start)"
    # every reason check gives, run gives too, each as a JSON log line
    python3 - "$tmp/run.err" "$tmp/check.err" "$want" <<'PY' && ok || no "$name: run's reasons differ from check's: $(head -c 600 "$tmp/check.err") / $(head -c 600 "$tmp/run.err")"
import json, re, sys
msgs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]  # every line is JSON
errs = [m["msg"] for m in msgs if m["level"] == "error"]
assert errs, "no error logged"
said = [l.rstrip("\n").replace("error: ", "", 1) for l in open(sys.argv[2]) if "error: " in l]
assert said, "check printed no error"
for s in said:
    assert any(s in e for e in errs), (s, errs)
assert any(re.search(sys.argv[3], e) for e in errs), errs
PY
}

# the control: a good config passes check, and run goes on until it is stopped
config good
"$cg" check -c "$tmp/good.json" >"$tmp/out" 2>"$tmp/err" && ok || no "the good config fails check: $(head -c 400 "$tmp/err")"
timeout 3 "$cg" run -c "$tmp/good.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 124 ] && ok || no "run of the good config exits $rc instead of running: $(head -c 400 "$tmp/err")"

# the broken ones
config kafka_misspelt "" '"enable.auto.commmit": "false"'
refused kafka_misspelt "kafka_misspelt.json:[0-9]+:[0-9]+: .*'kafka.enable.auto.commmit': No such configuration property"
config kafka_bad_value "" '"session.timeout.ms": "soon"'
refused kafka_bad_value "kafka_bad_value.json:[0-9]+:[0-9]+: .*'kafka.session.timeout.ms': Invalid value"
config input_charset "" "" "" '{"topic": "hosp.raw"}, {"topic": "hosp-b.raw", "charset": "NO-SUCH-SET"}'
refused input_charset "input_charset.json:2:[0-9]+: .*'inputs\\[\\]\\.charset': 'NO-SUCH-SET' is not a character set iconv knows"
# each property passes alone; the clients made of them (no broker named, so nothing connects) do not
config kafka_sasl "" '"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "FOO", "sasl.username": "u", "sasl.password": "hunter2"'
refused kafka_sasl "kafka_sasl.json:8:3: .*'kafka': librdkafka cannot make the producer from these settings: Unsupported SASL mechanism: FOO"
if grep -q hunter2 "$tmp/check.err" "$tmp/check.out" "$tmp/run.err" "$tmp/run.out"; then no "kafka_sasl: the password is printed"; else ok; fi
config kafka_ca "" '"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"'
refused kafka_ca "'kafka': librdkafka cannot make the producer from these settings: ssl.ca.location failed"
config kafka_secret_env "" '"sasl.password": {"env": "KAFKA_TEST_PASSWORD"}'
refused kafka_secret_env "kafka_secret_env.json:[0-9]+:[0-9]+: .*'kafka.sasl.password' comes from the environment variable KAFKA_TEST_PASSWORD, which is not set"
config kafka_secret_file "" '"sasl.password": {"file": "no-such-secret"}'
refused kafka_secret_file "kafka_secret_file.json:[0-9]+:[0-9]+: .*'kafka.sasl.password' cannot read the file .*no-such-secret"
config kafka_txn_id "" '"transactional.id": "mine"'
refused kafka_txn_id "kafka_txn_id.json:[0-9]+:[0-9]+: .*'kafka.transactional.id' is set by the gateway"
KEYFILE=$tmp/no-such.key config key_missing
refused key_missing "pseudonym key file .*no-such.key"
printf 'short' >"$tmp/short.key"
KEYFILE=$tmp/short.key config key_short
refused key_short "short.key.*(at least|too short|32)"
KEYFILE="" config key_env_unset
refused key_env_unset "environment variable COHORTGATE_PSEUDONYM_KEY is not set"
config output_is_input "" "" '"topic": "hosp.raw"'
refused output_is_input "output_is_input.json:3:[0-9]+: .*'output.topic': 'hosp.raw' is also an input topic"
config dlq_is_input "" "" '"dead_letter_topic": "hosp.raw"'
refused dlq_is_input "'output.dead_letter_topic': 'hosp.raw' is also an input topic"
config outputs_shared "" "" '"topic": "records", "quality_topic": "records"'
refused outputs_shared "'output.quality_topic': 'records' is also output.topic"
config input_twice "" "" "" '{"topic": "a"}, {"topic": "b"}, {"topic": "a"}'
refused input_twice "input_twice.json:2:[0-9]+: .*'inputs\[2\].topic': 'a' is listed twice"
config unknown_setting "" "" "" "" "" '"outptu": {}'
refused unknown_setting "unknown_setting.json:[0-9]+:[0-9]+: .*unknown setting 'outptu'"
config specs_missing "\"specs\": \"$tmp/no-such-specs\""
refused specs_missing "no-such-specs"
mkdir -p "$tmp/badspec"
printf '{"spec": "bad", "version": 1, "input": {"format": "hl7v2", "messages": ["ORU^R01"]},\n "rules": [{"name": "r", "table": "measurement", "columns": {"no_such_column": 1}}]}\n' >"$tmp/badspec/bad.json"
config spec_broken "\"specs\": \"$tmp/badspec\""
refused spec_broken "bad.json:2:[0-9]+: .*no column 'no_such_column'"
mkdir -p "$tmp/badvocab"
printf 'vocabulary_id,concept_code,concept_id,domain_id,concept_name\nLOINC,4548-4,not-a-number,Measurement,HbA1c\n' >"$tmp/badvocab/loinc.csv"
config vocab_broken "\"specs\": \"$src/specs\", \"vocab\": \"$tmp/badvocab\""
refused vocab_broken "loinc.csv:2"
config cohorts_missing "" "" "" "" "" '"cohorts": {"path": "no-such-cohorts"}'
refused cohorts_missing "no-such-cohorts"
config eos_file_sink "" "" '"sink": "file", "file": {"path": "out.ndjson"}' "" '"semantics": "exactly-once"'
refused eos_file_sink "'delivery.semantics' exactly-once needs .*the file sink has none"

# every error, not the first only: of the settings, of what the validation finds, of the specs
printf '{"spec": "bad", "version": 1, "input": {"format": "hl7v2", "messages": ["ORU^R01"]},\n "rules": [{"name": "r", "table": "measurement", "columns": {"x": 1,\n "y": 2}}]}\n' >"$tmp/badspec/worse.json"
config specs_several "\"specs\": \"$tmp/badspec\""
refused specs_several "worse.json:3:7: .*no column 'y'"
config several "" '"enable.auto.commmit": false, "linger.ms": "soon"' "" "" '"semantics": "once"' '"outptu": {}'
refused several "several.json:6:16: .*'delivery.semantics' must be one of"
for f in check run; do
    for want in "'delivery.semantics' must be one of" "unknown setting 'outptu'"; do
        grep -q "$want" "$tmp/$f.err" && ok || no "several: $f does not report $want"
    done
done
config several_validate "" '"enable.auto.commmit": false, "linger.ms": "soon"' '"topic": "hosp.raw"'
refused several_validate "'kafka.enable.auto.commmit'"
for f in check run; do
    for want in "'kafka.linger.ms'" "'output.topic': 'hosp.raw' is also an input topic"; do
        grep -q "$want" "$tmp/$f.err" && ok || no "several_validate: $f does not report $want"
    done
done

# the other daemons share the validation: `listen` (MLLP in, Kafka out) and `sink` (Kafka in,
# PostgreSQL out) refuse as check does, before binding a port or connecting to a database
daemon=listen
listen_config() {
    cat >"$tmp/$1.json" <<JSON
{
  "source": "mllp",
  "listen": {"address": "127.0.0.1:0", "topic": "hosp.raw"},
  "pseudonym": {"key_file": "$key"},
  "metrics": {"listen": "off"},
  "kafka": {"bootstrap.servers": "127.0.0.1:1"$2}
}
JSON
}
listen_config listen_kafka_misspelt ', "lingr.ms": 5'
refused listen_kafka_misspelt "listen_kafka_misspelt.json:6:[0-9]+: .*'kafka.lingr.ms': No such configuration property"
listen_config listen_eos ', "linger.ms": 5}, "delivery": {"semantics": "exactly-once"'
refused listen_eos "'delivery.semantics' exactly-once needs a source that can rewind .*the mllp source has none"
daemon=sink
sink_config() {
    cat >"$tmp/$1.json" <<JSON
{
  "inputs": [{"topic": "records"}${2:-}],
  "output": {"sink": "pg"},
  "pg": {"conninfo": "host=127.0.0.1 port=1 dbname=omop connect_timeout=2"},
  "metrics": {"listen": "off"},
  "kafka": {"bootstrap.servers": "127.0.0.1:1"${3:-}}
}
JSON
}
sink_config sink_kafka_misspelt "" ', "fetch.max.byts": 1'
refused sink_kafka_misspelt "sink_kafka_misspelt.json:6:[0-9]+: .*'kafka.fetch.max.byts': No such configuration property"
sink_config sink_input_twice ', {"topic": "records"}'
refused sink_input_twice "'inputs\[1\].topic': 'records' is listed twice"
# pg.subscriber must name a subscriber of the same file's release section (graded release)
cat >"$tmp/sink_subscriber_undeclared.json" <<JSON
{
  "inputs": [{"topic": "records"}],
  "output": {"sink": "pg"},
  "pg": {"conninfo": "host=127.0.0.1 port=1 dbname=omop connect_timeout=2",
         "subscriber": "sponsor-c"},
  "release": {"subscribers": [{"name": "sponsor-a", "topic": "records", "agreement": "DUA-A",
                               "expires": "2099-12-31", "max_level": 3}]},
  "metrics": {"listen": "off"},
  "kafka": {"bootstrap.servers": "127.0.0.1:1"}
}
JSON
refused sink_subscriber_undeclared "sink_subscriber_undeclared.json:5:10: .*'pg.subscriber' names 'sponsor-c', which is no subscriber of release.subscribers\[\] \(declared: 'sponsor-a'\)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
