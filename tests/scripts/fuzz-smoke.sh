#!/usr/bin/env bash
# fuzz-smoke.sh - builds the libFuzzer targets (clang, -DCG_FUZZ=ON) in their own build directory
# and runs each for a fixed short time. Exits non-zero on any crash, leak, timeout or sanitizer
# report. Environment: FUZZ_SECONDS (default 40 per target), FUZZ_BUILD_DIR, FUZZ_JOBS (build jobs),
# FUZZ_PARALLEL (targets run at once, default nproc).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$here/build-fuzz}
seconds=${FUZZ_SECONDS:-40}
jobs=${FUZZ_JOBS:-2}

if ! command -v clang >/dev/null; then
    echo "fuzz-smoke: clang not found; libFuzzer needs clang" >&2
    exit 1
fi

cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER=clang -DCG_FUZZ=ON -DCG_BUILD_TESTS=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_hl7_parse fuzz_hl7_path fuzz_spec fuzz_xml -j"$jobs"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Seeds: the project's own fixtures, plus a few paths. (The shared corpus is not copied.)
mkdir -p "$work/parse" "$work/path" "$work/spec" "$work/xml"
while IFS= read -r -d '' f; do # several cases name their document input.xml
    cp "$f" "$work/xml/$(md5sum <"$f" | cut -c1-12).xml"
done < <(find "$here"/tests/golden "$here"/tests/unit/xml -name '*.xml' -print0 2>/dev/null)
cp "$here"/tests/fixtures/hl7/* "$work/parse/"
cp "$here"/tests/fixtures/hl7/* "$here"/specs/*.json "$work/spec/"
for p in 'PID-5' 'PID-5.1.1' 'PID-3[2].1' 'PID-3[*].1' 'OBX[*]-5' 'OBX[3]-5' 'PID-x' 'OBX[*]' \
    'PID-3[5=MR].1' 'PID-3[5=NNCHN|MR|*].4.1' 'PID-3[4.1=GHH].5'; do
    printf '%s' "$p" >"$work/path/$(printf '%s' "$p" | md5sum | cut -c1-12)"
done

# Seeds from the hostile-input review's reproductions (#17), small enough for max_len: one
# element with many attributes, UTF-16 with a BOM, an ORU with many OBX and a follow-on segment
# it lacks, batches whose counts disagree, zeros, MSH-18 cycling through charsets.
python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
def put(d, name, data):
    open("%s/%s/%s" % (w, d, name), "wb").write(data if isinstance(data, bytes) else data.encode())
doc = '<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3" extension="X"/></ClinicalDocument>'
put("xml", "r17-attrs.xml", '<ClinicalDocument xmlns="urn:hl7-org:v3"><id ' +
    " ".join('a%d="1"' % i for i in range(3000)) + '/></ClinicalDocument>')
put("xml", "r17-utf16.xml", b"\xff\xfe" + ('<?xml version="1.0" encoding="UTF-16"?>' + doc).encode("utf-16-le"))
put("xml", "r17-deep.xml", '<ClinicalDocument xmlns="urn:hl7-org:v3">' + "<a>" * 300 + "</a>" * 300 + "</ClinicalDocument>")
msh = "MSH|^~\\&|LAB|HOSP_A|CG|CG|20240101120000||ORU^R01^ORU_R01|%s|P|2.5.1%s\r"
pid = "PID|1||88001^^^HOSP_A^MR||Roe^Ann||19800101|F\r"
obr = "OBR|1|P1|F1|2345-7^Glucose^LN|||20240101110000\r"
put("parse", "r17-many-obx.hl7", msh % ("M1", "") + pid + obr +
    "".join("OBX|%d|NM|2345-7^^LN|%d|%d|mg/dL\r" % (i, i, 90 + i) for i in range(1, 180)))
put("parse", "r17-batch-counts.hl7", "FHS|^~\\&\rBHS|^~\\&\r" + msh % ("M1", "") + pid + "BTS|3\rFTS|2\r")
put("parse", "r17-zeros.hl7", b"\0" * 4096)
cs = ["ASCII", "8859/1", "UNICODE UTF-8", "GB 18030-2000", "ISO IR87", "KS X 1001", "8859/15", "BIG-5"]
put("parse", "r17-charsets.hl7", "".join(msh % ("M%d" % i, "||||||" + c) + pid for i, c in enumerate(cs * 2)))
PY
cp "$work"/parse/r17-* "$work/spec/"

# The targets run FUZZ_PARALLEL at a time (default: the machine's cores; each fuzzer is one
# process on one core), so the smoke costs about 2 x FUZZ_SECONDS of wall time on two cores.
parallel=${FUZZ_PARALLEL:-$(nproc)}
run() { # one target; its report goes to $work/$target.out, printed in order after the wait
    local target=$1 corpus=$2 maxlen=$3
    {
        echo "fuzz-smoke: $target for ${seconds}s (max_len $maxlen)"
        if ! "$build/tests/fuzz/$target" "$corpus" -max_total_time="$seconds" -max_len="$maxlen" \
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$target-" \
            >"$work/$target.log" 2>&1; then
            echo "fuzz-smoke: $target FAILED"
            tail -n 60 "$work/$target.log"
            ls "$work/$target"-crash-* "$work/$target"-leak-* "$work/$target"-timeout-* \
                "$work/$target"-oom-* 2>/dev/null || true
            exit 1
        fi
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$target.log" || true
        echo "fuzz-smoke: $target ok"
    } >"$work/$target.out" 2>&1
}
targets=("fuzz_hl7_parse $work/parse 8192" "fuzz_hl7_path $work/path 64"
    "fuzz_spec $work/spec 16384" "fuzz_xml $work/xml 32768")
status=0
for ((i = 0; i < ${#targets[@]}; i += parallel)); do
    pids=() names=()
    for t in "${targets[@]:i:parallel}"; do
        read -r name corpus maxlen <<<"$t"
        run "$name" "$corpus" "$maxlen" &
        pids+=($!) names+=("$name")
    done
    for k in "${!pids[@]}"; do
        wait "${pids[$k]}" || status=1
        cat "$work/${names[$k]}.out"
    done
done
exit $status
