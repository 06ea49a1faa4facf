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

export HOME=$BED_DIR/home XDG_STATE_HOME=$BED_DIR/state
mkdir -p "$HOME"
unset SSH_AUTH_SOCK
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
job_id() { sed -n 's/^pystrib: job \([0-9a-f-]*\):.*/\1/p' "$1" | head -1; }
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
	/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))' "$recs/$1.json" "$2"
}

# Two detached jobs first; they run while (a) and (b) go on, and end
# with nobody connected.
P run --remote none count.py -n 1 --detach > "$BED_DIR/d1.out" 2> "$BED_DIR/d1.err"
code=$?
J1=$(head -1 "$BED_DIR/d1.out")
[ "$code" -eq 0 ] && [ -n "$J1" ] && [ -d "$jobs_dir/$J1" ] && ok "run --detach: prints the job id and returns" \
	|| { fail "run --detach (exit $code)"; cat "$BED_DIR/d1.err"; }
P run --remote none count.py -n 1 --detach --env COUNT_EXIT=3 > "$BED_DIR/d2.out" 2> "$BED_DIR/d2.err"
J2=$(head -1 "$BED_DIR/d2.out")
[ -n "$J2" ] && [ "$J2" != "$J1" ] && ok "a second detached job, another id" || fail "second detached job"

# (a) The sshd process serving the connection is killed mid-job.
P run --remote none count.py -n 1 > a.out 2> a.err &
pid=$!
wait_line 20 900 a.out || fail "(a) the job prints"
id=$(job_id a.err)
s=$(follower_sshd "$id")
if [ -n "$s" ] && [ "$s" != "$(listener)" ]; then
	kill -KILL "$s"
	ok "(a) killed the connection's sshd ($s) at line 20"
else
	fail "(a) no sshd serving the follower of $id"
fi
wait "$pid"
code=$?
[ "$code" -eq 0 ] && ok "(a) exit 0" || { fail "(a) exit $code"; cat a.err; }
grep -q "lost the connection to .*reconnecting" a.err && grep -q "reconnected to" a.err \
	&& ok "(a) says it lost the connection and reconnected" || { fail "(a) stderr"; cat a.err; }
all_numbers a.out && ok "(a) every number exactly once, in order" || { fail "(a) numbers"; cat a.out; }
[ "$(grep -c '^\[0\] n ' a.out)" -eq "$N" ] || fail "(a) $(grep -c '^\[0\] n ' a.out) lines"

# (b) sshd stopped entirely for 4 s, then started again with the same config.
P run --remote none count.py -n 1 > b.out 2> b.err &
pid=$!
wait_line 15 900 b.out || fail "(b) the job prints"
sshd_stop && ok "(b) sshd stopped (listener and connections)" || fail "(b) sshd still answers"
sleep 4
grep -q "lost the connection" b.err && ok "(b) said so while sshd was down" || fail "(b) nothing said"
sshd_start && ok "(b) sshd started again" || fail "(b) sshd restart"
wait "$pid"
code=$?
[ "$code" -eq 0 ] && ok "(b) exit 0" || { fail "(b) exit $code"; cat b.err; }
grep -q "reconnected to" b.err && ok "(b) reconnected" || { fail "(b) stderr"; cat b.err; }
all_numbers b.out && ok "(b) every number exactly once, in order" || { fail "(b) numbers"; cat b.out; }
id=$(job_id b.err)
[ "$(cat "pystrib-results/$id/results/done.txt" 2>/dev/null)" = "counted to 79" ] \
	&& ok "(b) results fetched after the reconnection" || fail "(b) results"

# (d1) The detached jobs ended while nobody was connected: attach shows all
# and exits with the outcome; fetch gets the results.
wait_final "$J1" && wait_final "$J2" || fail "the detached jobs end"
[ "$(rec_field "$J1" state)" = submitted ] && ok "detached: the record says submitted until asked" \
	|| fail "detached record: $(rec_field "$J1" state)"
expect_exit 0 P attach "$J1"
all_numbers "$BED_DIR/last.out" && ok "attach (ended while detached): every number once, in order" \
	|| { fail "attach J1 numbers"; cat "$BED_DIR/last.out"; }
[ "$(rec_field "$J1" state)" = succeeded ] && [ "$(rec_field "$J1" exit_code)" = 0 ] \
	&& ok "attach: the record says succeeded, exit 0" || fail "record J1"
expect_exit 1 P attach "${J2:0:20}"
all_numbers "$BED_DIR/last.out" && grep -q "^rank 0 failed (exit 3)" "$BED_DIR/last.err" \
	&& ok "attach of the failed job: its output, rank 0 exit 3 named, exit 1" \
	|| { fail "attach J2"; cat "$BED_DIR/last.err"; }
expect_exit 0 P status "$J2"
grep -q "^state *failed" "$BED_DIR/last.out" && grep -q "^0 *3 " "$BED_DIR/last.out" \
	&& ok "status: failed, rank 0's exit code 3 kept" || { fail "status J2"; cat "$BED_DIR/last.out"; }
expect_exit 0 P fetch "$J1" --results "$work/f1"
[ "$(cat "$work/f1/results/done.txt" 2>/dev/null)" = "counted to 79" ] \
	&& [ "$(cat "$work/f1/logs/rank.0.exit" 2>/dev/null)" = 0 ] \
	&& ok "fetch: the results and exit codes written while nobody was connected" || fail "fetch J1"

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
if [ -n "$s" ] && [ "$shown" -lt 250 ]; then
	kill -KILL "$s"
	ok "(c) killed the sshd serving attach ($s) after $shown lines"
else
	fail "(c) no sshd serving attach's follower, or too late ($shown lines)"
fi
wait "$pid"
code=$?
[ "$code" -eq 0 ] && grep -q "reconnected to" c.err && ok "(c) attach reconnected, exit 0" \
	|| { fail "(c) attach exit $code"; cat c.err; }
/usr/bin/python3 - c.json 300 <<'EOF2' && ok "(c) --json: every number once, in order; reconnecting said; done succeeded" \
	|| { fail "(c) json events"; cat c.json; }
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
wait_line 10 900 k.out || fail "(d2) the job prints"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
id=$(job_id k.err)
shown=$(grep -c '^\[0\] n ' k.out)
[ "$shown" -lt "$N" ] && ok "(d2) run killed after $shown lines" || fail "(d2) run was not killed mid-job"
wait_final "$id" && [ "$(remote_state "$id")" = succeeded ] && ok "(d2) the job ended on its own after run was killed" \
	|| fail "(d2) remote state: $(remote_state "$id")"
expect_exit 0 P attach last
all_numbers "$BED_DIR/last.out" && ok "(d2) attach last: every number once, in order" || fail "(d2) numbers"
[ "$(cat "pystrib-results/$id/results/done.txt" 2>/dev/null)" = "counted to 79" ] \
	&& ok "(d2) attach fetched the results where run would have" || fail "(d2) results"

# (d3) sshd down longer than reconnect_timeout: run gives up (exit 4, says
# how to go on); the job ends meanwhile; attach after sshd is back.
PYSTRIB_REMOTE_RECONNECT_TIMEOUT=2 P run --remote none count.py -n 1 > g.out 2> g.err &
pid=$!
wait_line 10 900 g.out || fail "(d3) the job prints"
id=$(job_id g.err)
sshd_stop || fail "(d3) sshd stop"
wait "$pid"
code=$?
[ "$code" -eq 4 ] && grep -q "gave up reconnecting after 2 s" g.err && grep -q "pystrib attach" g.err \
	&& ok "(d3) run gives up after reconnect_timeout: exit 4, points to attach" || { fail "(d3) exit $code"; cat g.err; }
wait_final "$id" || fail "(d3) the job ends"
sshd_start || fail "(d3) sshd restart"
expect_exit 0 P attach "$id"
all_numbers "$BED_DIR/last.out" && ok "(d3) attach afterwards shows every number once, in order" \
	|| { fail "(d3) numbers"; cat "$BED_DIR/last.out"; }
[ "$(cat "pystrib-results/$id/results/done.txt" 2>/dev/null)" = "counted to 79" ] \
	&& ok "(d3) and fetches the results" || fail "(d3) results"
