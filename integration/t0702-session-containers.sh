#!/usr/bin/env bash
# t0702: sessions (docs/sessions.md) in a container, runtime docker and then
# podman, on the bed's real sshd and engines: a variable set in one cell is
# read by the next, an mpi4py allreduce uses the communicator of the start;
# Ctrl-C interrupts time.sleep(60) within 2 s (130) and the next cell works;
# serve pushes a 100 MiB numpy array (the bed's base has numpy) and pulls
# it back, scatters and gathers it and a list, all checked value by value
# (session_serve.py arrays); stop leaves no container, no process (on the
# host or in the container's pid namespace) and no /dev/shm directory; a
# rank's os._exit(3) breaks the session (exec exits 4 naming it, status
# too) and stop then leaves nothing; --idle-timeout stops a session and
# leaves nothing either. t0701 covers the rest of sessions, runtime none.
. "$(dirname "$0")/lib.sh"
bed_up registry sshd base docker podman

export PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
P() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
jobs_dir=$BED_DIR/remote/jobs

printf 'x = 40 + rank\nprint("set", x)\n' > c1.py
printf 'print("x is", x + 1)\n' > c2.py
printf 'from mpi4py import MPI\nprint("sum", MPI.COMM_WORLD.allreduce(rank + 1))\n' > ar.py
printf 'import time\nprint("sleeping", rank, flush=True)\ntime.sleep(60)\n' > sleeps.py
printf 'import os\nif rank == 1:\n    os._exit(3)\nimport time; time.sleep(5)\n' > dies.py

# The processes of the pid namespace NS (readlink /proc/PID/ns/pid): a
# container's, all of them, whatever their command lines say.
in_pidns() {
	local p
	[ -n "$1" ] || return 0
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/pid" 2>/dev/null)" != "$1" ] ||
			echo "${p#/proc/} $(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)"
	done
}

# start ENGINE ARGS...: a 2-rank session in ENGINE's container, its id in
# $sid, its container's pid namespace in $ns.
start() {
	local engine=$1
	shift
	[ "$engine" = docker ] || set -- --remote "$engine" "$@"
	expect_exit 0 P session start -n 2 --no-project "$@"
	sid=$(cat "$out")
	ns=$(readlink "/proc/$(bed_engine "$engine" inspect -f '{{.State.Pid}}' "pystrib-$sid" 2>/dev/null)/ns/pid")
}

# gone LABEL ENGINE: the session $sid (namespace $ns) has left no container,
# no process and no /dev/shm directory (each waited for up to 10 s).
gone() {
	local label=$1 engine=$2 c p
	for _ in $(seq 100); do
		c=$(bed_engine "$engine" ps -a --format '{{.Names}}' | grep -x "pystrib-$sid")
		p=$( { pgrep -af -- "$jobs_dir/$sid|pystrib-$sid" | grep -v pgrep; in_pidns "$ns"; } )
		[ -n "$c$p" ] || [ -e "/dev/shm/pystrib-$sid" ] || break
		sleep 0.1
	done
	check_eq "$label: no container left ($engine ps -a)" "" "$c"
	check_eq "$label: no process left, on the host or in the container" "" "$p"
	check "$label: its /dev/shm directory is gone" test ! -e "/dev/shm/pystrib-$sid"
}

engine_case() {
	local E=$1
	# 1. State across cells; the communicator of the start; in the container.
	start "$E"
	check_grep "$E: the hub is idle" '"state": *"idle"' "$jobs_dir/$sid/session.json" || show "$err"
	check_eq "$E: the session ran with $E" "$E" "$(cat "$jobs_dir/$sid/runtime" 2>/dev/null)"
	check "$E: its container runs, in a pid namespace of its own" eval \
		'[ -n "$ns" ] && [ "$ns" != "$(readlink /proc/self/ns/pid)" ]'
	check "$E: it has its /dev/shm directory" test -d "/dev/shm/pystrib-$sid"
	check "$E: the hub and both ranks run in the container's pid namespace" eval \
		'[ "$(in_pidns "$ns" | grep -c "session.py worker")" -ge 2 ] && [ "$(in_pidns "$ns" | grep -c "session.py hub")" = 1 ]'
	expect_exit 0 P session exec "$sid" c1.py
	check_grep "$E: cell 1 runs on rank 1" -x "\[1\] set 41" "$out"
	expect_exit 0 P session exec "$sid" c2.py
	check_grep "$E: cell 2 sees cell 1's x (rank 0)" -x "\[0\] x is 41" "$out"
	check_grep "$E: cell 2 sees cell 1's x (rank 1)" -x "\[1\] x is 42" "$out"
	expect_exit 0 P session exec "$sid" ar.py
	check_grep "$E: an allreduce on the communicator from the start (rank 0)" -x "\[0\] sum 3" "$out"
	check_grep "$E: an allreduce on the communicator from the start (rank 1)" -x "\[1\] sum 3" "$out"

	# 2. Ctrl-C: 130 within 2 s, the next cell works.
	interrupt_after int.out int.err '^\[[01]\] sleeping' 2 "$PYSTRIB" -c "$BED_CONFIG" session exec "$sid" sleeps.py
	check_eq "$E: Ctrl-C: exec exits 130" 130 "$rc" || show int.out int.err
	check "$E: Ctrl-C: returned within 2 s ($took_ms ms)" test "$took_ms" -lt 2000
	check_grep "$E: Ctrl-C: KeyboardInterrupt in the cell" "KeyboardInterrupt" int.err
	expect_exit 0 P session exec "$sid" c2.py
	check_grep "$E: after an interrupt the next cell works" -x "\[1\] x is 42" "$out"

	# 3. serve: 100 MiB of numpy through push, pull, scatter and gather.
	expect_exit 0 "$PY" "$INTEGRATION_DIR/session_serve.py" "$PYSTRIB" "$BED_CONFIG" "$sid" arrays
	check_no_grep "$E: serve: push, pull, scatter, gather of 100 MiB" "^FAIL" "$out" || show "$out" "$err"
	check_eq "$E: serve: each of the driver's 9 checks ran" 9 "$(grep -c '^ok' "$out")"

	# 4. stop leaves nothing.
	expect_exit 0 P session stop "$sid"
	check_grep "$E: stop says so" "session $sid stopped" "$out"
	gone "$E: stop" "$E"

	# 5. A rank that dies: the session is broken, exit 4 naming it; stop
	# leaves nothing.
	start "$E"
	expect_exit 4 P session exec "$sid" dies.py
	check_grep "$E: a dying rank: exec names it" "rank 1 exited 3" "$err"
	check_no_grep "$E: a dying rank: rank 0 is not said to have raised" "rank 0 raised" "$err"
	expect_exit 4 P session exec "$sid" c2.py
	check_grep "$E: a broken session refuses the next cell, naming the rank" "broken: rank 1 exited 3" "$err"
	expect_exit 0 P session status "$sid"
	check_grep "$E: status names the broken rank and why" "^  broken: rank 1 exited 3" "$out"
	check_grep "$E: status shows rank 1 dead" "^  rank 1  pid [0-9]*  dead" "$out"
	expect_exit 0 P session stop "$sid"
	gone "$E: stop of a broken session" "$E"

	# 6. --idle-timeout: the session stops itself and leaves nothing.
	start "$E" --idle-timeout 2
	check "$E: idle timeout: the container ran" test -n "$ns"
	for _ in $(seq 150); do grep -qx succeeded "$jobs_dir/$sid/state" 2>/dev/null && break; sleep 0.1; done
	check_grep "$E: idle timeout: the session stopped itself" '"stopped": *"idle"' "$jobs_dir/$sid/session.json"
	gone "$E: idle timeout" "$E"
}

for engine in docker podman; do
	engine_case "$engine"
done
