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

# The bed's user has its own python3 first on PATH; Debian's has mpi4py.
export PYSTRIB_REMOTE_PYTHON=/usr/bin/python3 PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() { "$PYSTRIB" -c "$BED_CONFIG" run --remote none "$@"; }
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
	check_grep "rank $r prints the allreduce sum 3" -x "\[$r\] rank $r of 2 sum 3" "$out" || show "$err"
	check_eq "rank $r's result file came back" "written by rank $r" "$(cat "$work/res1/results/rank$r.txt" 2>/dev/null)"
	check_eq "rank $r's log and exit code came back" 0 "$(cat "$work/res1/logs/rank.$r.exit" 2>/dev/null)"
done
check "summary: per rank exit code and duration, results path" eval \
	'grep -q "rank 0: exit 0 in" "$err" && grep -q "rank 1: exit 0 in" "$err" && grep -q "results: $work/res1" "$err"' ||
	show "$err"
# The text output is what this run checks: its id from stderr.
id=$(job_id_from_err "$err")
check "remote state: succeeded" eval '[ -n "$id" ] && [ "$(cat "$jobs_dir/$id/state")" = succeeded ]'
rec=$HOME/.local/state/pystrib/jobs/$id.json
check_grep "local job record written" '"state": *"succeeded"' "$rec"

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
check_grep "names the failed rank" "^rank 1 failed (exit 1)" "$err"
check "shows the end of its stderr: the traceback" eval \
	'grep -q "^    ValueError: rank one is unhappy" "$err" && grep -q "in inner" "$err"' || show "$err"
check_grep "the traceback streamed with its rank prefix" "^\[1\] ValueError: rank one is unhappy" "$err"
check_grep "the traceback names the cell's file, not user_code.py" 'File "fails.py", line 5, in inner' "$err"
check_no_grep "no /pystrib/cell/user_code.py in the traceback" "user_code.py" "$err"

# 3. --timeout: exit 5, the job stopped, nothing left running.
cat > sleeps.py <<'EOF'
import time
print("sleeping", rank, flush=True)
time.sleep(120)
EOF
start=$(date +%s)
expect_exit 5 "$PYSTRIB" -c "$BED_CONFIG" --json run --remote none sleeps.py -n 2 --timeout 3
took=$(( $(date +%s) - start ))
id=$(job_id_from_json "$out")
check "timeout: stopped in less than 40 s ($took s)" test "$took" -lt 40
check_eq "timeout: remote state 'timeout'" timeout "$(cat "$jobs_dir/$id/state" 2>/dev/null)"
check_grep "timeout: output shown until then" "sleeping 0" "$out"
sleep 0.5
check_eq "timeout: no process left behind" "" "$(leftover "$id")"

# 4. SIGINT to pystrib: the job is stopped, exit 130.
# (not through the function: $! must be pystrib itself)
"$PYSTRIB" -c "$BED_CONFIG" --json run --remote none sleeps.py -n 2 > "$out" 2> "$err" &
pid=$!
for _ in $(seq 100); do grep -q "sleeping 1" "$out" && grep -q "sleeping 0" "$out" && break; sleep 0.1; done
id=$(job_id_from_json "$out")
check "SIGINT: the ranks run before" test -n "$(leftover "$id")"
kill -INT "$pid"
wait "$pid"
code=$?
check_eq "SIGINT: exit 130" 130 "$code" || show "$err"
check_eq "SIGINT: remote state 'cancelled'" cancelled "$(cat "$jobs_dir/$id/state" 2>/dev/null)"
sleep 0.5
check_eq "SIGINT: no process left behind" "" "$(leftover "$id")"

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
want=$("$PY" -c 'import json,sys; print("[0] ARGV", json.dumps(sys.argv[1:]))' "${args[@]}")
check_grep "hostile arguments arrive byte for byte" -xF -- "$want" "$out" || show "$err"
found=$(find / /root /tmp -maxdepth 1 -name "MARK*" 2>/dev/null; find "$BED_DIR" -name 'MARK*' 2>/dev/null)
check_eq "nothing extra ran (no MARK file anywhere)" "" "$found"

# 6. --json: events, one per line.
"$PYSTRIB" -c "$BED_CONFIG" --json run --remote none allreduce.py -n 2 > "$BED_DIR/json.out" 2> "$err"
for ev in job output rank_exit results done; do
	check_grep "--json: a '$ev' event" "^{\"event\": *\"$ev\"" "$BED_DIR/json.out"
done
check "--json: every line is an event; done says succeeded" "$PY" - "$BED_DIR/json.out" <<'EOF'
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
check "unknown host: refused, fingerprint and the way to trust it shown" eval \
	'grep -q "$fp" "$err" && grep -q -- "--accept-new-host-key" "$err"' || show "$err"
check "unknown host: nothing ran, nothing recorded" eval '[ "$(njobs)" = "$before" ] && [ ! -s "$kh" ]'
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 0 run allreduce.py -n 2 --accept-new-host-key
check_grep "--accept-new-host-key: key recorded, job ran" "\[127.0.0.1\]:$BED_SSH_PORT " "$kh"

# 8. A changed host key: refused loudly, even with --accept-new-host-key; nothing runs.
sshd_new_host_key
before=$(njobs)
cp "$BED_KNOWN_HOSTS" "$BED_DIR/kh.before"
expect_exit 4 run allreduce.py -n 2 --accept-new-host-key
check_grep "changed host key: refused" -i "changed" "$err"
check_eq "changed host key: nothing ran" "$before" "$(njobs)"
check_cmp "changed host key: known_hosts untouched" "$BED_DIR/kh.before" "$BED_KNOWN_HOSTS"
