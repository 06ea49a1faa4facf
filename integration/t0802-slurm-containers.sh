#!/usr/bin/env bash
# t0802: scheduler slurm with a container runtime, on the bed's real Slurm
# (slurmctld and two slurmd nodes, n1 and n2, on this machine) reached
# through the bed's sshd: a 4-rank podman job runs one container per task
# over both nodes, the allreduce sums right through PMIx inside the
# containers, RANK, WORLD_SIZE and LOCAL_RANK are Slurm's, and no container
# is left; cancel, --timeout and a failed rank leave no container on any
# node (cancel: scontrol says CANCELLED); a registry the nodes cannot reach
# fails the job before any rank, naming a node; docker the same (a job and a
# cancel) where dockerd is installed. A session (runtime none) runs its
# workers with srun in its allocation, which its idle timeout releases.
# Then a real node failure, with runtime none: node n2's slurmd and its
# step killed mid-job, the job fails (exit 4) naming n2 once Slurm finds
# the node down.
. "$(dirname "$0")/lib.sh"
command -v slurmctld >/dev/null 2>&1 || skip_all "no slurmctld (scripts/install-deps.sh installs slurm-wlm)"
command -v podman >/dev/null 2>&1 || skip_all "no podman"
engines=podman
command -v dockerd >/dev/null 2>&1 && engines="podman docker"
# shellcheck disable=SC2086
bed_up registry $engines base slurm sshd
bed_engines
export SLURM_CONF=$BED_SLURM_CONF

cat >> "$BED_CONFIG" <<EOF
[remote.spod]
runtime = podman
scheduler = slurm
[remote.spodbad]
runtime = podman
scheduler = slurm
pull_registry = 127.0.0.1:9
[remote.sdocker]
runtime = docker
scheduler = slurm
[remote.snone]
runtime = none
python = /usr/bin/python3
scheduler = slurm
EOF
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() { "$PYSTRIB" -c "$BED_CONFIG" run "$@"; }
pst() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
jobs_dir=$BED_DIR/remote/jobs
record() { cat "$HOME/.local/state/pystrib/jobs/$1.json" 2>/dev/null; }
slurm_id_of() { record "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("slurm_id") or "")' 2>/dev/null; }
slurm_state() { scontrol -o show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# The containers of job $1 on the (one) engine both nodes use here.
containers_of() { podman ps -a --format '{{.Names}}' 2>/dev/null | grep -c "^pystrib-$1-" ; }
no_containers_within() {	# no_containers_within SECONDS ID
	for _ in $(seq $(($1 * 10))); do [ "$(containers_of "$2")" -eq 0 ] && return 0; sleep 0.1; done
	return 1
}

# 1. Four ranks, a container each, over the two nodes.
cat > allreduce.py <<'EOF'
import os
from mpi4py import MPI
c = MPI.COMM_WORLD
e = os.environ
print("rank", c.rank, "of", c.size, "on", e.get("SLURMD_NODENAME"), "sum", c.allreduce(c.rank + 1),
      "env", e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"], "in", "container" if os.path.isdir("/pystrib/cell") else "host")
with open(os.path.join(e["PYSTRIB_RESULTS"], "rank%d.txt" % c.rank), "w") as f:
    f.write("written by rank %d\n" % c.rank)
EOF
expect_exit 0 run --remote spod allreduce.py -n 4 --results "$work/res1"
id=$(job_id_from_err "$err")
check_grep "podman: run says podman and the Slurm job" -E "\(podman, Slurm job [0-9]+\)" "$err" || show "$err"
check_grep "podman: the image is pulled on the nodes first" "pulling the image" "$err"
for r in 0 1 2 3; do
	local_rank=$((r % 2))
	check_grep "podman: rank $r sums 10 in its container, RANK/WORLD_SIZE/LOCAL_RANK $r/4/$local_rank" \
		-E "^\[$r\] rank $r of 4 on n[12] sum 10 env $r 4 $local_rank in container$" "$out" || show "$out"
	check_eq "podman: rank $r's result file came back" "written by rank $r" \
		"$(cat "$work/res1/results/rank$r.txt" 2>/dev/null)"
done
check "podman: both nodes ran ranks" eval 'grep -q " on n1 " "$out" && grep -q " on n2 " "$out"' || show "$out"
# The job's last step, after its final state: the nodes' leftovers removed.
sid=$(slurm_id_of "$id")
for _ in $(seq 300); do [ "$(slurm_state "$sid")" = COMPLETED ] && break; sleep 0.1; done
check_eq "podman: Slurm ran it to the end" COMPLETED "$(slurm_state "$sid")"
check "podman: no container is left" no_containers_within 15 "$id"
check "podman: no env-file is left" eval '[ ! -e "$jobs_dir/$id/.slurm" ]'

# 2. cancel of a running container job: Slurm says CANCELLED, and no
# container is left (the cell ignores TERM: only the removal ends it).
cat > hold.py <<'EOF'
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("holding", flush=True)
time.sleep(120)
EOF
expect_exit 0 run --remote spod --detach hold.py -n 4
hold=$(head -n 1 "$out")
hold_sid=$(slurm_id_of "$hold")
for _ in $(seq 300); do [ "$(containers_of "$hold")" -eq 4 ] && break; sleep 0.1; done
check_eq "cancel: the job runs 4 containers" 4 "$(containers_of "$hold")"
expect_exit 0 pst cancel "$hold"
check_grep "cancel: says cancelled" "^job $hold cancelled" "$out"
for _ in $(seq 100); do [ "$(slurm_state "$hold_sid")" = CANCELLED ] && break; sleep 0.1; done
check_eq "cancel: scontrol show job says CANCELLED" CANCELLED "$(slurm_state "$hold_sid")"
check_eq "cancel: the job directory says cancelled" cancelled "$(cat "$jobs_dir/$hold/state" 2>/dev/null)"
check "cancel: no container is left on either node" no_containers_within 15 "$hold" ||
	podman ps -a --format '{{.Names}} {{.Status}}'

# 3. --timeout: the job ends as timeout, no container left.
expect_exit 5 run --remote spod --timeout 8 hold.py -n 4
check_grep "timeout: the summary says timed out" "timed out" "$err" || show "$err"
id=$(job_id_from_err "$err")
check_eq "timeout: the job directory says timeout" timeout "$(cat "$jobs_dir/$id/state" 2>/dev/null)"
check "timeout: no container is left on either node" no_containers_within 15 "$id"

# 4. A rank that fails: the job fails with its exit, srun stops the
# others, and no container is left.
cat > bad.py <<'EOF'
import os, sys, time
if os.environ["RANK"] == "3":
    time.sleep(1)
    sys.exit(3)
time.sleep(120)
EOF
expect_exit 1 run --remote spod bad.py -n 4
check_grep "failed rank: the summary names rank 3's exit" "rank 3 exit 3" "$err" || show "$err"
id=$(job_id_from_err "$err")
check "failed rank: no container is left on either node" no_containers_within 20 "$id"

# 5. A registry the nodes cannot reach (pull_registry: a closed port):
# the pull step fails before any rank starts, naming a node. A cell of
# its own: an image the nodes have already needs no pull.
printf 'print("never runs")\n' > unpullable.py
expect_exit 3 run --remote spodbad unpullable.py -n 4
check_grep "unpullable: the summary names the node and the pull" -E "registry: node 'n[12]': podman could not pull the image: .*127\.0\.0\.1:9" "$err" ||
	show "$err"
id=$(job_id_from_err "$err")
check "unpullable: no rank ran" eval '! ls "$jobs_dir/$id"/logs/rank.* >/dev/null 2>&1'

# 5b. docker: the same container per task (the bed's one dockerd serves
# both nodes), and a cancel leaves none.
if [ -n "${BED_DOCKER_HOST:-}" ]; then
	dcontainers_of() { /usr/bin/docker ps -a --format '{{.Names}}' 2>/dev/null | grep -c "^pystrib-$1-"; }
	expect_exit 0 run --remote sdocker allreduce.py -n 4
	id=$(job_id_from_err "$err")
	check_grep "docker: run says docker and the Slurm job" -E "\(docker, Slurm job [0-9]+\)" "$err" || show "$err"
	for r in 0 1 2 3; do
		check_grep "docker: rank $r sums 10 in its container, RANK/WORLD_SIZE/LOCAL_RANK $r/4/$((r % 2))" \
			-E "^\[$r\] rank $r of 4 on n[12] sum 10 env $r 4 $((r % 2)) in container$" "$out" || show "$out"
	done
	for _ in $(seq 150); do [ "$(dcontainers_of "$id")" -eq 0 ] && break; sleep 0.1; done
	check_eq "docker: no container is left" 0 "$(dcontainers_of "$id")"
	expect_exit 0 run --remote sdocker --detach hold.py -n 4
	hold=$(head -n 1 "$out")
	for _ in $(seq 300); do [ "$(dcontainers_of "$hold")" -eq 4 ] && break; sleep 0.1; done
	check_eq "docker cancel: the job runs 4 containers" 4 "$(dcontainers_of "$hold")"
	expect_exit 0 pst cancel "$hold"
	for _ in $(seq 150); do [ "$(dcontainers_of "$hold")" -eq 0 ] && break; sleep 0.1; done
	check_eq "docker cancel: no container is left" 0 "$(dcontainers_of "$hold")"
	hold_sid=$(slurm_id_of "$hold")
	for _ in $(seq 100); do [ "$(slurm_state "$hold_sid")" = CANCELLED ] && break; sleep 0.1; done
	check_eq "docker cancel: scontrol show job says CANCELLED" CANCELLED "$(slurm_state "$hold_sid")"
fi

# 6. A session on Slurm (runtime none): its hub runs in the allocation and
# starts its 4 workers over both nodes with srun; a variable lives from
# cell to cell; the idle timeout ends the hub and releases the allocation
# (Slurm: COMPLETED). A container runtime is refused for a session.
cat > s1.py <<'EOF'
import os
from mpi4py import MPI
x = MPI.COMM_WORLD.allreduce(MPI.COMM_WORLD.rank + 1)
print("rank", os.environ["RANK"], "on", os.environ.get("SLURMD_NODENAME"), "sum", x)
EOF
cat > s2.py <<'EOF'
print("x is", x)
EOF
expect_exit 0 pst session start --remote snone -n 4 --no-project --idle-timeout 15
sess=$(head -n 1 "$out")
sess_sid=$(slurm_id_of "$sess")
check "session: the record holds the Slurm job id" eval '[ -n "$sess_sid" ]'
check_eq "session: its allocation runs" RUNNING "$(slurm_state "$sess_sid")"
expect_exit 0 pst session exec "$sess" s1.py
for r in 0 1 2 3; do
	check_grep "session: rank $r sums 10" -E "^\[$r\] rank $r on n[12] sum 10$" "$out" || show "$out"
done
check "session: both nodes run workers" eval 'grep -q " on n1 " "$out" && grep -q " on n2 " "$out"'
expect_exit 0 pst session exec "$sess" s2.py
check_grep "session: a variable lives to the next cell" -E '^\[3\] x is 10$' "$out"
for _ in $(seq 400); do [ "$(slurm_state "$sess_sid")" = COMPLETED ] && break; sleep 0.1; done
check_eq "session: the idle timeout released the allocation" COMPLETED "$(slurm_state "$sess_sid")"
check_eq "session: the job directory says succeeded" succeeded "$(cat "$jobs_dir/$sess/state" 2>/dev/null)"
expect_exit 2 pst session start --remote spod -n 2 --no-project
check_grep "session: a container runtime under Slurm is refused" "sessions under Slurm cannot run runtime 'podman' yet" "$err"

# 7. A real node failure (runtime none): node n2's slurmd, its step daemon
# and its ranks killed mid-job. Slurm finds n2 down (SlurmdTimeout, 30 s
# here), srun says "Node failure on n2", and the job fails naming it.
expect_exit 0 run --remote snone --detach hold.py -n 4
victim=$(head -n 1 "$out")
"$PYSTRIB" -c "$BED_CONFIG" attach "$victim" > attach.out 2> attach.err &
apid=$!
for _ in $(seq 150); do grep -q '^\[3\] holding' attach.out && break; sleep 0.1; done
check_grep "node failure: the ranks run" '^\[3\] holding' attach.out
pids=$(cat "$BED_DIR/slurmd-n2.pid")
for p in $(pgrep -f "python3 .*$jobs_dir/$victim/cell/bootstrap.py"); do
	tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx SLURMD_NODENAME=n2 &&
		pids="$pids $p $(ps -o ppid= -p "$p")"
done
kill -9 $pids
for _ in $(seq 900); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && kill "$apid"
wait "$apid"
rc=$?
check_eq "node failure: attach exits 4 (a failure of the host)" 4 "$rc" || show attach.err
check_grep "node failure: the summary names the node" "^job $victim could not run: node 'n2' failed under the job (Slurm: Node failure on n2)" attach.err
check_eq "node failure: the job directory says failed" failed "$(cat "$jobs_dir/$victim/state" 2>/dev/null)"
victim_sid=$(slurm_id_of "$victim")
for _ in $(seq 300); do [ "$(slurm_state "$victim_sid")" = COMPLETING ] || break; sleep 0.1; done
check_eq "node failure: Slurm says NODE_FAIL, not requeued" NODE_FAIL "$(slurm_state "$victim_sid")"
expect_exit 0 pst status "$victim"
check_grep "node failure: status names the node" -E "^state +failed \(node 'n2' failed under the job" "$out"
