#!/usr/bin/env bash
# bench/run-notebook.sh PYSTRIB_BINARY: the notebook side by side with
# ipyparallel, in real kernels (Debian's ipykernel) driven by nbclient: 30
# cells of %%distributed that print and bump a counter on 2 ranks (a pystrib
# session on the bed's loopback sshd, runtime none, through one `session
# serve`) against 30 %%px cells of ipyparallel on 2 local engines. The time
# of a cell is what nbclient records (record_timing: iopub.execute_input to
# shell.execute_reply); bench/notebook.py measures. Starts its own bed and
# stops it. Not a test: nothing passes or fails. Rows for bench/run on
# stdout, the rest on stderr.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: bench/run-notebook.sh PYSTRIB_BINARY" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
PY=/usr/bin/python3
say() { echo "bench/notebook: $*" >&2; }

if ! "$PYSTRIB" help session >/dev/null 2>&1; then
	say "this pystrib has no 'session' command: nothing to measure"
	exit 0
fi
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_cleanup() {
	# A session the notebook could not stop (%dist_shutdown is its last cell).
	for s in $("$PYSTRIB" -c "$BED/pystrib.ini" session list 2>/dev/null | awk 'NR > 1 && $3 == "running" { print $1 }'); do
		"$PYSTRIB" -c "$BED/pystrib.ini" session stop "$s" >/dev/null 2>&1
	done
}
bench_bed sshd
# The kernels' environment: the extension from the source tree, this
# binary, the bed's config with runtime none; ipyparallel's engines are
# local processes (no MPI).
export PYTHONPATH=$here/../magic PYSTRIB_BIN=$PYSTRIB PYSTRIB_CONFIG=$BED_CONFIG
export PYSTRIB_REMOTE_RUNTIME=none PYSTRIB_REMOTE_PYTHON=$PY PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
export PYDEVD_DISABLE_FILE_VALIDATION=1
export IPYTHONDIR=$BED/ipython
$PY "$here/notebook.py" "$BED/nb" "${CELLS:-30}"
