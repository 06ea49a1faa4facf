#!/usr/bin/env bash
# bench/run-session.sh PYSTRIB_BINARY: a pystrib session (docs/sessions.md)
# side by side with ipyparallel, the tool the seeds' notebooks use today, on
# the bed's loopback sshd with runtime none (the host's Open MPI and Debian's
# python3): per-cell round trip through `session serve`, start-up, a torch
# cell run again in the session against `pystrib run` of it, and a 256 MiB
# pull against scp through the same sshd, and what a one-file project edit
# adds to the next cell (bench/session.py measures; this
# script starts the bed and the session and stops them). Not a test: nothing
# passes or fails. Rows for bench/run on stdout, the rest on stderr.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: bench/run-session.sh PYSTRIB_BINARY" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
PY=/usr/bin/python3
say() { echo "bench/session: $*" >&2; }

if ! "$PYSTRIB" help session >/dev/null 2>&1; then
	say "this pystrib has no 'session' command: nothing to measure"
	exit 0
fi
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
sid=''
bench_cleanup() { [ -z "$sid" ] || "$PYSTRIB" -c "$BED/pystrib.ini" session stop "$sid" >/dev/null 2>&1; }
bench_bed sshd
export PYSTRIB_REMOTE_PYTHON=$PY PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
# Open MPI refuses root without these (ipyparallel's engines do not use it).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
opts=(-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes
	-o UserKnownHostsFile="$BED_KNOWN_HOSTS" -i "$BED_SSH_KEY")
BENCH_SSH=$($PY -c 'import json, sys; o = sys.argv[3:]
print(json.dumps({"scp": ["scp", "-q", "-P", sys.argv[1]] + o, "ssh": ["ssh", "-p", sys.argv[1]] + o + [sys.argv[2]], "dest": sys.argv[2]}))' \
	"$BED_SSH_PORT" "$BED_SSH_USER@$BED_SSH_HOST" "${opts[@]}")
export BENCH_SSH

cd "$BED" || exit 1
start=$(date +%s.%N)
sid=$("$PYSTRIB" -c "$BED_CONFIG" session start --remote none -n 2 --no-project 2> "$BED/start.err")
BENCH_START_SECONDS=$($PY -c "import time; print(time.time() - $start)")
export BENCH_START_SECONDS
if [ -z "$sid" ]; then
	say "session start failed:"; cat "$BED/start.err" >&2
	exit 1
fi
say "session $sid up in ${BENCH_START_SECONDS} s"
$PY "$here/session.py" "$PYSTRIB" "$BED_CONFIG" "$sid" --remote none
