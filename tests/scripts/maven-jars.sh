# maven-jars.sh - sourced by the scripts that run Java peers from Maven Central's jars
# (kafka-broker.sh, tests/interop/hapi/hapi-peer.sh, tests/bench/connect/connect-peer.sh).
#
# maven_jars POM LIBS WHAT JAR...: copies the runtime dependencies of POM into the folder LIBS
# once (LIBS/.complete marks a whole copy; a partial one is fetched again), checks that each
# JAR (a file-name pattern) is among them, and says so with the caller's log function. Returns
# 77 when mvn is not installed, 1 when Maven fails (WHAT names what could not be fetched).
maven_jars() {
    local pom=$1 libs=$2 what=$3 jar
    shift 3
    [ -f "$libs/.complete" ] && return 0
    command -v mvn >/dev/null || { log "mvn is not installed: cannot fetch $what"; return 77; }
    log "fetching $what with Maven into $libs"
    rm -rf "$libs" && mkdir -p "$libs"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$libs" >&2; then
        log "FAILED: Maven could not fetch $what (see above)"
        return 1
    fi
    for jar in "$@"; do
        compgen -G "$libs/$jar" >/dev/null || { log "FAILED: no $jar among the jars of $pom"; return 1; }
    done
    touch "$libs/.complete"
}
