#!/usr/bin/env bash
# Runs scripts/demo.sh and checks what a newcomer sees: it succeeds, says at
# most about 40 lines (one per stage with its time, no apt, cmake or compiler
# output), shows both ranks' lines and the job's summary, and ends with the
# results that came back.
#   scripts/check-demo.sh           the demo as README.md gives it
#   scripts/check-demo.sh --keep    also demo.sh --keep: its "use them" command
#                                   works and its "stop them" command stops the bed
# Takes what the demo takes: about 15 s with a built tree and a cached base
# image, plus the build and about 45 s for the base the first time.
set -uo pipefail
cd "$(dirname "$0")/.."
MAX_LINES=40
failed=0
ok() { echo "ok - $*"; }
fail() { echo "not ok - $*"; failed=1; }
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

out=$(mktemp /tmp/pystrib-check-demo.XXXXXX)
trap 'rm -f "$out"' EXIT

# check_output FILE: the checks on one run's output (stdout and stderr together).
check_output() {
	local f=$1 n
	n=$(wc -l < "$f")
	check "at most $MAX_LINES lines ($n)" test "$n" -le "$MAX_LINES"
	check "no build, apt or cmake output" \
		bash -c "! grep -qE '^\[ *[0-9]+%\]|Building C|Linking C|^-- |^(Get|Hit|Setting up|Unpacking):|Successfully installed|^Processing ' '$f'"
	check "the log file is named" grep -qE '^== the set-up.s output goes to /.*\.log$' "$f"
	check "each stage is one line with its time" \
		bash -c "grep ' \.\.\. ' '$f' | grep -q . && ! grep ' \.\.\. ' '$f' | grep -qvE ' \.\.\. [0-9]+\.[0-9] s$'"
	check "the base image step says what it does" \
		grep -qE '^== the base image \(Debian 12 with python3, Open MPI and mpi4py\)' "$f"
	check "the ranks' lines" \
		bash -c "grep -qE '^\[0\] rank 0/2 .*allreduce sum 5$' '$f' && grep -qE '^\[1\] rank 1/2 .*allreduce sum 5$' '$f'"
	check "the job's summary" grep -qE '^job [0-9a-f-]+ succeeded$' "$f"
	# The end: the results block, and nothing after it but --keep's lines.
	local tail
	tail=$(sed -n '/^== the results that came back/,$p' "$f" | sed '/^== the services keep running/,$d')
	check "ends with the results that came back" bash -c "
		printf '%s\n' \"\$1\" | sed -n 2p | grep -qx 'results/rank0.txt: 0 1 5' &&
		printf '%s\n' \"\$1\" | sed -n 3p | grep -qx 'results/rank1.txt: 1 4 5' &&
		printf '%s\n' \"\$1\" | sed -n 4p | grep -q '^logs/: .*rank.0.out' &&
		test \"\$(printf '%s\n' \"\$1\" | wc -l)\" -eq 4" _ "$tail"
}

t0=$EPOCHREALTIME
scripts/demo.sh > "$out" 2>&1
code=$?
check "scripts/demo.sh exits 0 ($code)" test "$code" -eq 0
check_output "$out"
check "without --keep, the last line is the results'" bash -c "tail -n 1 '$out' | grep -q '^logs/: '"
[ "$failed" -eq 0 ] || { echo "--- scripts/demo.sh said:"; cat "$out"; }

if [ "${1:-}" = --keep ]; then
	scripts/demo.sh --keep > "$out" 2>&1
	code=$?
	check "scripts/demo.sh --keep exits 0 ($code)" test "$code" -eq 0
	check_output "$out"
	use=$(sed -n 's/^   use them:  //p' "$out")
	stop=$(sed -n 's/^   stop them: //p' "$out")
	bed=$(sed -n 's/^== the services keep running in //p' "$out")
	check "--keep: names the bed's config ($bed/pystrib.ini)" test -n "$bed" -a -f "$bed/pystrib.ini"
	elsewhere=$(mktemp -d /tmp/pystrib-check-demo.XXXXXX)
	check "--keep: its pystrib -c command runs the job again, from elsewhere ($use)" \
		bash -c "cd '$elsewhere' && $use 2>&1 | grep -qE '^job [0-9a-f-]+ succeeded$'"
	rm -rf "$elsewhere"
	check "--keep: its stop command stops the bed ($stop)" \
		bash -c "cd / && $stop && ! test -e '$bed'"
	[ -z "$bed" ] || [ ! -d "$bed" ] || integration/bed.sh stop "$bed" > /dev/null 2>&1
	[ "$failed" -eq 0 ] || { echo "--- scripts/demo.sh --keep said:"; cat "$out"; }
fi

echo "check-demo: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
exit "$failed"
