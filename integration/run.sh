#!/usr/bin/env bash
# Runs the end-to-end scenarios: integration/run.sh PYSTRIB_BINARY [PATTERN[:CHECK]]
#
# Each integration/t*.sh whose name holds PATTERN (all, if none is given)
# runs in turn; each prints one line per check ("ok N - NAME", "not ok N -
# NAME" and what did not match) and "N checks passed, M failed"; the last
# line here is "N passed, M failed" over the scenarios. Exits non-zero if
# any scenario failed.
#
# PATTERN:CHECK (or PYSTRIB_CHECK=CHECK in the environment) judges only the
# checks whose name holds CHECK, the others say "skipped"; the scenario still
# runs every step. E.g. integration/run.sh build/pystrib 't0401:SIGINT'.
# KEEP_BED=1 keeps each scenario's directory (/tmp/pb.*) for a look after.
# The scenarios' library is integration/lib.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: integration/run.sh PYSTRIB_BINARY [PATTERN[:CHECK]]" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
export PYSTRIB
pattern=${2:-}
if [[ $pattern == *:* ]]; then
	export PYSTRIB_CHECK=${pattern#*:}
	pattern=${pattern%%:*}
fi
passed=0 failed=0 failures=()
for t in "$here"/t[0-9]*.sh; do
	name=$(basename "$t" .sh)
	[ -z "$pattern" ] || [[ $name == *"$pattern"* ]] || continue
	echo "=== $name"
	start=$(date +%s)
	if bash "$t"; then
		passed=$((passed + 1))
		echo "=== $name: passed ($(( $(date +%s) - start )) s)"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "=== $name: FAILED ($(( $(date +%s) - start )) s)"
	fi
done
[ $failed -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
