# What the bench scripts share, sourced by each (after `here`, the bench
# directory, is set):
#   bench_bed SERVICES...   a bed of integration/bed.sh in a directory of its own ($BED),
#                           its env sourced, HOME and the XDG directories inside it, no ssh
#                           agent; on exit, after the script's own bench_cleanup (if it has
#                           one), the bed is stopped and its directory removed
# shellcheck shell=bash

bench_bed() {
	BED=$(mktemp -d /tmp/pbench.XXXXXX)
	trap bench_stop EXIT
	"$here/../integration/bed.sh" start "$BED" "$@" >&2 || exit 1
	# shellcheck disable=SC1091
	. "$BED/env"
	export HOME=$BED/home XDG_CACHE_HOME=$BED/home/.cache XDG_STATE_HOME=$BED/home/.state
	mkdir -p "$HOME"
	unset SSH_AUTH_SOCK
}

bench_stop() {
	! declare -F bench_cleanup >/dev/null || bench_cleanup
	"$here/../integration/bed.sh" stop "$BED" >/dev/null 2>&1
	rm -rf "$BED"
}
