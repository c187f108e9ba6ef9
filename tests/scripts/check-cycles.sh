#!/usr/bin/env bash
# check-cycles.sh - fails when the calls between .c files form a cycle.
#
# usage: tests/scripts/check-cycles.sh [-v] LIB.a...
#   (ctest runs it on build/mappers/libcgmappers.a and build/gateway/libcggateway.a)
#
# Every object in the archives is one .c file. File A depends on file B when A uses (nm: U) a
# global symbol B defines. The files must form a DAG, so each one can be read, tested and replaced
# on top of the ones below it; two files that call each other are one module split in two, and
# the split then hides which half owns what. Cycles are found on the transitive closure: A and B
# are in one cycle when each reaches the other. Output: every cycle with the edges inside it and
# the symbols behind each edge. -v also prints the whole graph.
#
# ALLOW below lists edges that are known to close a cycle in code this branch may not change
# yet. An allowed edge is dropped before the search, so a new edge that closes another cycle still
# fails; an allowed edge that no longer exists fails too, so the list only shrinks.
set -euo pipefail

# "LIB.a:user.c.o LIB.a:definer.c.o", one per line, each with why it is tolerated.
ALLOW=(
)

verbose=0
if [ "${1:-}" = -v ]; then
    verbose=1
    shift
fi
if [ $# -eq 0 ]; then
    echo "usage: $0 [-v] LIB.a..." >&2
    exit 2
fi
for lib in "$@"; do
    if [ ! -f "$lib" ]; then
        echo "check-cycles: $lib not found (build first)" >&2
        exit 2
    fi
done

# nm -A -g prints "lib.a:member.o: [addr] TYPE name" for extern symbols only; the member name is
# the .c file's base name, so two files of one library with one base name would merge: refuse
# that. Files are named "LIB.a:FILE.c.o", so libraries may share a base name (registry.c).
dups=$(for lib in "$@"; do ar t "$lib" | sort | uniq -d; done)
if [ -n "$dups" ]; then
    echo "check-cycles: object names appear twice, cannot tell the files apart: $dups" >&2
    exit 2
fi

printf '%s\n' "${ALLOW[@]+"${ALLOW[@]}"}" |
    awk -v verbose="$verbose" '
    FNR == NR {
        if (NF == 2)
            allow[$1 " " $2] = 1
        next
    }
    {
        split($1, p, ":")
        if (p[2] == "")
            next
        lib = p[1]
        sub(/.*\//, "", lib)
        obj = lib ":" p[2]
        nodes[obj] = 1
        type = $(NF - 1)
        sym = $NF
        if (type == "U" || type == "w" || type == "v")
            uses[obj, sym] = 1
        else
            def[sym] = obj
    }
    END {
        n = 0
        for (o in nodes)
            name[n++] = o
        # edges and the symbols behind them
        for (k in uses) {
            split(k, q, SUBSEP)
            u = q[1]
            s = q[2]
            if (!(s in def) || def[s] == u)
                continue
            e = u " " def[s]
            if (e in allow) {
                allowed_seen[e] = 1
                continue
            }
            edge[u, def[s]] = 1
            why[u, def[s]] = (why[u, def[s]] == "" ? "" : why[u, def[s]] " ") s
        }
        bad = 0
        for (e in allow)
            if (!(e in allowed_seen)) {
                print "check-cycles: allow-listed edge " e " no longer exists: remove it from ALLOW"
                bad = 1
            }
        # transitive closure (Warshall): a few dozen files
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++)
                r[i, j] = ((name[i], name[j]) in edge) ? 1 : 0
        for (k = 0; k < n; k++)
            for (i = 0; i < n; i++)
                if (r[i, k])
                    for (j = 0; j < n; j++)
                        if (r[k, j])
                            r[i, j] = 1
        if (verbose)
            for (k in edge) {
                split(k, q, SUBSEP)
                printf "edge %s -> %s: %s\n", q[1], q[2], why[k]
            }
        # one cycle = the files that reach each other (a strongly connected component)
        for (i = 0; i < n; i++) {
            if (done[i] || !r[i, i])
                continue
            members = ""
            for (j = 0; j < n; j++)
                if (r[i, j] && r[j, i]) {
                    done[j] = 1
                    members = members " " name[j]
                    comp[j] = i
                }
            printf "check-cycles: cycle between%s\n", members
            for (a = 0; a < n; a++)
                for (b = 0; b < n; b++)
                    if (a != b && (a in comp) && (b in comp) && comp[a] == i && comp[b] == i &&
                        ((name[a], name[b]) in edge))
                        printf "    %s -> %s: %s\n", name[a], name[b], why[name[a], name[b]]
            bad = 1
        }
        if (!bad)
            printf "check-cycles: %d files, no cycle\n", n
        exit bad
    }' - <(for lib in "$@"; do nm -A -g "$lib"; done)
