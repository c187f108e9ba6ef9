#!/usr/bin/env bash
# test_hapi_interop.sh - a real HL7 client against `cohortgate listen`: HAPI's MLLP client
# (InteropClient.java) sends every message of the shared corpus over 10 connections to the built
# binary, checks every ACK's MSA-2 against its message's MSH-10 (HAPI parses the ACK), then reads
# the raw topic back and finds every acknowledged message on it byte for byte.
#
# usage: test_hapi_interop.sh COHORTGATE_BINARY CLASSES_DIR
# Needs COHORTGATE_TEST_BOOTSTRAP (tests/scripts/kafka-broker.sh start), java, javac and the
# HAPI jars (tests/interop/hapi/hapi-peer.sh fetch; fetched here when mvn can); exits 77
# (skipped) with the reason when one is missing. CG_CORPUS overrides ../shared/corpus/hl7v2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cg=${1:?usage: test_hapi_interop.sh COHORTGATE_BINARY CLASSES_DIR}
classes=${2:?usage: test_hapi_interop.sh COHORTGATE_BINARY CLASSES_DIR}
corpus=${CG_CORPUS:-$(cd "$root/.." && pwd)/shared/corpus/hl7v2}

skip() { echo "SKIPPED: $*"; exit 77; }
[ -n "${COHORTGATE_TEST_BOOTSTRAP:-}" ] || skip "COHORTGATE_TEST_BOOTSTRAP is not set (no Kafka broker)"
[ -d "$corpus" ] || skip "$corpus is absent (the shared corpus)"
command -v java >/dev/null || skip "java is not installed"
command -v javac >/dev/null || skip "javac (a JDK) is not installed"
if ! bash "$here/hapi-peer.sh" check 2>/dev/null; then
    command -v mvn >/dev/null || skip "the HAPI jars are not cached and mvn is not installed"
    bash "$here/hapi-peer.sh" fetch || skip "Maven could not fetch the HAPI jars (see above)"
fi
cp=$(bash "$here/hapi-peer.sh" build "$classes")

tmp=$(mktemp -d /tmp/cg-hapi-interop.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
topic=cg-it-hapi-$(date +%s)-$$
cat >"$tmp/listen.json" <<JSON
{"source": "mllp",
 "listen": {"address": "127.0.0.1:$port", "topic": "$topic"},
 "pseudonym": {"key_file": "$root/tests/golden/key"},
 "kafka": {"bootstrap.servers": "$COHORTGATE_TEST_BOOTSTRAP", "linger.ms": 1},
 "metrics": {"listen": "127.0.0.1:0"},
 "delivery": {"drain_timeout_ms": 5000}, "log": {"level": "info"}}
JSON
"$cg" listen -c "$tmp/listen.json" 2>"$tmp/listen.log" &
pid=$!
for _ in $(seq 1 200); do
    grep -q '"listen.started"' "$tmp/listen.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/listen.log"; echo "FAILED: cohortgate listen exited"; exit 1; }
    sleep 0.05
done
grep -q '"listen.started"' "$tmp/listen.log" || { cat "$tmp/listen.log"; echo "FAILED: no listen.started"; exit 1; }

rc=0
java -Xmx512m -XX:TieredStopAtLevel=1 -cp "$cp" InteropClient --port "$port" --corpus "$corpus" \
    --connections 10 --bootstrap "$COHORTGATE_TEST_BOOTSTRAP" --topic "$topic" || rc=$?

kill -TERM "$pid"
st=0
wait "$pid" || st=$?
pid=
if [ "$st" != 0 ]; then
    tail -20 "$tmp/listen.log"
    echo "FAILED: cohortgate listen exited $st after SIGTERM"
    exit 1
fi
if [ "$rc" != 0 ]; then
    grep -v '"listen.closed"' "$tmp/listen.log" | tail -20
    exit 1
fi
echo "listen: $(grep -c '"listen.closed"' "$tmp/listen.log" || true) connection(s) closed, exit 0 after SIGTERM"
