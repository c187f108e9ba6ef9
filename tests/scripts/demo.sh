#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs the gateway end to end on the bundled
# sample feeds (config/demo/feeds) through an in-process Kafka broker, then prints what came out
# on each topic; loads the records into a PostgreSQL OMOP database with `cohortgate sink` (a
# throwaway server of its own, tests/scripts/postgres.sh) and prints a few rows per table; then
# sends the feeds over MLLP. Nothing to set up. Production points kafka.bootstrap.servers at a
# real cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

echo "== 1/5 dependencies"
bash tests/scripts/install-deps.sh
echo "== 2/5 build"
BUILD_TARGET=cohortgate bash tests/scripts/build.sh build >/dev/null
echo "built $root/build/gateway/cohortgate ($(./build/gateway/cohortgate --version))"
echo "== 3/5 run: cohortgate run -c config/demo.json --idle-exit 1500"
echo "   (logs are JSON lines on stderr; the report of each topic follows on stdout)"
./build/gateway/cohortgate run -c config/demo.json --idle-exit 1500

echo "== 4/5 the research database: cohortgate sink -c config/demo-sink.json"
echo "   (a PostgreSQL server of the demo's own; the same run again, kept running while the sink"
echo "    loads its records topic and cohort topics into the OMOP CDM v5.4 schema demo_cdm)"
bash tests/scripts/demo-sink.sh build/gateway/cohortgate

echo "== 5/5 the hospital side: cohortgate listen -c config/demo-listen.json, cohortgate send"
echo "   (an MLLP listener storing each message in the raw topic before it ACKs; a client"
echo "    sending the same feeds as an interface engine would, one line per ACK)"
log=$(mktemp)
./build/gateway/cohortgate listen -c config/demo-listen.json 2>"$log" &
listener=$!
trap 'kill $listener 2>/dev/null || true; rm -f "$log"' EXIT
address=
for _ in $(seq 100); do
    address=$(sed -n 's/.*"listen.started".*MLLP on \([^ ]*\),.*/\1/p' "$log")
    [ -n "$address" ] && break
    kill -0 $listener 2>/dev/null || break
    sleep 0.1
done
if [ -z "$address" ]; then
    cat "$log" >&2
    echo "demo: the listener did not start" >&2
    exit 1
fi
# the junk and XML files are acknowledged AE (stored, marked for the dead-letter path): send
# exits 1 when not every message is accepted, which is the point of showing them
./build/gateway/cohortgate send --to "$address" config/demo/feeds/* || true
kill -TERM $listener
wait $listener || true
grep '"listen.stopped"' "$log" | sed 's/.*"msg":"\(.*\)"}$/listener: \1/'
