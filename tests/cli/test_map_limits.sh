#!/usr/bin/env bash
# One message's budgets (#17): a message past mapping.max_message_ms or max_message_mb fails
# alone with MAP_LIMIT, in map and in run (dead-lettered with its bytes, the next message still
# mapped, the gateway still running); and map over a file of zeros keeps its memory flat (pages
# left behind are given back while the reader looks for a message).
# usage: test_map_limits.sh COHORTGATE SOURCE_DIR
set -euo pipefail
cg=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/*.err "$tmp/run.log"; do [ -f "$f" ] && tail -5 "$f" >&2; done
    exit 1
}
key=$root/tests/golden/key
mkdir "$tmp/feeds"
# an ORU with 10,000 results (750 KB, under the broker's 1 MB): past a 1 ms budget and a 1 MiB one, within the decoder's
# limits (100,000 segments, 16 MiB)
python3 - "$tmp/feeds/1-big.hl7" "$tmp/feeds/2-small.hl7" <<'PY'
import sys
msh = "MSH|^~\\&|LAB|HOSP_A^1.2.3^ISO|CG|CG|20240101120000||ORU^R01^ORU_R01|%s|P|2.5.1\r"
pid = "PID|1||88001^^^HOSP_A^MR||Roe^Ann||19800101|F\r"
obr = "OBR|1|P1|F1|2345-7^Glucose^LN|||20240101110000\r"
big = msh % "BIG1" + pid + obr + "".join(
    "OBX|%d|NM|2345-7^Glucose^LN|%d|%d|mg/dL|70-99||||F|||20240101110000\r" % (i, i, 90 + i % 50)
    for i in range(1, 10001))
open(sys.argv[1], "w").write(big)
open(sys.argv[2], "w").write(msh % "SMALL1" + pid + obr +
    "OBX|1|NM|2345-7^Glucose^LN|1|95|mg/dL|70-99||||F|||20240101110000\r")
PY

# map: the budgets, each way
set +e
"$cg" map -q -s "$root/specs" --key-file "$key" --max-message-ms 1 "$tmp/feeds/1-big.hl7" \
    >"$tmp/ms.out" 2>"$tmp/ms.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "map --max-message-ms 1: exit $rc, not 1"
grep -q "map: .*took longer than its budget of 1 ms (mapping.max_message_ms)" "$tmp/ms.err" ||
    fail "map --max-message-ms 1: no budget reason"
[ ! -s "$tmp/ms.out" ] || fail "map --max-message-ms 1: rows of a message that failed"
set +e
"$cg" map -q -s "$root/specs" --key-file "$key" --max-message-mb 1 "$tmp/feeds/1-big.hl7" \
    "$tmp/feeds/2-small.hl7" >"$tmp/mb.out" 2>"$tmp/mb.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "map --max-message-mb 1: exit $rc, not 1"
grep -q "needs more than 1 MiB to map (mapping.max_message_mb)" "$tmp/mb.err" ||
    fail "map --max-message-mb 1: no budget reason"
[ "$(grep -c '"table":"measurement"' "$tmp/mb.out")" = 1 ] ||
    fail "map --max-message-mb 1: the small message's one measurement is missing"
"$cg" map -q -s "$root/specs" --key-file "$key" --max-message-ms 0 --max-message-mb 0 \
    "$tmp/feeds/1-big.hl7" >"$tmp/none.out" 2>"$tmp/none.err" || fail "map without budgets failed"
[ "$(grep -c '"table":"measurement"' "$tmp/none.out")" = 10000 ] ||
    fail "map without budgets: not 10,000 measurements"
grep -q "MAP_LIMIT\|budget" "$tmp/none.err" && fail "map without budgets reported a budget"
echo "test_map_limits: map: budgets ok"

# run: the big message is dead-lettered with its bytes; the small one still maps
cat >"$tmp/run.json" <<JSON
{"group_id": "limits", "inputs": [{"topic": "raw", "format": "auto"}],
 "output": {"sink": "file", "file": {"path": "$tmp/out.ndjson"},
            "dead_letter_topic": "dead"},
 "mapping": {"specs": "$root/specs", "max_message_ms": 1},
 "pseudonym": {"key_file": "$key"},
 "metrics": {"listen": "off"},
 "embedded_broker": {"enabled": true, "partitions": 1,
                     "preload": [{"topic": "raw", "dir": "$tmp/feeds"}]}}
JSON
"$cg" run -c "$tmp/run.json" --no-report --idle-exit 3000 >"$tmp/run.log" 2>&1 ||
    fail "run exited $? with a message past its budget"
python3 - "$tmp/out.ndjson" "$tmp/feeds/1-big.hl7" <<'PY' || fail "run: dead letter or records wrong"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
dead = [l for l in lines if l["topic"] == "dead"]
assert len(dead) == 1, "%d dead letters" % len(dead)
h = dead[0]["headers"]
assert h["cg.error.code"] == "MAP_LIMIT", h
assert "took longer than its budget of 1 ms" in h["cg.error.reason"], h
assert h["cg.error.class"] == "dead-letter", h
assert dead[0]["value"] == open(sys.argv[2], newline="").read(), "the dead letter is not the original bytes"
recs = [l for l in lines if l["topic"] != "dead" and '"table":"measurement"' in l["value"]]
assert len(recs) == 1, "%d measurement records" % len(recs)
PY
echo "test_map_limits: run: dead-lettered, the next message mapped"

# map over 512 MiB of zeros: one failure, and memory stays flat
truncate -s 512M "$tmp/zeros.bin"
python3 - "$cg" "$root/specs" "$key" "$tmp/zeros.bin" <<'PY' || fail "map over zeros"
import resource, subprocess, sys
cg, specs, key, f = sys.argv[1:]
p = subprocess.run([cg, "map", "-q", "-s", specs, "--key-file", key, f],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print("test_map_limits: map over 512 MiB of zeros: peak RSS %.0f MiB, exit %d" % (rss_mb, p.returncode))
assert p.returncode == 1, p.stderr
assert "not an HL7 v2 message" in p.stderr, p.stderr
assert p.stderr.count("message ") == 1, p.stderr
assert rss_mb < 160, "peak RSS %.0f MiB" % rss_mb
PY
echo "test_map_limits: ok"
