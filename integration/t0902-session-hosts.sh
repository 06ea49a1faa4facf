#!/usr/bin/env bash
# t0902: a session over several hosts ([remote] hosts), runtime none, on the
# bed's namespace hosts h1 and h2 (t0901's): 4 ranks over both, the hub on
# h1 and ranks.sock forwarded to h2 over ssh; a variable set in one cell is
# read by the next on every rank; an mpi4py allreduce over both hosts is
# right; RANK, LOCAL_RANK and MASTER_ADDR as for a job; --ranks 3 runs only
# on h2's rank; Ctrl-C interrupts the cell on both hosts; a project file
# edited between two cells reaches h2's ranks too; h2's processes killed
# mid-cell break the session, naming the rank and its host (exec exits 4,
# nothing hangs), and so does h2 lost
# whole; stop, cancel and the idle timeout leave no hub, worker, orted or
# forward on either host; gc then removes their directories on both.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces)"
command -v ip >/dev/null 2>&1 || skip_all "no ip (iproute2)"
bed_up hosts
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
P() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
h1_jobs=$BED_DIR/hosts/h1-work/jobs
h2_jobs=$BED_DIR/hosts/h2-work/jobs
# The session's processes on host $1 (h1, h2): the hub and workers
# (session.py), Open MPI's daemon, the forward of ranks.sock (ssh on h1,
# its remote shell on h2).
procs_on() { host_procs "$1" 'session\.py\|orted\|ranks\.sock'; }
show_procs() {
	local p
	for p in $(ip netns pids h1) $(ip netns pids h2); do ps -o pid=,args= -p "$p" | cut -c1-200; done
}
# Waits up to 10 s for no session process on either host.
none_left() {
	for _ in $(seq 100); do
		[ "$(procs_on h1)" = 0 ] && [ "$(procs_on h2)" = 0 ] && return 0
		sleep 0.1
	done
	return 1
}
start() {
	expect_exit 0 P session start --remote pair -n 4 --no-project "$@"
	sid=$(tail -n 1 "$out")
	check "the session starts over h1 and h2" eval '[[ $sid =~ ^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$ ]]' ||
		{ show "$out" "$err" "$h1_jobs"/*/logs/job.err; show_procs; }
}

# 1. Four ranks over both hosts; the session's files on both, 0700.
start
check_grep "the hub is idle" '"state": *"idle"' "$h1_jobs/$sid/session.json"
check_eq "the session dir on h2 is 0700" 700 "$(stat -c %a "$h2_jobs/$sid" 2>/dev/null)"
check_eq "the forwarded ranks.sock on h2 is 0600" 600 "$(stat -c %a "$h2_jobs/$sid/ranks.sock" 2>/dev/null)"
hub=$(sed -n 's/^ *"hub_pid": *\([0-9]*\).*/\1/p' "$h1_jobs/$sid/session.json")
check "the hub listens on no TCP port" eval '[ -n "$hub" ] && ! ip netns exec h1 ss -Htlnp | grep -q "pid=$hub,"'

# 2. State across cells, on every rank; the topology.
cat > c1.py <<'EOF2'
import os, socket
x = 40 + rank
e = os.environ
print("set", x, "on", socket.gethostname(), "rank", e["RANK"], "local", e["LOCAL_RANK"],
      "master", e["MASTER_ADDR"])
EOF2
printf 'print("x is", x + 1)\n' > c2.py
expect_exit 0 P session exec "$sid" c1.py
for r in 0 1 2 3; do
	h=h1 l=$r
	[ "$r" -lt 2 ] || h=h2 l=$((r - 2))
	check_grep "cell 1: rank $r on $h, RANK $r, LOCAL_RANK $l, MASTER_ADDR rank 0's host" \
		-x "\[$r\] set $((40 + r)) on $h rank $r local $l master 198.18.0.1" "$out"
done
expect_exit 0 P session exec "$sid" c2.py
for r in 0 1 2 3; do
	check_grep "cell 2 sees cell 1's x on rank $r" -x "\[$r\] x is $((41 + r))" "$out"
done

# 3. An allreduce over both hosts.
printf 'from mpi4py import MPI\nprint("sum", MPI.COMM_WORLD.allreduce(rank + 1))\n' > sum.py
expect_exit 0 P session exec "$sid" sum.py
for r in 0 1 2 3; do
	check_grep "allreduce over both hosts on rank $r" -x "\[$r\] sum 10" "$out"
done

# 4. --ranks 3: h2's rank alone.
printf 'import socket\nprint("only", rank, socket.gethostname())\n' > only.py
expect_exit 0 P session exec "$sid" only.py --ranks 3
check_grep "--ranks 3 runs on rank 3, on h2" -x "\[3\] only 3 h2" "$out"
check_no_grep "--ranks 3 runs on no other rank" "^\[[012]\]" "$out"

# 4b. Ctrl-C reaches the ranks on both hosts (h2's through its forward:
# a pid there is h2's own), within 2 s; the next cell works everywhere.
printf 'import time\nprint("sleeping", rank, flush=True)\ntime.sleep(60)\n' > nap.py
interrupt_after int.out int.err '^\[[0-3]\] sleeping' 4 "$PYSTRIB" -c "$BED_CONFIG" session exec "$sid" nap.py
check_eq "Ctrl-C over both hosts: exec exits 130" 130 "$rc" || show int.out int.err
check "Ctrl-C over both hosts: returned within 2 s ($took_ms ms)" test "$took_ms" -lt 2000
check_grep "Ctrl-C: rank 3 on h2 was interrupted in its cell" "^\[3\] KeyboardInterrupt" int.err
expect_exit 0 P session exec "$sid" c2.py
check_grep "after the interrupt rank 3 still has its x" -x "\[3\] x is 44" "$out"

# 5. stop: nothing left on either host.
check "the session runs on h2" eval '[ "$(procs_on h2)" -ge 3 ]' || show_procs
expect_exit 0 P session stop "$sid"
check "stop: no hub, worker, orted or forward left on h1 or h2" none_left || show_procs
check "stop: the forwarded ranks.sock is gone from h2" test ! -e "$h2_jobs/$sid/ranks.sock"

# 5b. A project file edited between two cells reaches h2's ranks too (a
# rank there unpacks what the hub does on h1).
rm -rf proj && mkdir -p proj/pkg
: > proj/pkg/__init__.py
printf 'VALUE = 1\n' > proj/pkg/mod.py
expect_exit 0 P session start --remote pair -n 4 --project proj
sid=$(tail -n 1 "$out")
printf 'import importlib, socket, pkg.mod\nimportlib.reload(pkg.mod)\nprint("value", pkg.mod.VALUE, socket.gethostname())\n' > pv.py
expect_exit 0 P session exec "$sid" pv.py
check_grep "project: rank 3 on h2 imports the project's module" -x "\[3\] value 1 h2" "$out"
sleep 0.01
printf 'VALUE = 2\n' > proj/pkg/mod.py
expect_exit 0 P session exec "$sid" pv.py
check_grep "project: the edit is seen on h1 (rank 0)" -x "\[0\] value 2 h1" "$out"
check_grep "project: the edit is seen on h2 (rank 3)" -x "\[3\] value 2 h2" "$out" || show "$out" "$err"
expect_exit 0 P session stop "$sid"
check "project: stop leaves nothing on h1 or h2" none_left || show_procs

# 6. h2's processes killed mid-cell: broken, rank and host named, exit 4.
start
printf 'import time\nprint("sleeping", rank, flush=True)\ntime.sleep(60)\n' > sleeps.py
"$PYSTRIB" -c "$BED_CONFIG" session exec "$sid" sleeps.py > kill.out 2> kill.err &
runner=$!
for _ in $(seq 100); do [ "$(grep -c sleeping kill.out 2>/dev/null)" -ge 4 ] && break; sleep 0.1; done
check_eq "every rank sleeps in the cell" 4 "$(grep -c sleeping kill.out)"
for p in $(ip netns pids h2); do
	ps -o args= -p "$p" 2>/dev/null | grep -q 'session\.py\|orted' && kill -9 "$p"
done
t0=$(date +%s)
wait "$runner"
check_eq "a host lost mid-cell: exec exits 4" 4 "$?" || show kill.out kill.err
check "nothing hangs: exec ended within 20 s" eval '[ $(( $(date +%s) - t0 )) -le 20 ]'
check_grep "the session is broken, naming h2's rank and host" \
	"session $sid is broken: rank [23] .*(on host h2)" kill.err
check_grep "the cell ends broken" "cell 1 broken" kill.err
expect_exit 0 P session status "$sid"
check_grep "status says broken" "broken" "$out"
expect_exit 0 P session stop "$sid"
check "stop of a broken session: nothing left on h1 or h2" none_left || show_procs

# 7. h2 lost whole (its sshd and everything on it) mid-cell: broken, named.
h2_sshd_start() { sh "$BED_DIR/hosts/h2-start.sh"; }
start
"$PYSTRIB" -c "$BED_CONFIG" session exec "$sid" sleeps.py > lost.out 2> lost.err &
runner=$!
for _ in $(seq 100); do [ "$(grep -c sleeping lost.out 2>/dev/null)" -ge 4 ] && break; sleep 0.1; done
for p in $(ip netns pids h2); do kill -9 "$p"; done
wait "$runner"
check_eq "h2 lost whole mid-cell: exec exits 4" 4 "$?" || show lost.out lost.err
check_grep "the lost host is named" \
	"session $sid is broken: \(rank [23] .*(on host h2)\|host '198.18.0.2' was lost\)" lost.err
h2_sshd_start
host_wait h2
expect_exit 0 P session stop "$sid"
check "stop after h2 was lost: nothing left on h1" eval '[ "$(procs_on h1)" = 0 ]' || show_procs

# 8. cancel, and the idle timeout, stop every host.
start
expect_exit 0 P cancel "$sid"
check "cancel: nothing left on h1 or h2" none_left || show_procs
start --idle-timeout 2
for _ in $(seq 100); do grep -q '"state": *"stopped"' "$h1_jobs/$sid/session.json" 2>/dev/null && break; sleep 0.1; done
check_grep "the idle timeout stops the session" '"stopped": *"idle"' "$h1_jobs/$sid/session.json"
check "idle timeout: nothing left on h1 or h2" none_left || show_procs

# 9. gc removes the ended sessions' directories on both hosts (the first
# host reaches h2 with its own ssh); with h2 down it keeps them all (exit
# 4, h2 named) and a later gc removes them; none is left on either.
check "before gc: session directories on h2" eval '[ -n "$(ls "$h2_jobs")" ]'
# The idle session's job script writes its final state after the hub ends.
for _ in $(seq 100); do grep -qx 'succeeded\|failed\|cancelled\|timeout' "$h1_jobs/$sid/state" && break; sleep 0.1; done
# h2 down: gc keeps every job (exit 4, h2 named), on h1 too, to try again.
kill "$(cat "$BED_DIR/hosts/h2-sshd.pid")"
kept=$(ls "$h1_jobs" | wc -l)
expect_exit 4 P gc --older-than 0 --remote pair
check_grep "gc with h2 down names it" "did not reach host '[^']*198.18.0.2" "$err"
check_eq "gc with h2 down keeps the jobs on h1" "$kept" "$(ls "$h1_jobs" | wc -l)"
h2_sshd_start
host_wait h2
expect_exit 0 P gc --older-than 0 --remote pair
check_eq "gc: no session directory left on h1" "" "$(ls "$h1_jobs")" || show "$out" "$err"
check_eq "gc: no session directory left on h2" "" "$(ls "$h2_jobs")"
