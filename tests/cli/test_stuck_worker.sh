#!/usr/bin/env bash
# A worker held by one message (#17): /healthz turns 503 and names it once metrics.stuck_worker_ms
# passes, and SIGTERM still ends the daemon within delivery.drain_timeout_ms + 5 s, exit 1, with
# a gateway.stop_overrun log line. The message is an XML document whose one element has 80,000
# attributes, let through by a config that raises xml.max_attributes (libxml2's time grows with
# the square of an element's attributes: ~20 s here); the broker is the embedded one.
# usage: test_stuck_worker.sh COHORTGATE SOURCE_DIR
set -euo pipefail
cg=$1
root=$2
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$tmp/run.log" ] && tail -5 "$tmp/run.log" >&2
    exit 1
}
mkdir "$tmp/feeds"
python3 -c "
import sys
el = '<id ' + ' '.join('a%d=\"1\"' % i for i in range(80000)) + '/>'
open(sys.argv[1], 'w').write('<ClinicalDocument xmlns=\"urn:hl7-org:v3\">' + el + '</ClinicalDocument>')
" "$tmp/feeds/slow.xml"
cat >"$tmp/run.json" <<JSON
{"group_id": "stuck", "inputs": [{"topic": "raw", "format": "auto"}],
 "output": {"sink": "file", "file": {"path": "$tmp/out.ndjson"}},
 "mapping": {"specs": "$root/specs"}, "pseudonym": {"key_file": "$root/tests/golden/key"},
 "xml": {"max_attributes": 100000},
 "metrics": {"listen": "127.0.0.1:0", "stuck_worker_ms": 1000},
 "delivery": {"drain_timeout_ms": 1000},
 "embedded_broker": {"enabled": true, "partitions": 1,
                     "preload": [{"topic": "raw", "dir": "$tmp/feeds"}]}}
JSON
"$cg" run -c "$tmp/run.json" --no-report >"$tmp/run.log" 2>&1 &
pid=$!
health=
for _ in $(seq 1 120); do
    sleep 0.25
    kill -0 "$pid" 2>/dev/null || fail "run ended before the worker was stuck"
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/run.log" | head -1 || true)
    [ -n "$url" ] || continue
    health=$(curl -s -w ' %{http_code}' "$url/healthz" | tr -d '\n' || true)
    case $health in *" 503") break ;; esac
done
case $health in
"stuck: worker 0 has been on partition 0 offset 0 for "*" s (metrics.stuck_worker_ms 1000) 503") ;;
*) fail "/healthz did not report the stuck worker: '$health'" ;;
esac
echo "test_stuck_worker: /healthz: $health"

start=$(date +%s%N)
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
took_ms=$((($(date +%s%N) - start) / 1000000))
echo "test_stuck_worker: SIGTERM to exit: $took_ms ms, exit $rc"
[ "$rc" = 1 ] || fail "exit $rc after SIGTERM with a stuck worker, not 1"
grep -q '"event":"gateway.stop_overrun"' "$tmp/run.log" || fail "no gateway.stop_overrun line"
# the bound is 1 s + 5 s; the document alone takes far longer (the slack is for a loaded machine)
[ "$took_ms" -lt 15000 ] || fail "SIGTERM took $took_ms ms, past the 6 s bound"
echo "test_stuck_worker: ok"
