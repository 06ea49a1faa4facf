#!/usr/bin/env bash
# t0502: reconnection against the bed's real sshd, runtime none. A job
# prints a numbered line every 100 ms for 8 s; the output of `run` or
# `attach` must hold every number exactly once, in order, whatever happens
# to the connection:
# (a) the sshd process serving pystrib's connection is killed mid-job;
# (b) sshd is stopped entirely for several seconds, then started again;
# (c) `attach` itself, following a detached job, loses its connection;
# (d) jobs that end while nobody is connected (run --detach; run killed
#     with SIGKILL; run giving up after [remote] reconnect_timeout while
#     sshd is down) keep their exit codes and results: `attach` shows them
#     and exits with the job's outcome, `fetch` gets the results.
. "$(dirname "$0")/lib.sh"
bed_up sshd

export XDG_STATE_HOME=$BED_DIR/state
export PYSTRIB_REMOTE_PYTHON=/usr/bin/python3 PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
jobs_dir=$BED_DIR/remote/jobs
recs=$XDG_STATE_HOME/pystrib/jobs
P() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
N=80

cat > count.py <<'EOF'
import os, sys, time
for i in range(int(os.environ.get("COUNT_N", "80"))):
    print("n %d" % i, flush=True)
    time.sleep(0.1)
with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "done.txt"), "w") as f:
    f.write("counted to 79\n")
code = int(os.environ.get("COUNT_EXIT", "0"))
if code:
    print("failing on purpose", file=sys.stderr)
    sys.exit(code)
EOF

# Every "[0] n K" line of $1 is K = 0..N-1 (N: $2, else $N), each once, in order.
all_numbers() {
	local got
	got=$(sed -n 's/^\[0\] n \([0-9]*\)$/\1/p' "$1" | tr '\n' ' ')
	[ "$got" = "$(seq 0 $((${2:-$N} - 1)) | tr '\n' ' ')" ]
}
# Waits (up to $2 tenths of a second) for line "[0] n $1" in $3.
wait_line() {
	for _ in $(seq "$2"); do grep -qx "\[0\] n $1" "$3" && return 0; sleep 0.1; done
	return 1
}
# The runs here are read as text (every number once): their ids from stderr.
job_id() { job_id_from_err "$1"; }
remote_state() { cat "$jobs_dir/$1/state" 2>/dev/null; }
wait_final() {
	for _ in $(seq 900); do
		case $(remote_state "$1") in succeeded|failed|timeout|cancelled) return 0;; esac
		sleep 0.1
	done
	return 1
}
# The sshd process whose session runs the follower of job $1.
follower_sshd() {
	local p pp
	p=$(pgrep -f -- "follow.sh $jobs_dir/$1 " | head -1)
	[ -n "$p" ] || return 1
	# Up from the follower (a login shell may sit in between).
	for _ in 1 2 3; do
		pp=$(ps -o ppid= -p "$p" | tr -d ' ')
		[ -n "$pp" ] && [ "$pp" -gt 1 ] || return 1
		[ "$(ps -o comm= -p "$pp")" = sshd ] && { echo "$pp"; return 0; }
		p=$pp
	done
	return 1
}
listener() { cat "$BED_DIR/ssh/sshd.pid"; }
# Stops sshd entirely: the listener and every connection's sshd.
sshd_stop() {
	local l kids
	l=$(listener)
	kids=$(pgrep -P "$l")
	# shellcheck disable=SC2086
	kill -TERM "$l" $kids
	for p in $l $kids; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	! (exec 3<>"/dev/tcp/127.0.0.1/$BED_SSH_PORT") 2>/dev/null
}
sshd_start() {
	/usr/sbin/sshd -f "$BED_DIR/ssh/sshd_config" -E "$BED_DIR/ssh/sshd.log" || return 1
	for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BED_SSH_PORT") 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
rec_field() {
	"$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))' "$recs/$1.json" "$2"
}

# Two detached jobs first; they run while (a) and (b) go on, and end
# with nobody connected.
P run --remote none count.py -n 1 --detach > "$BED_DIR/d1.out" 2> "$BED_DIR/d1.err"
code=$?
J1=$(head -1 "$BED_DIR/d1.out")
check "run --detach: prints the job id and returns" eval \
	'[ "$code" -eq 0 ] && [ -n "$J1" ] && [ -d "$jobs_dir/$J1" ]' || { echo "#   exit $code"; show "$BED_DIR/d1.err"; }
P run --remote none count.py -n 1 --detach --env COUNT_EXIT=3 > "$BED_DIR/d2.out" 2> "$BED_DIR/d2.err"
J2=$(head -1 "$BED_DIR/d2.out")
check "a second detached job, another id" eval '[ -n "$J2" ] && [ "$J2" != "$J1" ]'

# (a) The sshd process serving the connection is killed mid-job.
P run --remote none count.py -n 1 > a.out 2> a.err &
pid=$!
check "(a) the job prints" wait_line 20 900 a.out
id=$(job_id a.err)
s=$(follower_sshd "$id")
if check "(a) an sshd serves the follower of $id ($s), not the listener" eval '[ -n "$s" ] && [ "$s" != "$(listener)" ]'
then
	kill -KILL "$s"
	echo "# (a) killed the connection's sshd ($s) at line 20"
fi
wait "$pid"
code=$?
check_eq "(a) exit 0" 0 "$code" || show a.err
check "(a) says it lost the connection and reconnected" eval \
	'grep -q "lost the connection to .*reconnecting" a.err && grep -q "reconnected to" a.err' || show a.err
check_eq "(a) the reconnect message names the host once" 1 \
	"$(grep -m1 "reconnecting" a.err | grep -o "'[^']*@[^']*:[0-9]*'" | wc -l)" || show a.err
check "(a) every number exactly once, in order" all_numbers a.out || show a.out
check_eq "(a) $N lines" "$N" "$(grep -c '^\[0\] n ' a.out)"

# (b) sshd stopped entirely for 4 s, then started again with the same config.
P run --remote none count.py -n 1 > b.out 2> b.err &
pid=$!
check "(b) the job prints" wait_line 15 900 b.out
check "(b) sshd stopped (listener and connections)" sshd_stop
sleep 4
check_grep "(b) said so while sshd was down" "lost the connection" b.err
check "(b) sshd started again" sshd_start
wait "$pid"
code=$?
check_eq "(b) exit 0" 0 "$code" || show b.err
check_grep "(b) reconnected" "reconnected to" b.err
check "(b) every number exactly once, in order" all_numbers b.out || show b.out
id=$(job_id b.err)
check_eq "(b) results fetched after the reconnection" "counted to 79" \
	"$(cat "pystrib-results/$id/results/done.txt" 2>/dev/null)"

# (d1) The detached jobs ended while nobody was connected: attach shows all
# and exits with the outcome; fetch gets the results.
check "the detached jobs end" eval 'wait_final "$J1" && wait_final "$J2"'
check_eq "detached: the record says submitted until asked" submitted "$(rec_field "$J1" state)"
expect_exit 0 P attach "$J1"
check "attach (ended while detached): every number once, in order" all_numbers "$out" || show "$out"
check_eq "attach: the record says succeeded, exit 0" "succeeded 0" "$(rec_field "$J1" state) $(rec_field "$J1" exit_code)"
expect_exit 1 P attach "${J2:0:20}"
check "attach of the failed job: its output, rank 0 exit 3 named, exit 1" eval \
	'all_numbers "$out" && grep -q "^rank 0 failed (exit 3)" "$err"' || show "$err"
expect_exit 0 P status "$J2"
check "status: failed, rank 0's exit code 3 kept" eval \
	'grep -q "^state *failed" "$out" && grep -q "^0 *3 " "$out"' || show "$out"
expect_exit 0 P fetch "$J1" --results "$work/f1"
check "fetch: the results and exit codes written while nobody was connected" eval \
	'[ "$(cat "$work/f1/results/done.txt" 2>/dev/null)" = "counted to 79" ] &&
	[ "$(cat "$work/f1/logs/rank.0.exit" 2>/dev/null)" = 0 ]'

# (c) attach loses its own connection mid-job; with --json (what the
#     notebook extension reads): output events, each number once.
#     This job counts to 300 (30 s): attach has a live job to follow,
#     however slow its connection is to set up.
P run --remote none count.py -n 1 --detach --env COUNT_N=300 > "$BED_DIR/d3.out" 2>/dev/null
J3=$(head -1 "$BED_DIR/d3.out")
P --json attach "$J3" > c.json 2> c.err &
pid=$!
for _ in $(seq 900); do grep -q '"event": *"output"' c.json && break; sleep 0.1; done
s=$(follower_sshd "$J3")
shown=$(grep -c '"event": *"output"' c.json)
if check "(c) an sshd serves attach's follower ($s), before line 250 ($shown lines)" eval \
	'[ -n "$s" ] && [ "$shown" -lt 250 ]'; then
	kill -KILL "$s"
	echo "# (c) killed the sshd serving attach ($s) after $shown lines"
fi
wait "$pid"
code=$?
check "(c) attach reconnected, exit 0" eval '[ "$code" -eq 0 ] && grep -q "reconnected to" c.err' ||
	{ echo "#   exit $code"; show c.err; }
check "(c) --json: every number once, in order; reconnecting said; done succeeded" \
	"$PY" - c.json 300 <<'EOF2'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
nums = [e["text"] for e in ev if e["event"] == "output"]
assert nums == ["n %d\n" % i for i in range(int(sys.argv[2]))], nums
msgs = [e.get("message") for e in ev if e["event"] == "status"]
assert "reconnecting" in msgs and "reconnected" in msgs, msgs
assert ev[-1]["event"] == "done" and ev[-1]["state"] == "succeeded", ev[-1]
EOF2

# (d2) run killed with SIGKILL mid-job: the job goes on; attach gets the rest.
# (not through P: $! must be pystrib itself)
"$PYSTRIB" -c "$BED_CONFIG" run --remote none count.py -n 1 > k.out 2> k.err &
pid=$!
check "(d2) the job prints" wait_line 10 900 k.out
kill -KILL "$pid"
wait "$pid" 2>/dev/null
id=$(job_id k.err)
shown=$(grep -c '^\[0\] n ' k.out)
check "(d2) run killed mid-job (after $shown lines)" test "$shown" -lt "$N"
wait_final "$id"
check_eq "(d2) the job ended on its own after run was killed" succeeded "$(remote_state "$id")"
expect_exit 0 P attach last
check "(d2) attach last: every number once, in order" all_numbers "$out"
check_eq "(d2) attach fetched the results where run would have" "counted to 79" \
	"$(cat "pystrib-results/$id/results/done.txt" 2>/dev/null)"

# (d3) sshd down longer than reconnect_timeout: run gives up (exit 4, says
# how to go on); the job ends meanwhile; attach after sshd is back.
PYSTRIB_REMOTE_RECONNECT_TIMEOUT=2 P run --remote none count.py -n 1 > g.out 2> g.err &
pid=$!
check "(d3) the job prints" wait_line 10 900 g.out
id=$(job_id g.err)
check "(d3) sshd stopped" sshd_stop
wait "$pid"
code=$?
check "(d3) run gives up after reconnect_timeout: exit 4, points to attach" eval \
	'[ "$code" -eq 4 ] && grep -q "gave up reconnecting after 2 s" g.err && grep -q "pystrib attach" g.err' ||
	{ echo "#   exit $code"; show g.err; }
check "(d3) the job ends" wait_final "$id"
check "(d3) sshd started again" sshd_start
expect_exit 0 P attach "$id"
check "(d3) attach afterwards shows every number once, in order" all_numbers "$out" || show "$out"
check_eq "(d3) and fetches the results" "counted to 79" "$(cat "pystrib-results/$id/results/done.txt" 2>/dev/null)"
