#!/usr/bin/env bash
# t0401: pystrib run with runtime none (the host's own Open MPI and Python,
# through the bed's real sshd): a 2-rank mpi4py allreduce prints the right
# sum on each rank and each rank's file comes back; a cell raising on rank 1
# exits 1 with its traceback; --timeout exits 5 and SIGINT exits 130, both
# leaving no process behind; a cell file name and arguments full of shell
# syntax run with nothing extra executed; --json gives the events; an
# unknown host is refused until --accept-new-host-key; a changed host key
# is refused and nothing runs.
. "$(dirname "$0")/lib.sh"
bed_up sshd

export HOME=$BED_DIR/home
mkdir -p "$HOME"
unset SSH_AUTH_SOCK
# The bed's user has its own python3 first on PATH; Debian's has mpi4py.
export PYSTRIB_REMOTE_PYTHON=/usr/bin/python3 PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() { "$PYSTRIB" -c "$BED_CONFIG" run --remote none "$@"; }
out=$BED_DIR/last.out err=$BED_DIR/last.err
jobs_dir=$BED_DIR/remote/jobs
njobs() { find "$jobs_dir" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }
# Processes of a job, found by its directory on their command lines.
leftover() { pgrep -af -- "$jobs_dir/$1" | grep -v pgrep || true; }

# 1. Allreduce on 2 ranks; results come back.
cat > allreduce.py <<'EOF'
import os
from mpi4py import MPI
c = MPI.COMM_WORLD
print("rank", c.rank, "of", world_size, "sum", c.allreduce(c.rank + 1))
with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "rank%d.txt" % rank), "w") as f:
    f.write("written by rank %d\n" % rank)
EOF
expect_exit 0 run allreduce.py -n 2 --results "$work/res1"
for r in 0 1; do
	grep -qx "\[$r\] rank $r of 2 sum 3" "$out" && ok "rank $r prints the allreduce sum 3" \
		|| { fail "rank $r output"; cat "$out" "$err"; }
	[ "$(cat "$work/res1/results/rank$r.txt" 2>/dev/null)" = "written by rank $r" ] \
		&& ok "rank $r's result file came back" || fail "rank $r's result file"
	[ "$(cat "$work/res1/logs/rank.$r.exit" 2>/dev/null)" = 0 ] && ok "rank $r's log and exit code came back" \
		|| fail "rank $r's logs"
done
grep -q "rank 0: exit 0 in" "$err" && grep -q "rank 1: exit 0 in" "$err" && grep -q "results: $work/res1" "$err" \
	&& ok "summary: per rank exit code and duration, results path" || { fail "summary"; cat "$err"; }
id=$(sed -n 's/^pystrib: job \([0-9a-f-]*\):.*/\1/p' "$err")
[ -n "$id" ] && [ "$(cat "$jobs_dir/$id/state")" = succeeded ] && ok "remote state: succeeded" || fail "remote state"
rec=$HOME/.local/state/pystrib/jobs/$id.json
[ -f "$rec" ] && grep -q '"state": *"succeeded"' "$rec" && ok "local job record written" || { fail "job record"; cat "$rec"; }

# 2. A cell that raises on rank 1: exit 1, the traceback, which rank.
cat > fails.py <<'EOF'
import sys
print("rank", rank, "starts")
if rank == 1:
    def inner():
        raise ValueError("rank one is unhappy")
    inner()
EOF
expect_exit 1 run fails.py -n 2
grep -q "^rank 1 failed (exit 1)" "$err" && ok "names the failed rank" || { fail "failed rank"; cat "$err"; }
grep -q "^    ValueError: rank one is unhappy" "$err" && grep -q "in inner" "$err" \
	&& ok "shows the end of its stderr: the traceback" || { fail "traceback"; cat "$err"; }
grep -q "^\[1\] ValueError: rank one is unhappy" "$err" && ok "the traceback streamed with its rank prefix" \
	|| fail "streamed traceback"

# 3. --timeout: exit 5, the job stopped, nothing left running.
cat > sleeps.py <<'EOF'
import time
print("sleeping", rank, flush=True)
time.sleep(120)
EOF
start=$(date +%s)
expect_exit 5 run sleeps.py -n 2 --timeout 3
took=$(( $(date +%s) - start ))
id=$(sed -n 's/^pystrib: job \([0-9a-f-]*\):.*/\1/p' "$err")
[ "$took" -lt 40 ] && ok "timeout: stopped after $took s" || fail "timeout took $took s"
[ "$(cat "$jobs_dir/$id/state" 2>/dev/null)" = timeout ] && ok "timeout: remote state 'timeout'" || fail "timeout state"
grep -q "sleeping 0" "$out" && ok "timeout: output shown until then" || fail "timeout output"
sleep 0.5
left=$(leftover "$id")
[ -z "$left" ] && ok "timeout: no process left behind" || fail "timeout left: $left"

# 4. SIGINT to pystrib: the job is stopped, exit 130.
# (not through the function: $! must be pystrib itself)
"$PYSTRIB" -c "$BED_CONFIG" run --remote none sleeps.py -n 2 > "$out" 2> "$err" &
pid=$!
for _ in $(seq 100); do grep -q "sleeping 1" "$out" && grep -q "sleeping 0" "$out" && break; sleep 0.1; done
id=$(sed -n 's/^pystrib: job \([0-9a-f-]*\):.*/\1/p' "$err")
[ -n "$(leftover "$id")" ] && ok "SIGINT: the ranks run before" || fail "SIGINT: no ranks running"
kill -INT "$pid"
wait "$pid"
code=$?
[ "$code" -eq 130 ] && ok "SIGINT: exit 130" || { fail "SIGINT: exit $code"; cat "$err"; }
[ "$(cat "$jobs_dir/$id/state" 2>/dev/null)" = cancelled ] && ok "SIGINT: remote state 'cancelled'" || fail "SIGINT state"
sleep 0.5
left=$(leftover "$id")
[ -z "$left" ] && ok "SIGINT: no process left behind" || fail "SIGINT left: $left"

# 5. Shell syntax in the cell's name and arguments: passed as bytes, never run.
hostile_dir="$work/dir with 'quotes' and \$(touch MARK1)"
mkdir -p "$hostile_dir"
cell="$hostile_dir/cell \$(touch MARK2) \`touch MARK3\` it's \"q\";touch MARK4.py"
cat > "$cell" <<'EOF'
import json, sys
print("ARGV", json.dumps(sys.argv[1:]))
EOF
args=("two words" "it's" '"dq"' '$(touch MARK5)' '`touch MARK6`' '; touch MARK7' '$HOME' '*' '' '-n')
expect_exit 0 run "$cell" -n 1 --no-project -- "${args[@]}"
want=$(/usr/bin/python3 -c 'import json,sys; print("[0] ARGV", json.dumps(sys.argv[1:]))' "${args[@]}")
grep -qxF "$want" "$out" && ok "hostile arguments arrive byte for byte" || { fail "hostile argv"; cat "$out" "$err"; }
found=$(find / /root /tmp -maxdepth 1 -name "MARK*" 2>/dev/null; find "$BED_DIR" -name 'MARK*' 2>/dev/null)
[ -z "$found" ] && ok "nothing extra ran (no MARK file anywhere)" || fail "a MARK file appeared: $found"

# 6. --json: events, one per line.
"$PYSTRIB" -c "$BED_CONFIG" --json run --remote none allreduce.py -n 2 > "$BED_DIR/json.out" 2> "$err"
for ev in job output rank_exit results done; do
	grep -q "^{\"event\": *\"$ev\"" "$BED_DIR/json.out" && ok "--json: a '$ev' event" || { fail "--json $ev"; cat "$BED_DIR/json.out"; }
done
/usr/bin/python3 - "$BED_DIR/json.out" <<'EOF' && ok "--json: every line is an event; done says succeeded" || fail "--json lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert all("event" in l for l in lines)
done = [l for l in lines if l["event"] == "done"][-1]
assert done["state"] == "succeeded" and done["exit_code"] == 0 and len(done["ranks"]) == 2
outs = sorted(l["text"] for l in lines if l["event"] == "output")
assert outs == ["rank 0 of 2 sum 3\n", "rank 1 of 2 sum 3\n"], outs
EOF

# 7. An unknown host: refused with its fingerprint, nothing runs, until
#    --accept-new-host-key records it.
kh=$BED_DIR/new_known_hosts
: > "$kh"
before=$(njobs)
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 4 run allreduce.py -n 2
fp=$(ssh-keygen -l -E sha256 -f "$BED_DIR/ssh/host_key.pub" | cut -d' ' -f2)
grep -q "$fp" "$err" && grep -q -- "--accept-new-host-key" "$err" \
	&& ok "unknown host: refused, fingerprint and the way to trust it shown" || { fail "unknown host message"; cat "$err"; }
[ "$(njobs)" = "$before" ] && [ ! -s "$kh" ] && ok "unknown host: nothing ran, nothing recorded" || fail "unknown host ran"
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 0 run allreduce.py -n 2 --accept-new-host-key
grep -q "\[127.0.0.1\]:$BED_SSH_PORT " "$kh" && ok "--accept-new-host-key: key recorded, job ran" || fail "accept-new"

# 8. A changed host key: refused loudly, even with --accept-new-host-key; nothing runs.
kill "$(cat "$BED_DIR/ssh/sshd.pid")"
for _ in $(seq 50); do kill -0 "$(cat "$BED_DIR/ssh/sshd.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
rm -f "$BED_DIR/ssh/host_key" "$BED_DIR/ssh/host_key.pub"
ssh-keygen -q -t ed25519 -N '' -C "new host" -f "$BED_DIR/ssh/host_key"
/usr/sbin/sshd -f "$BED_DIR/ssh/sshd_config" -E "$BED_DIR/ssh/sshd.log"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BED_SSH_PORT") 2>/dev/null && break; sleep 0.1; done
before=$(njobs)
cp "$BED_KNOWN_HOSTS" "$BED_DIR/kh.before"
expect_exit 4 run allreduce.py -n 2 --accept-new-host-key
grep -qi "changed" "$err" && ok "changed host key: refused" || { fail "changed key message"; cat "$err"; }
[ "$(njobs)" = "$before" ] && ok "changed host key: nothing ran" || fail "changed key: a job ran"
cmp -s "$BED_KNOWN_HOSTS" "$BED_DIR/kh.before" && ok "changed host key: known_hosts untouched" || fail "known_hosts changed"
