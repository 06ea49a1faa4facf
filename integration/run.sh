#!/usr/bin/env bash
# Runs the end-to-end scenarios: integration/run.sh PYSTRIB_BINARY [PATTERN]
# Each integration/t*.sh (matching PATTERN, if given) runs in turn; the last
# line is "N passed, M failed". Exits non-zero if any scenario failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: integration/run.sh PYSTRIB_BINARY [PATTERN]" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
export PYSTRIB
pattern=${2:-}
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
