#!/usr/bin/env bash
# The Java peers of `cohortgate listen`: HAPI's HL7 v2 client and server (ca.uhn.hapi 2.5.1) and
# the Kafka Java client, fetched with Maven like the test broker's jars.
#
#   tests/interop/hapi/hapi-peer.sh fetch        copy the jars of pom.xml into the cache (once)
#   tests/interop/hapi/hapi-peer.sh build DIR    fetch, then compile the *.java beside this script
#                                                into DIR; prints the java class path to use
#   tests/interop/hapi/hapi-peer.sh check        exit 0 when java, javac and the cached jars are
#                                                there (nothing fetched), else say what is missing
#                                                and exit 77
#
# The jars are cached in ${COHORTGATE_CACHE:-~/.cache/cohortgate}/hapi-VERSION/libs, outside the
# repository.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${COHORTGATE_CACHE:-$HOME/.cache/cohortgate}
hapi_version=$(sed -n 's:.*<hapi.version>\(.*\)</hapi.version>.*:\1:p' "$here/pom.xml")
libs="$cache/hapi-$hapi_version/libs"

log() { printf 'hapi-peer: %s\n' "$*" >&2; }

# shellcheck source=../../scripts/maven-jars.sh
. "$here/../../scripts/maven-jars.sh"
fetch() {
    local rc=0
    maven_jars "$here/pom.xml" "$libs" "HAPI $hapi_version and the Kafka Java client" \
        'hapi-base-*.jar' 'kafka-clients-*.jar' || rc=$?
    [ "$rc" = 0 ] || exit "$rc"
}

check() {
    local missing=()
    command -v java >/dev/null || missing+=("java")
    command -v javac >/dev/null || missing+=("javac (a JDK)")
    [ -f "$libs/.complete" ] || missing+=("the HAPI jars in $libs (tests/interop/hapi/hapi-peer.sh fetch)")
    if [ ${#missing[@]} -gt 0 ]; then
        log "missing: ${missing[*]}"
        exit 77
    fi
}

build() {
    local out=$1
    command -v javac >/dev/null || { log "javac (a JDK) is not installed"; exit 77; }
    fetch
    mkdir -p "$out"
    # compiled again only when a source is newer than the classes
    if [ ! -f "$out/.built" ] || [ -n "$(find "$here" -name '*.java' -newer "$out/.built")" ]; then
        javac -nowarn -encoding UTF-8 -d "$out" -cp "$libs/*" "$here"/*.java >&2
        touch "$out/.built"
    fi
    echo "$out:$libs/*"
}

case "${1:-}" in
fetch) fetch ;;
check) check ;;
build) build "${2:?usage: hapi-peer.sh build DIR}" ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
