# The test library of the end-to-end scenarios, sourced by each
# integration/tNNNN-*.sh (in the spirit of git's t/test-lib.sh).
#
# Sourcing it gives every scenario the same start: a fresh directory of its
# own ($LIB_DIR, short: dockerd's socket path must stay under 108 bytes),
# HOME and the XDG directories inside it, no ssh agent, none of the caller's
# pystrib settings (PYSTRIB_CONFIG, PYSTRIB_REMOTE_* and the like), and
# $PYSTRIB checked to be a program.
#
# The bed and cleanups:
#   bed_up SERVICES...      start a bed in $LIB_DIR (stopped on exit), source its env
#   bed_engines             export DOCKER_HOST and CONTAINERS_* for the bed's engines
#   bed_engine ENGINE ARGS...   the bed's docker or podman client (ENGINE), e.g. bed_engine podman ps -a
#   cleanup COMMAND...      run COMMAND once on EXIT, INT or TERM; last registered first
#                           (background jobs still running are killed before any)
#   skip_all REASON         the scenario cannot run here: say why, exit 0
#   require_verbs WHY VERB...   stop unless this pystrib has each command
#
# Named checks: each prints "ok N - NAME" or "not ok N - NAME" and what did
# not match; the scenario goes on, its last line is "N checks passed, M
# failed", and it exits non-zero if any failed. Each returns non-zero when it
# failed, so that `check ... || show FILE` adds context.
#   check NAME COMMAND...       COMMAND succeeds (its output is shown if not);
#                               a shell condition: check NAME eval '[ ... ] && ...'
#   check_eq NAME EXPECTED ACTUAL   the two strings are equal (diff -u if not)
#   check_grep NAME GREP-ARGS...    grep -q GREP-ARGS finds a line (the files are shown if not)
#   check_no_grep NAME GREP-ARGS... grep finds none (the files that match are named if not)
#   check_cmp NAME EXPECTED_FILE ACTUAL_FILE   the files are equal (diff -u if not)
#   check_status NAME STATUS    a verdict reached elsewhere (0: passed), e.g. by a Python driver
#   expect_exit CODE COMMAND... COMMAND exits CODE (a check named "exit CODE: COMMAND");
#                               its output is kept in $out and $err ($LIB_DIR/last.out, .err)
#   show FILE...                print files, indented, after a failed check
#
# With PYSTRIB_CHECK=SUBSTRING (integration/run.sh BIN tNNNN:SUBSTRING sets
# it) only the checks whose name holds SUBSTRING are judged; the others say
# "skipped". Every step still runs (a later check may need what an earlier
# one made): check and expect_exit still run their command. A scenario in
# which no check matches fails, so that a mistyped name does not pass.
#
# Helpers:
#   free_port               a TCP port free on 127.0.0.1 now
#   bed_ssh ARGS...         ssh to the bed's sshd as the bed's user, its host key verified
#   sshd_new_host_key       restart the bed's sshd with a new host key
#   interrupt_after OUT ERR PATTERN N COMMAND...   runs COMMAND in the background (stdout in
#                           OUT, stderr in ERR) until N lines of OUT match PATTERN (10 s at
#                           most), SIGINTs it and waits: $rc its exit, $took_ms from the SIGINT
#   host_procs HOST PATTERN     how many processes of namespace host HOST (bed service
#                           hosts: h1, h2) have a command line grep PATTERN matches
#   host_wait HOST          wait up to 5 s until HOST's sshd answers (after it restarted)
#   notebook_setup          pip-installs magic/ offline into $BED_DIR/site (a check; the
#                           scenario ends if it fails) and exports what the kernels
#                           inherit: PYTHONPATH, PYSTRIB_BIN, PYSTRIB_CONFIG, NB_DIR, TMPDIR
#   job_id_from_json FILE   the id of the first "job" event in pystrib --json output
#   job_id_from_err FILE    the id in the "pystrib: job ID: ..." line run prints on stderr
#                           (for runs whose text output a check reads)
#   pinned_ref REFERENCE    REGISTRY/REPO@sha256:... from a printed reference (with a tag or not)
#   push_image_without_mpirun   the bed's base without mpirun, as $BED_REGISTRY/nompi:1
#   $PYSTRIB                the binary under test (integration/run.sh sets it)
#   $PY, $DOCKER            Debian's python3 and the bed's docker client
# shellcheck shell=bash
set -uo pipefail

INTEGRATION_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIB_NAME=$(basename "$0" .sh)
PY=/usr/bin/python3
DOCKER=/usr/bin/docker	# the daemon's own client, not the static one first on PATH
LIB_PASSED=0 LIB_FAILED=0 LIB_SKIPPED=0 LIB_NUM=0
LIB_CLEANUPS=()
LIB_DONE=""

: "${PYSTRIB:?set PYSTRIB to the pystrib binary (integration/run.sh does)}"
if [ ! -x "$PYSTRIB" ] || [ -d "$PYSTRIB" ]; then
	echo "$LIB_NAME: '$PYSTRIB' is not a program" >&2
	exit 2
fi

lib_exit() {
	local code=$? i p
	[ -z "$LIB_DONE" ] || return 0
	LIB_DONE=1
	trap - INT TERM
	for p in $(jobs -pr); do kill "$p" 2>/dev/null; done
	for ((i = ${#LIB_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${LIB_CLEANUPS[$i]}" || true
	done
	if [ -n "${PYSTRIB_CHECK:-}" ] && [ $((LIB_PASSED + LIB_FAILED)) -eq 0 ]; then
		echo "$LIB_NAME: no check matches PYSTRIB_CHECK='$PYSTRIB_CHECK'"
		[ "$code" -ne 0 ] || code=1
	fi
	echo "$LIB_NAME: $LIB_PASSED checks passed, $LIB_FAILED failed$([ "$LIB_SKIPPED" -eq 0 ] ||
		echo ", $LIB_SKIPPED skipped")"
	[ "$LIB_FAILED" -eq 0 ] || [ "$code" -ne 0 ] || code=1
	exit "$code"
}
trap lib_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cleanup() {
	LIB_CLEANUPS+=("$(printf '%q ' "$@")")
}

# The scenario's own directory, HOME and XDG directories in it.
LIB_DIR=$(mktemp -d /tmp/pb.XXXXXX)
out=$LIB_DIR/last.out err=$LIB_DIR/last.err
lib_rm_dir() { [ -n "${KEEP_BED:-}" ] || rm -rf "$LIB_DIR" 2>/dev/null || true; }
cleanup lib_rm_dir
export HOME=$LIB_DIR/home
export XDG_CONFIG_HOME=$HOME/.config XDG_CACHE_HOME=$HOME/.cache \
	XDG_STATE_HOME=$HOME/.local/state XDG_DATA_HOME=$HOME/.local/share
mkdir -p "$HOME"
unset SSH_AUTH_SOCK PYSTRIB_CONFIG
export -n PYSTRIB_CHECK 2>/dev/null
for v in $(compgen -e | grep -E '^PYSTRIB_(REGISTRY|IMAGE|REMOTE|JOB|NOTEBOOK|BUILD)_'); do unset "$v"; done

# lib_selected NAME: whether PYSTRIB_CHECK lets the check NAME be judged.
lib_selected() {
	[ -z "${PYSTRIB_CHECK:-}" ] || [[ $1 == *"$PYSTRIB_CHECK"* ]]
}

# lib_verdict NAME STATUS [DETAIL-FILE]: count and print one check's outcome.
lib_verdict() {
	LIB_NUM=$((LIB_NUM + 1))
	if [ "$2" -eq 0 ]; then
		LIB_PASSED=$((LIB_PASSED + 1))
		echo "ok $LIB_NUM - $1"
		return 0
	fi
	LIB_FAILED=$((LIB_FAILED + 1))
	echo "not ok $LIB_NUM - $1"
	[ -z "${3:-}" ] || sed 's/^/#   /' "$3"
	return 1
}

lib_skip() {
	LIB_NUM=$((LIB_NUM + 1))
	LIB_SKIPPED=$((LIB_SKIPPED + 1))
	echo "skipped $LIB_NUM - $1"
}

check() {
	local name=$1 rc detail=$LIB_DIR/.check
	shift
	"$@" > "$detail" 2>&1
	rc=$?
	if ! lib_selected "$name"; then
		lib_skip "$name"
		return 0
	fi
	if [ "$rc" -ne 0 ]; then
		{
			if [ "$1" = eval ]; then
				printf 'failed (exit %s): %s\n' "$rc" "${*:2}"
			else
				printf 'failed (exit %s):' "$rc"
				printf ' %q' "$@"
				echo
			fi
			tail -n 40 "$detail"
		} > "$detail.2"
		mv "$detail.2" "$detail"
	fi
	lib_verdict "$name" "$rc" "$detail"
}

check_eq() {
	local name=$1 want=$2 got=$3
	lib_selected "$name" || { lib_skip "$name"; return 0; }
	if [ "$want" = "$got" ]; then
		lib_verdict "$name" 0
	else
		diff -u --label expected --label actual <(printf '%s\n' "$want") <(printf '%s\n' "$got") \
			> "$LIB_DIR/.check"
		lib_verdict "$name" 1 "$LIB_DIR/.check"
	fi
}

# lib_files ARGS...: the arguments that name regular files, shown after a failure.
lib_files() {
	local a
	for a in "$@"; do
		[ -f "$a" ] || continue
		echo "--- $a$( [ "$(wc -l < "$a")" -le 40 ] || echo " (last 40 lines)")"
		tail -n 40 "$a"
	done
}

check_grep() {
	local name=$1
	shift
	lib_selected "$name" || { lib_skip "$name"; return 0; }
	if grep -q "$@" 2>/dev/null; then
		lib_verdict "$name" 0
	else
		{ printf 'no line matches: grep'; printf ' %q' "$@"; echo; lib_files "$@"; } > "$LIB_DIR/.check"
		lib_verdict "$name" 1 "$LIB_DIR/.check"
	fi
}

check_no_grep() {
	local name=$1
	shift
	lib_selected "$name" || { lib_skip "$name"; return 0; }
	if ! grep -q "$@" 2>/dev/null; then
		lib_verdict "$name" 0
	else
		# The files, not the lines: what must not be there may be a secret.
		{ printf 'a line matches: grep'; printf ' %q' "$@"; echo; echo "in: $(grep -l "$@" 2>/dev/null |
			tr '\n' ' ')"; } > "$LIB_DIR/.check"
		lib_verdict "$name" 1 "$LIB_DIR/.check"
	fi
}

check_cmp() {
	local name=$1 want=$2 got=$3
	lib_selected "$name" || { lib_skip "$name"; return 0; }
	if cmp -s "$want" "$got"; then
		lib_verdict "$name" 0
	else
		{ diff -u "$want" "$got" 2>&1 | head -n 60; } > "$LIB_DIR/.check"
		lib_verdict "$name" 1 "$LIB_DIR/.check"
	fi
}

check_status() {
	lib_selected "$1" || { lib_skip "$1"; return 0; }
	lib_verdict "$1" "$2"
}

expect_exit() {
	local want=$1 got name
	shift
	"$@" > "$LIB_DIR/last.out" 2> "$LIB_DIR/last.err"
	got=$?
	name="exit $want: $*"
	name=${name//"$PYSTRIB"/pystrib}
	name=${name//"$LIB_DIR"/\$BED_DIR}
	lib_selected "$name" || { lib_skip "$name"; return 0; }
	if [ "$got" -eq "$want" ]; then
		lib_verdict "$name" 0
	else
		{ echo "exit $got, not $want; the end of its stderr:"; tail -n 10 "$LIB_DIR/last.err"; } > "$LIB_DIR/.check"
		lib_verdict "$name" 1 "$LIB_DIR/.check"
	fi
}

show() {
	local f
	for f in "$@"; do
		echo "#   --- $f"
		sed 's/^/#   /' "$f" 2>&1
	done
	return 0
}

skip_all() {
	echo "skipped: $*"
	LIB_SKIPPED=$((LIB_SKIPPED + 1))
	PYSTRIB_CHECK=""
	exit 0
}

require_verbs() {
	local why=$1 v
	shift
	for v in "$@"; do
		if ! "$PYSTRIB" help "$v" > /dev/null 2>&1; then
			lib_verdict "this pystrib has a '$v' command ($why)" 1
			exit 1
		fi
	done
}

bed_stop() { "$INTEGRATION_DIR/bed.sh" stop "$LIB_DIR" >/dev/null 2>&1 || true; }

bed_up() {
	cleanup bed_stop
	if ! "$INTEGRATION_DIR/bed.sh" start "$LIB_DIR" "$@"; then
		lib_verdict "the test bed ($*) starts" 1
		exit 1
	fi
	# shellcheck disable=SC1091
	. "$LIB_DIR/env"
}

bed_engines() {
	[ -z "${BED_DOCKER_HOST:-}" ] || export DOCKER_HOST=$BED_DOCKER_HOST
	[ -z "${BED_CONTAINERS_CONF:-}" ] ||
		export CONTAINERS_CONF=$BED_CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$BED_CONTAINERS_STORAGE_CONF
}

bed_engine() {
	local engine=$1
	shift
	if [ "$engine" = docker ]; then
		DOCKER_HOST=$BED_DOCKER_HOST "$DOCKER" "$@"
	else
		CONTAINERS_CONF=$BED_CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$BED_CONTAINERS_STORAGE_CONF podman "$@"
	fi
}

interrupt_after() {
	local o=$1 e=$2 pattern=$3 n=$4 pid t0 c
	shift 4
	# Emptied first: a previous call's OUT would match before COMMAND
	# truncates it, and the SIGINT would come before COMMAND runs.
	: > "$o"
	: > "$e"
	"$@" > "$o" 2> "$e" &
	pid=$!
	for _ in $(seq 100); do
		c=$(grep -c -- "$pattern" "$o" 2>/dev/null)
		[ "${c:-0}" -lt "$n" ] || break
		sleep 0.1
	done
	t0=$(date +%s%N)
	kill -INT "$pid"
	wait "$pid"
	rc=$?
	took_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}

notebook_setup() {
	# The way the README installs it, but into a directory of its own
	# (--target; --no-deps since the target starts empty: IPython is
	# Debian's), from a copy (pip builds in the source tree).
	cp -r "$INTEGRATION_DIR/../magic" "$BED_DIR/magic-src"
	rm -rf "$BED_DIR/magic-src/build" "$BED_DIR/magic-src/"*.egg-info
	check "pip installs magic/ offline" eval '"$PY" -m pip install -q --no-index --no-build-isolation --no-deps \
		--target "$BED_DIR/site" "$BED_DIR/magic-src" > "$BED_DIR/pip.log" 2>&1 &&
		[ -f "$BED_DIR/site/pystributed/main.py" ] && [ -f "$BED_DIR/site/pystributed/session.py" ]' ||
		{ show "$BED_DIR/pip.log"; exit 1; }
	export BED_DIR PYTHONPATH=$BED_DIR/site PYSTRIB_CONFIG=$BED_CONFIG
	PYSTRIB_BIN=$(realpath "$PYSTRIB")
	export PYSTRIB_BIN NB_DIR=$BED_DIR/nb TMPDIR=$BED_DIR/tmp
	# debugpy's notice about frozen modules, printed by every kernel start.
	export PYDEVD_DISABLE_FILE_VALIDATION=1
	mkdir -p "$NB_DIR" "$TMPDIR"
}

host_procs() {
	local p n=0
	for p in $(ip netns pids "$1" 2>/dev/null); do
		ps -o args= -p "$p" 2>/dev/null | grep -q -- "$2" && n=$((n + 1))
	done
	echo "$n"
}

host_wait() {
	for _ in $(seq 50); do
		ssh -i "$BED_HOSTS_KEY" -o IdentitiesOnly=yes -o UserKnownHostsFile="$BED_HOSTS_KNOWN_HOSTS" \
			-o BatchMode=yes "root@198.18.0.${1#h}" true 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

bed_ssh() {
	ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" -o BatchMode=yes -o IdentitiesOnly=yes \
		-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BED_KNOWN_HOSTS" \
		"$BED_SSH_USER@$BED_SSH_HOST" "$@"
}

sshd_new_host_key() {
	local pidf=$BED_DIR/ssh/sshd.pid
	kill "$(cat "$pidf")"
	for _ in $(seq 50); do [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null || break; sleep 0.1; done
	rm -f "$BED_DIR/ssh/host_key" "$BED_DIR/ssh/host_key.pub"
	ssh-keygen -q -t ed25519 -N '' -C "new host" -f "$BED_DIR/ssh/host_key"
	/usr/sbin/sshd -f "$BED_DIR/ssh/sshd_config" -E "$BED_DIR/ssh/sshd.log"
	for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BED_SSH_PORT") 2>/dev/null && break; sleep 0.1; done
}

job_id_from_json() {
	"$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("event") == "job" and e.get("id"):
        print(e["id"])
        break' "$1"
}

job_id_from_err() {
	sed -n 's/^pystrib: job \([0-9a-f-]*\):.*/\1/p' "$1" | head -1
}

# push_image_without_mpirun: builds the bed's base without Open MPI's
# launchers on the bed's docker and pushes it as $BED_REGISTRY/nompi:1
# (an image whose jobs cannot start a rank). Non-zero if that failed.
push_image_without_mpirun() {
	printf 'FROM %s\nRUN rm -f /usr/bin/mpirun /usr/bin/mpiexec /usr/bin/orterun\n' "$BED_BASE" \
		> "$BED_DIR/nompi.Dockerfile"
	mkdir -p "$BED_DIR/empty-ctx"
	DOCKER_HOST=$BED_DOCKER_HOST DOCKER_BUILDKIT=0 "$DOCKER" build -q --network none \
		-t "$BED_REGISTRY/nompi:1" -f "$BED_DIR/nompi.Dockerfile" "$BED_DIR/empty-ctx" > /dev/null &&
		DOCKER_HOST=$BED_DOCKER_HOST "$DOCKER" push -q "$BED_REGISTRY/nompi:1" > /dev/null
}

pinned_ref() {
	local ref=$1 name
	name=${ref%@*}
	case ${name##*/} in *:*) name=${name%:*} ;; esac
	echo "$name@${ref##*@}"
}
