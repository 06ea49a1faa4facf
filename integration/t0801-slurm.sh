#!/usr/bin/env bash
# t0801: scheduler slurm, on the bed's real Slurm (slurmctld and two slurmd
# nodes, n1 and n2, on this machine) reached through the bed's sshd, with
# runtime none (Debian's python3 and Open MPI's mpi4py): a 4-rank job over
# both nodes sums right, streams with rank prefixes and brings its results
# back; a job that must wait (both nodes held by a first one) shows
# `pending` with Slurm's reason, and runs once `cancel` ended the first
# (scontrol: CANCELLED); --detach then attach; an unknown partition and a
# rejected sbatch option exit 2 with Slurm's message and a fix; a pending job
# cancelled outside pystrib (scancel) ends its follower (lost, exit 4); the
# ranks of node n2 killed mid-job fail it, the summary naming n2.
. "$(dirname "$0")/lib.sh"
command -v slurmctld >/dev/null 2>&1 || skip_all "no slurmctld (scripts/install-deps.sh installs slurm-wlm)"
bed_up slurm sshd
export SLURM_CONF=$BED_SLURM_CONF

cat >> "$BED_CONFIG" <<EOF
[remote.slurm]
runtime = none
python = /usr/bin/python3
scheduler = slurm
EOF
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() { "$PYSTRIB" -c "$BED_CONFIG" run --remote slurm "$@"; }
pst() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
jobs_dir=$BED_DIR/remote/jobs
record() { cat "$HOME/.local/state/pystrib/jobs/$1.json" 2>/dev/null; }
slurm_id_of() { record "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("slurm_id") or "")' 2>/dev/null; }
slurm_state() { scontrol -o show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }

# 1. Four ranks over the two nodes: the sums, prefixes, results.
cat > allreduce.py <<'EOF'
import os
from mpi4py import MPI
c = MPI.COMM_WORLD
print("rank", c.rank, "of", c.size, "on", os.environ.get("SLURMD_NODENAME"), "sum", c.allreduce(c.rank + 1))
with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "rank%d.txt" % c.rank), "w") as f:
    f.write("written by rank %d\n" % c.rank)
EOF
expect_exit 0 run allreduce.py -n 4 --results "$work/res1"
for r in 0 1 2 3; do
	check_grep "4 ranks: rank $r prints the allreduce sum 10 with its prefix" \
		-E "^\[$r\] rank $r of 4 on n[12] sum 10$" "$out" || show "$err"
	check_eq "4 ranks: rank $r's result file came back" "written by rank $r" \
		"$(cat "$work/res1/results/rank$r.txt" 2>/dev/null)"
done
check "4 ranks: both nodes ran ranks" eval 'grep -q " on n1 " "$out" && grep -q " on n2 " "$out"' || show "$out"
id=$(job_id_from_err "$err")
sid=$(slurm_id_of "$id")
check "4 ranks: the record holds the Slurm job id" eval '[ -n "$sid" ]' || record "$id"
check_grep "4 ranks: run names the Slurm job" "Slurm job $sid)" "$err"
check_eq "4 ranks: Slurm ran it to the end" COMPLETED "$(slurm_state "$sid")"
expect_exit 0 pst status "$id"
check_grep "4 ranks: status shows the Slurm job id" -E "^slurm job +$sid$" "$out"
check_grep "4 ranks: status says succeeded" -E "^state +succeeded" "$out"

# 2. Both nodes held by a first job: the second waits, pending with a reason.
cat > hold.py <<'EOF'
import time
print("holding", flush=True)
time.sleep(120)
EOF
expect_exit 0 run --detach hold.py -n 4
hold=$(head -n 1 "$out")
hold_sid=$(slurm_id_of "$hold")
for _ in $(seq 100); do [ "$(slurm_state "$hold_sid")" = RUNNING ] && break; sleep 0.1; done
check_eq "pending: the first job runs on both nodes" RUNNING "$(slurm_state "$hold_sid")"
expect_exit 0 run --detach allreduce.py -n 4 --results "$work/res2"
second=$(head -n 1 "$out")
second_sid=$(slurm_id_of "$second")
for _ in $(seq 50); do
	pst status "$second" > status.out 2>&1
	grep -q '^state  *pending (' status.out && break
	sleep 0.1
done
check_grep "pending: status shows pending with Slurm's reason" -E '^state +pending \((Resources|Priority)\)$' status.out
check_grep "pending: status shows the Slurm job id" -E "^slurm job +$second_sid$" status.out
expect_exit 0 pst jobs
check_grep "pending: jobs shows it with the Slurm id and reason" -E "^$second .*pending .*slurm $second_sid \((Resources|Priority)\)" "$out"

# 3. cancel: the first job ends in Slurm too.
expect_exit 0 pst cancel "$hold"
check_grep "cancel: says cancelled" "^job $hold cancelled" "$out"
for _ in $(seq 100); do [ "$(slurm_state "$hold_sid")" = CANCELLED ] && break; sleep 0.1; done
check_eq "cancel: scontrol show job says CANCELLED" CANCELLED "$(slurm_state "$hold_sid")"
check_eq "cancel: the job directory says cancelled" cancelled "$(cat "$jobs_dir/$hold/state" 2>/dev/null)"

# 4. The waiting job runs now; attach follows it to its end.
expect_exit 0 timeout 120 "$PYSTRIB" -c "$BED_CONFIG" attach "$second"
check_grep "detach then attach: the output streams with rank prefixes" -E '^\[3\] rank 3 of 4 on n[12] sum 10$' "$out" ||
	show "$err"
check_eq "detach then attach: Slurm ran it to the end" COMPLETED "$(slurm_state "$second_sid")"
check "detach then attach: the results came back" eval 'ls "$work/res2/results/rank0.txt" || ls "$work"/pystrib-results/"$second"/results/rank0.txt'

# 5. What Slurm refuses: exit 2 with its own message and a fix.
n0=$(find "$jobs_dir" -mindepth 1 -maxdepth 1 | wc -l)
PYSTRIB_SLURM_PARTITION=nope expect_exit 2 run allreduce.py -n 2
check_grep "unknown partition: Slurm's message" -i "invalid partition" "$err"
check_grep "unknown partition: the fix" "sinfo -s" "$err"
PYSTRIB_SLURM_EXTRA=--no-such-option expect_exit 2 run allreduce.py -n 2
check_grep "rejected option: sbatch's message" "unrecognized option '--no-such-option'" "$err" || show "$err"
check_grep "rejected option: the fix" "\[slurm\] extra" "$err"
check_eq "refused jobs leave no job directory" "$n0" "$(find "$jobs_dir" -mindepth 1 -maxdepth 1 | wc -l)"



# 6. A pending job cancelled outside pystrib (scancel) while attach follows
# it: attach ends within seconds, exit 4, the job lost with Slurm's word.
expect_exit 0 run --detach hold.py -n 4
hold=$(head -n 1 "$out")
hold_sid=$(slurm_id_of "$hold")
for _ in $(seq 100); do [ "$(slurm_state "$hold_sid")" = RUNNING ] && break; sleep 0.1; done
expect_exit 0 run --detach allreduce.py -n 4
waiting=$(head -n 1 "$out")
waiting_sid=$(slurm_id_of "$waiting")
check_eq "scancel outside: the job waits" PENDING "$(slurm_state "$waiting_sid")"
"$PYSTRIB" -c "$BED_CONFIG" attach "$waiting" > attach.out 2> attach.err &
apid=$!
sleep 1
t0=$(date +%s)
scancel "$waiting_sid"
for _ in $(seq 300); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$apid" 2>/dev/null; then
	kill "$apid"
	check "scancel outside: attach ended within 30 s" false
fi
wait "$apid"
rc=$?
check_eq "scancel outside: attach exits 4 (lost)" 4 "$rc" || show attach.err
check "scancel outside: within 10 s" eval '[ $(($(date +%s) - t0)) -le 10 ]'
check_grep "scancel outside: the summary says lost, cancelled outside pystrib" \
	"lost: Slurm job $waiting_sid was cancelled outside pystrib (scancel)" attach.err
expect_exit 0 pst status "$waiting"
check_grep "scancel outside: status says lost, with Slurm's word" \
	-E "^state +lost \(Slurm job $waiting_sid was cancelled outside pystrib \(scancel\)" "$out"

# 7. The ranks on node n2 killed (SIGKILL) mid-job: the job fails, and the
# summary names the node.
expect_exit 0 pst cancel "$hold"
expect_exit 0 run --detach hold.py -n 4
victim=$(head -n 1 "$out")
"$PYSTRIB" -c "$BED_CONFIG" attach "$victim" > attach.out 2> attach.err &
apid=$!
for _ in $(seq 150); do grep -q '^\[3\] holding' attach.out && break; sleep 0.1; done
check_grep "node killed: the ranks run" '^\[3\] holding' attach.out
# The ranks of node n2: the bed's two nodes are this machine, told apart by
# the environment slurmd gives each task.
for p in $(pgrep -f "python3 .*$jobs_dir/$victim/cell/bootstrap.py"); do
	tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx SLURMD_NODENAME=n2 && kill -9 "$p"
done
for _ in $(seq 300); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && kill "$apid"
wait "$apid"
rc=$?
check_eq "node killed: attach exits 4 (a failure of the host)" 4 "$rc" || show attach.err
check_grep "node killed: the summary names the node" "node 'n2' failed under the job: ranks 2-3 were killed there" attach.err
check_eq "node killed: the job directory says failed" failed "$(cat "$jobs_dir/$victim/state" 2>/dev/null)"
expect_exit 0 pst status "$victim"
check_grep "node killed: status names the node" -E "^state +failed \(node 'n2' failed under the job: ranks 2-3 were killed there" "$out"
