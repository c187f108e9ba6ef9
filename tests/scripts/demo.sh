#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs the gateway end to end on the bundled
# sample feeds (config/demo/feeds) through an in-process Kafka broker, then prints what came out
# on each topic. Nothing to set up. Production points kafka.bootstrap.servers at a real cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

echo "== 1/3 dependencies"
bash tests/scripts/install-deps.sh
echo "== 2/3 build"
BUILD_TARGET=cohortgate bash tests/scripts/build.sh build >/dev/null
echo "built $root/build/gateway/cohortgate ($(./build/gateway/cohortgate --version))"
echo "== 3/3 run: cohortgate run -c config/demo.json --idle-exit 1500"
echo "   (logs are JSON lines on stderr; the report of each topic follows on stdout)"
./build/gateway/cohortgate run -c config/demo.json --idle-exit 1500
