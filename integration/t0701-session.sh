#!/usr/bin/env bash
# t0701: sessions (docs/sessions.md) on the bed's real sshd, runtime none
# (the host's Open MPI and Python) and docker: start prints the id and the
# hub is idle; a variable set in one cell is read by the next; a raising
# cell exits 1 with its traceback and the session goes on; --ranks; Ctrl-C
# interrupts a cell (130) and the next works; serve relays push, pull and
# status; killing serve's sshd mid-cell loses and repeats no line; attach
# after pystrib was killed mid-cell shows the whole cell; gc keeps a live
# session; another local user cannot connect to hub.sock; a rank's os._exit
# makes exec exit 4 naming it, after its last output; stop, cancel and --idle-timeout leave no
# process (and with docker no container); project files edited between
# cells reach the ranks (none and docker). Prints the median of 30 `session
# exec` and of 30 execs through one `serve` (SESSION_BENCH=0 skips both).
. "$(dirname "$0")/lib.sh"
bed_up registry sshd base docker

export PYSTRIB_REMOTE_PYTHON=/usr/bin/python3 PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
P() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
jobs_dir=$BED_DIR/remote/jobs
leftover() { pgrep -af -- "$jobs_dir/$1" | grep -v pgrep || true; }
containers() { DOCKER_HOST=$BED_DOCKER_HOST /usr/bin/docker ps -a --format '{{.Names}}'; }

# 1. Start: the id, a record of kind session, the hub idle, the dir 0700.
expect_exit 0 P session start --remote none -n 2 --no-project
sid=$(cat "$out")
check "start prints the session's id" eval '[[ $sid =~ ^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$ ]]' || show "$out" "$err"
rec=$HOME/.local/state/pystrib/jobs/$sid.json
check_grep "the record says kind session" '"kind": *"session"' "$rec"
check_grep "the record has the absolute job dir" "\"jobdir\": *\"$jobs_dir/$sid\"" "$rec"
check_grep "job.json says kind session" '"kind":"session"' "$jobs_dir/$sid/job.json"
check_grep "the hub is idle" '"state": *"idle"' "$jobs_dir/$sid/session.json"
check_eq "the session dir is 0700" 700 "$(stat -c %a "$jobs_dir/$sid")"
check_eq "hub.sock is 0600" 600 "$(stat -c %a "$jobs_dir/$sid/hub.sock")"
expect_exit 0 P jobs
check_grep "jobs lists the session, running, its kind shown" "^$sid .* running .* session$" "$out"
expect_exit 0 P session list
check_grep "session list lists it" "^$sid " "$out"

# 2. State across cells.
printf 'x = 40 + rank\nprint("set", x)\n' > c1.py
printf 'print("x is", x + 1)\n' > c2.py
expect_exit 0 P session exec "$sid" c1.py
check_grep "cell 1 runs on rank 0" -x "\[0\] set 40" "$out"
check_grep "cell 1 runs on rank 1" -x "\[1\] set 41" "$out"
check_grep "a summary on stderr" "cell 1 ok on 2 ranks" "$err"
expect_exit 0 P session exec "$sid" c2.py
check_grep "cell 2 sees cell 1's x (rank 0)" -x "\[0\] x is 41" "$out"
check_grep "cell 2 sees cell 1's x (rank 1)" -x "\[1\] x is 42" "$out"

# 3. A raising cell: exit 1, the traceback, the session goes on.
cat > raises.py <<'EOF2'
def inner():
    raise ValueError("rank %d is unhappy" % rank)
if rank == 1:
    inner()
print("fine", rank)
EOF2
expect_exit 1 P session exec "$sid" raises.py
check_grep "raising: the traceback streamed with its rank" "^\[1\] ValueError: rank 1 is unhappy" "$err"
check_grep "raising: the traceback names the cell's file" '^\[1\]   File "raises.py", line 2, in inner' "$err"
check_grep "raising: the summary names the rank" "rank 1 raised ValueError: rank 1 is unhappy" "$err"
expect_exit 0 P session exec "$sid" c2.py
check_grep "after a raising cell the session goes on" -x "\[1\] x is 42" "$out"

# 4. --ranks, and arguments.
printf 'import sys\nprint("only", rank, sys.argv[1:])\n' > only.py
expect_exit 0 P session exec "$sid" only.py --ranks 1 -- a 'b c'
check_grep "--ranks 1 runs on rank 1, with the arguments" -x "\[1\] only 1 \['a', 'b c'\]" "$out"
check_no_grep "--ranks 1 does not run on rank 0" "^\[0\]" "$out"
expect_exit 2 P session exec "$sid" only.py --ranks 0,5
check_grep "a rank out of the session is a usage error" "rank 5 is not in the session" "$err"

# 5. Ctrl-C interrupts the cell: 130 within 2 s, the next cell works.
printf 'import time\nprint("sleeping", rank, flush=True)\ntime.sleep(60)\n' > sleeps.py
"$PYSTRIB" -c "$BED_CONFIG" session exec "$sid" sleeps.py > int.out 2> int.err &
pid=$!
for _ in $(seq 100); do grep -q "sleeping 1" int.out 2>/dev/null && grep -q "sleeping 0" int.out && break; sleep 0.1; done
t0=$(date +%s.%N)
kill -INT "$pid"
wait "$pid"
rc=$?
took=$(echo "$(date +%s.%N) - $t0" | bc)
check_eq "Ctrl-C: exec exits 130" 130 "$rc" || show int.out int.err
check "Ctrl-C: returned within 2 s ($took s)" eval '[ "$(echo "$took < 2" | bc)" = 1 ]'
check_grep "Ctrl-C: KeyboardInterrupt in the cell" "KeyboardInterrupt" int.err
expect_exit 0 P session exec "$sid" c2.py
check_grep "after an interrupt the next cell works" -x "\[0\] x is 41" "$out"

# 6. --timeout: exit 5, the session goes on.
expect_exit 5 P session exec "$sid" sleeps.py --timeout 1
expect_exit 0 P session exec "$sid" c2.py

# 7. serve: push, pull (16 MiB back), status; then a dropped connection mid-cell.
expect_exit 0 env BED_DIR="$BED_DIR" "$PY" "$INTEGRATION_DIR/session_serve.py" "$PYSTRIB" "$BED_CONFIG" "$sid" values
check_no_grep "serve: push, pull and status" "^FAIL" "$out" || show "$out" "$err"
expect_exit 0 env BED_DIR="$BED_DIR" "$PY" "$INTEGRATION_DIR/session_serve.py" "$PYSTRIB" "$BED_CONFIG" "$sid" drop
check_no_grep "serve: sshd killed mid-cell, every line once" "^FAIL" "$out" || show "$out" "$err"

# 8. attach: pystrib killed mid-cell, then attach shows the cell from its start.
printf 'import time\nfor i in range(30):\n    print("tick", i, flush=True)\n    time.sleep(0.05)\ny = 7\n' > ticks.py
"$PYSTRIB" -c "$BED_CONFIG" session exec "$sid" ticks.py --ranks 0 > tk.out 2> tk.err &
pid=$!
for _ in $(seq 100); do grep -q "tick 3" tk.out 2>/dev/null && break; sleep 0.05; done
kill -KILL "$pid"
wait "$pid" 2>/dev/null
expect_exit 0 P session attach "$sid"
check_eq "attach: the killed exec's cell, every line once" \
	"$(seq 0 29 | sed 's/^/[0] tick /')" "$(grep '^\[0\] tick' "$out")"
printf 'print("y is", y)\n' > y.py
expect_exit 0 P session exec "$sid" y.py --ranks 0
check_grep "attach: the variable that cell set exists" -x "\[0\] y is 7" "$out"

# 9. status, gc.
expect_exit 0 P session status "$sid"
check_grep "status: each rank's state" "^  rank 1  pid [0-9]*  idle" "$out"
check_grep "status: idle time" "idle for [0-9]* s" "$out"
expect_exit 0 P gc --older-than 0
check "gc keeps a live session" test -S "$jobs_dir/$sid/hub.sock"

# 10. Another local user cannot connect to hub.sock.
user=pstr$$
if useradd -M -s /bin/sh "$user" 2>/dev/null; then
	cleanup userdel "$user"
	su -s /bin/sh "$user" -c "$PY -c 'import socket,sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print(\"connected\")
except PermissionError as e:
    print(\"refused\", e.errno)
' '$jobs_dir/$sid/hub.sock'" > other.out 2>&1
	check_grep "another user is refused (EACCES)" -x "refused 13" other.out
else
	check "useradd for the other-user check" false
fi

# 11. Measurements.
if [ "${SESSION_BENCH:-1}" != 0 ]; then
	printf 'print(rank)\n' > t.py
	for i in $(seq 30); do
		s=$(date +%s%N); P session exec "$sid" t.py >/dev/null 2>&1; e=$(date +%s%N)
		echo $(( (e - s) / 1000 ))
	done | sort -n | awk '{a[NR]=$1} END {printf "bench: session exec, median of 30: %.1f ms\n", (a[15]+a[16])/2000}'
	env BED_DIR="$BED_DIR" "$PY" "$INTEGRATION_DIR/session_serve.py" "$PYSTRIB" "$BED_CONFIG" "$sid" bench |
		sed 's/^median/bench: serve exec, median of 30:/'
fi

# 12. A rank that dies: exit 4 naming it; stop leaves nothing.
printf 'import os\nif rank == 1:\n    print("last words")\n    os._exit(3)\nimport time; time.sleep(5)\n' > dies.py
P session exec "$sid" dies.py > dies.all 2>&1
check_eq "a dying rank: exec exits 4" 4 "$?" || show dies.all
check_grep "a dying rank: exec names it" "rank 1 exited 3" dies.all
check_eq "a dying rank: its last words come before the broken message" \
	"[1] last words|pystrib: session $sid is broken: rank 1 exited 3" \
	"$(grep -e '^\[1\] last words$' -e '^pystrib: session .* is broken: rank 1' dies.all | paste -sd '|')" || show dies.all
expect_exit 4 P session exec "$sid" c2.py
check_grep "a broken session refuses the next cell" "broken" "$err"
expect_exit 0 P session stop "$sid"
check_grep "stop says so" "session $sid stopped" "$out"
sleep 0.5
check_eq "stop: no process left" "" "$(leftover "$sid")"
check "stop: the sockets are gone" eval '[ ! -e "$jobs_dir/$sid/hub.sock" ]'
check_grep "stop: the job has ended" -x "succeeded" "$jobs_dir/$sid/state"

# 13. cancel stops a session too; a --name calls it; a live name is taken.
expect_exit 0 P session start --remote none -n 2 --no-project --name trainer
sid2=$(cat "$out")
expect_exit 0 P session exec trainer c1.py
check_grep "--name: exec finds the session by its name" -x "\[1\] set 41" "$out"
expect_exit 0 P session list
check_grep "--name: list shows it" "^$sid2  *trainer " "$out"
expect_exit 2 P session start --remote none -n 2 --no-project --name trainer
check_grep "--name: a live session's name is refused, naming it" "session 'trainer' is .* ($sid2)" "$err"
expect_exit 2 P session start --remote none --name 'no/slash'
expect_exit 0 P cancel trainer
sleep 0.5
check_eq "cancel: no process left" "" "$(leftover "$sid2")"
expect_exit 4 P session exec "$sid2" c1.py
check_grep "exec on a stopped session: cannot be reached" "cannot be reached" "$err"

# 14. --idle-timeout: a session without cells stops itself and leaves nothing.
expect_exit 0 P --json session start --remote none -n 2 --no-project --idle-timeout 2
sid4=$(sed -n 's/^{"event":"session","id":"\([^"]*\)".*/\1/p' "$out")
check "--json start: a session event with the id" test -n "$sid4" || show "$out"
for _ in $(seq 100); do grep -qx succeeded "$jobs_dir/$sid4/state" 2>/dev/null && break; sleep 0.1; done
check_grep "idle timeout: the session stopped itself" '"stopped": *"idle"' "$jobs_dir/$sid4/session.json"
sleep 0.5
check_eq "idle timeout: no process left" "" "$(leftover "$sid4")"

# 14b. A named session that stopped on its own (its record still says
# running: no `jobs` ran since) does not hold its name: start asks the
# remote, and the name goes to the new session.
expect_exit 0 P session start --remote none -n 2 --no-project --idle-timeout 2 --name napper
sid5=$(cat "$out")
for _ in $(seq 100); do grep -qx succeeded "$jobs_dir/$sid5/state" 2>/dev/null && break; sleep 0.1; done
check_grep "--name: the idle session's record still says running" '"state": *"running"' \
	"$HOME/.local/state/pystrib/jobs/$sid5.json"
expect_exit 0 P session start --remote none -n 2 --no-project --name napper
sid6=$(cat "$out")
check "--name: a name whose session ended on its own is free again" \
	eval '[ -n "$sid6" ] && [ "$sid6" != "$sid5" ]' || show "$out" "$err"
check_grep "--name: the ended session's record is brought up to date" '"state": *"succeeded"' \
	"$HOME/.local/state/pystrib/jobs/$sid5.json"
expect_exit 0 P session exec napper c1.py
check_grep "--name: the name reaches the new session" -x "\[1\] set 41" "$out"
expect_exit 0 P session stop napper

# 15. docker: a session in a container; stop leaves no container.
expect_exit 0 P session start -n 2 --no-project
sid3=$(cat "$out")
check_grep "docker: the hub is idle" '"state": *"idle"' "$jobs_dir/$sid3/session.json" || show "$err"
expect_exit 0 P session exec "$sid3" c1.py
expect_exit 0 P session exec "$sid3" c2.py
check_grep "docker: cell 2 sees cell 1's x" -x "\[1\] x is 42" "$out"
printf 'from mpi4py import MPI\nprint("sum", MPI.COMM_WORLD.allreduce(rank + 1))\n' > ar.py
expect_exit 0 P session exec "$sid3" ar.py
check_grep "docker: an allreduce on the communicator from the start" -x "\[0\] sum 3" "$out"
check_grep "docker: the container runs" -x "pystrib-$sid3" <(containers)
expect_exit 0 P session stop "$sid3"
check_no_grep "docker: stop leaves no container" -x "pystrib-$sid3" <(containers)
check_eq "docker: no process left" "" "$(leftover "$sid3")"

# 16. Project files: a module edited between two cells is seen after
# importlib.reload, a new file is importable, a removed one is gone; an
# unchanged project sends nothing; stop forgets the session's project
# state (runtime none, then docker).
project_case() {
	label=$1
	shift
	rm -rf proj && mkdir -p proj/pkg
	: > proj/pkg/__init__.py
	printf 'VALUE = 1\n' > proj/pkg/mod.py
	printf 'old\n' > proj/pkg/old.txt
	expect_exit 0 P session start -n 2 --project proj "$@"
	ps=$(cat "$out")
	check "$label: the session's project state is recorded" \
		test -f "$HOME/.local/state/pystrib/jobs/$ps.files.json" || show "$err"
	printf 'import pkg.mod\nprint("value", pkg.mod.VALUE)\n' > p1.py
	expect_exit 0 P -v session exec "$ps" p1.py
	check_grep "$label: the first cell imports the project's module" -x "\[1\] value 1" "$out"
	sleep 0.01
	printf 'VALUE = 2\n' > proj/pkg/mod.py	# the same size, maybe the same second
	printf 'NEW = "fresh"\n' > proj/pkg/fresh.py
	rm proj/pkg/old.txt
	cat > p2.py <<'EOF2'
import importlib, os, pkg.mod
print("before reload", pkg.mod.VALUE)
importlib.reload(pkg.mod)
import pkg.fresh
print("after reload", pkg.mod.VALUE, pkg.fresh.NEW)
print("old.txt", os.path.exists(os.path.join(os.path.dirname(pkg.mod.__file__), "old.txt")))
EOF2
	expect_exit 0 P -v session exec "$ps" p2.py
	check_grep "$label: the edit is said with -v" "3 project changes sent" "$err"
	check_grep "$label: a module already imported is not reloaded silently" -x "\[0\] before reload 1" "$out"
	check_grep "$label: importlib.reload finds the new text, a new file imports" \
		-x "\[1\] after reload 2 fresh" "$out" || show "$out" "$err"
	check_grep "$label: a removed file is gone" -x "\[0\] old.txt False" "$out"
	expect_exit 0 P -v session exec "$ps" p1.py
	check_no_grep "$label: nothing changed, nothing sent" "project change" "$err"
	expect_exit 0 P session stop "$ps"
	check "$label: stop forgets the project state" \
		test ! -e "$HOME/.local/state/pystrib/jobs/$ps.files.json"
}
project_case "project, none" --remote none
project_case "project, docker"
