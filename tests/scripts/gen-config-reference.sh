#!/usr/bin/env bash
# Regenerates the settings table of config/README.md from the code's table of settings:
#   tests/scripts/gen-config-reference.sh build/gateway/cohortgate
set -euo pipefail
cg=${1:?usage: $0 path/to/cohortgate}
root=$(cd "$(dirname "$0")/../.." && pwd)
ref=$("$cg" check --reference)
python3 - "$root/config/README.md" "$ref" <<'PY'
import sys
path, ref = sys.argv[1], sys.argv[2]
s = open(path).read()
a = s.index('<!-- BEGIN REFERENCE -->\n') + len('<!-- BEGIN REFERENCE -->\n')
b = s.index('<!-- END REFERENCE -->')
open(path, 'w').write(s[:a] + ref + '\n' + s[b:])
PY
