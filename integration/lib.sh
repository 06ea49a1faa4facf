# Sourced by integration/tNNNN-*.sh scenarios. Provides:
#   bed_up SERVICES...   start a bed in a fresh temp dir (stopped on exit), source its env
#   ok MSG / fail MSG    report one check ("ok - MSG" / "not ok - MSG")
#   expect_exit CODE CMD...   run CMD, check its exit code (output kept in $BED_DIR/last.out/.err)
#   $PYSTRIB             the binary under test (integration/run.sh sets it)
# A scenario exits non-zero if any check failed, whatever it does at the end.
set -uo pipefail

INTEGRATION_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${PYSTRIB:?set PYSTRIB to the pystrib binary (integration/run.sh does)}"
LIB_FAILURES=0
LIB_BED=""

lib_exit() {
	local code=$?
	if [ -n "$LIB_BED" ]; then
		"$INTEGRATION_DIR/bed.sh" stop "$LIB_BED" >/dev/null 2>&1 || true
		[ -n "${KEEP_BED:-}" ] || rm -rf "$LIB_BED" 2>/dev/null || true
	fi
	if [ "$LIB_FAILURES" -gt 0 ] && [ "$code" -eq 0 ]; then
		exit 1
	fi
	exit "$code"
}
trap lib_exit EXIT

ok() { echo "ok - $*"; }
fail() { echo "not ok - $*"; LIB_FAILURES=$((LIB_FAILURES + 1)); }

bed_up() {
	# Short path: dockerd's unix socket path must stay under 108 bytes.
	LIB_BED=$(mktemp -d /tmp/pb.XXXXXX)
	if ! "$INTEGRATION_DIR/bed.sh" start "$LIB_BED" "$@"; then
		fail "the test bed ($*) starts"
		exit 1
	fi
	# shellcheck disable=SC1091
	. "$LIB_BED/env"
}

expect_exit() {
	local want=$1 got
	shift
	local out=${BED_DIR:-/tmp}/last.out err=${BED_DIR:-/tmp}/last.err
	"$@" > "$out" 2> "$err"
	got=$?
	if [ "$got" -eq "$want" ]; then
		ok "exit $want: $*"
	else
		fail "exit $want (got $got): $*"
		tail -n 5 "$err" | sed 's/^/    /'
	fi
}
