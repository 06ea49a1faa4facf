#!/usr/bin/env bash
# t0903: one job over several hosts with runtime podman ([remote.pairpod]),
# on the bed's two namespace hosts h1 (198.18.0.1) and h2 (198.18.0.2),
# each with its own podman storage and the registry at its own
# 127.0.0.1:PORT: a container of the image on each host, mpirun in h1's
# starting its daemon in h2's (docs/remote-job.md, "Several hosts"). A
# 4-rank job sums right, with MASTER_ADDR rank 0's host and LOCAL_RANK 0,1
# on each, and the results of both come back; h2's ranks' output streams
# while the job runs (run.sh's mirror); h2's container killed
# mid-job fails the job naming h2; cancel; and after each, no container
# on either host; gc removes the job directories on both. Runtime docker
# over hosts is refused (exit 2).
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces)"
command -v ip >/dev/null 2>&1 || skip_all "no ip (iproute2)"
command -v podman >/dev/null 2>&1 || skip_all "no podman"
command -v socat >/dev/null 2>&1 || skip_all "no socat (scripts/install-deps.sh)"
bed_up registry base hosts
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() { "$PYSTRIB" -c "$BED_CONFIG" run --remote pairpod --no-project "$@"; }
pst() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
h1_jobs=$BED_DIR/hosts/h1-work/jobs
h2_jobs=$BED_DIR/hosts/h2-work/jobs
on() {	# on h1|h2 COMMAND: COMMAND on that host, as its own sessions run it
	ssh -i "$BED_HOSTS_KEY" -o IdentitiesOnly=yes -o UserKnownHostsFile="$BED_HOSTS_KNOWN_HOSTS" \
		-o BatchMode=yes "root@198.18.0.${1#h}" "$2"
}
containers_on() { on "$1" 'podman ps -aq' | wc -l; }
# The cell's processes on host $1: bootstrap.py or orted.
ranks_on() { host_procs "$1" 'bootstrap.py\|orted'; }
# run.sh's output mirrors on host $1 (their loop's command line).
mirrors_on() { host_procs "$1" '\.mirror-'; }
no_containers() {	# no_containers WHEN
	local h
	for h in h1 h2; do
		check_eq "$1: no container left on $h" 0 "$(containers_on "$h")" ||
			on "$h" 'podman ps -a' | show /dev/stdin
	done
}

# 1. Four ranks over both hosts, each in its host's container.
cat > allreduce.py <<'EOF2'
import os, socket
from mpi4py import MPI
c = MPI.COMM_WORLD
e = os.environ
print("rank", c.rank, "on", socket.gethostname(), "local", e["LOCAL_RANK"], "of", e["LOCAL_WORLD_SIZE"],
      "master", e["MASTER_ADDR"], e["MASTER_PORT"], "sum", c.allreduce(c.rank + 1),
      "container", os.path.exists("/run/.containerenv"))
with open(os.path.join(e["PYSTRIB_RESULTS"], "rank%d.txt" % c.rank), "w") as f:
    f.write("rank %d on %s\n" % (c.rank, socket.gethostname()))
EOF2
expect_exit 0 run allreduce.py -n 4 --results "$work/res1"
for r in 0 1 2 3; do
	check_grep "rank $r: the sum over 4 ranks is 10, in a container" "^\[$r\] rank $r on .* sum 10 container True$" "$out"
	check_grep "rank $r: MASTER_ADDR is rank 0's host as the others reach it" \
		"^\[$r\] rank $r .* master 198\.18\.0\.1 [0-9]" "$out"
done
check_eq "ranks 0 and 1 run on h1, local ranks 0 and 1 of 2" "0 1" \
	"$(sed -n 's/^\[[01]\] rank [01] on h1 local \([01]\) of 2 .*/\1/p' "$out" | sort | xargs)"
check_eq "ranks 2 and 3 run on h2, local ranks 0 and 1 of 2" "0 1" \
	"$(sed -n 's/^\[[23]\] rank [23] on h2 local \([01]\) of 2 .*/\1/p' "$out" | sort | xargs)"
check_eq "each rank's line once (the live mirror, then the whole files)" 4 "$(grep -c ' sum 10 ' "$out")"
check_eq "one MASTER_PORT for every rank" 1 "$(sed -n 's/.* master [0-9.]* \([0-9]*\) .*/\1/p' "$out" | sort -u | wc -l)"
for r in 0 1 2 3; do
	h=h1
	[ "$r" -lt 2 ] || h=h2
	check_eq "rank $r's result comes back (from $h)" "rank $r on $h" "$(cat "$work/res1/results/rank$r.txt" 2>/dev/null)"
done
check_eq "the image was pulled on h2 too" 1 "$(on h2 'podman images -q' | wc -l)"
no_containers "a job that succeeded"

# 2. h2's container killed mid-job: the job fails naming h2.
cat > slow.py <<'EOF2'
import time
from mpi4py import MPI
c = MPI.COMM_WORLD
print("started", c.rank, flush=True)
time.sleep(60)
c.Barrier()
EOF2
run slow.py -n 4 --results "$work/res2" > "$work/kill.out" 2> "$work/kill.err" &
runner=$!
for _ in $(seq 300); do [ "$(grep -c started "$work/kill.out")" -ge 4 ] && [ "$(ranks_on h2)" -ge 3 ] && break; sleep 0.1; done
check "h2's ranks run before the kill" eval '[ "$(ranks_on h2)" -ge 3 ]'
check_eq "h2's ranks' output streams while the job runs" "[2] started 2 [3] started 3" \
	"$(grep '^\[[23]\] started' "$work/kill.out" | sort | xargs)"
on h2 'podman kill $(podman ps -q)' > /dev/null
wait "$runner"
check_eq "a host's container lost mid-job: exit 4" 4 "$?"
check_grep "the lost host is named" "host '198.18.0.2' was lost while the job ran" "$work/kill.err"
no_containers "a host lost"
check_eq "no rank left on h1" 0 "$(ranks_on h1)"

# 3. cancel of a detached job.
run slow.py -n 4 --detach --results "$work/res3" > "$work/det.out" 2>&1
id=$(tail -n 1 "$work/det.out")
for _ in $(seq 300); do [ "$(ranks_on h2)" -ge 3 ] && break; sleep 0.1; done
check "the detached job runs on h2" eval '[ "$(ranks_on h2)" -ge 3 ]' ||
	show "$work/det.out" "$h1_jobs/$id/state" "$h1_jobs/$id/logs/job.err"
expect_exit 0 pst cancel "$id"
no_containers "cancel"
sleep 1
check_eq "no output mirror left on h2" 0 "$(mirrors_on h2)"
check_eq "cancel: no rank left on h2" 0 "$(ranks_on h2)"

# 4. --timeout stops it on every host.
expect_exit 5 run slow.py -n 4 --timeout 8 --results "$work/res4"
check_grep "the job timed out" "timed out" "$err"
no_containers "--timeout"

# 5. docker over several hosts: refused before anything starts.
sed 's/^runtime = podman$/runtime = docker/' "$BED_CONFIG" > "$work/docker.ini"
chmod 600 "$work/docker.ini"
expect_exit 2 "$PYSTRIB" -c "$work/docker.ini" run --remote pairpod --no-project allreduce.py -n 4
check_grep "docker over hosts: refused, podman named" "runtime 'docker' cannot run over several hosts.*" "$err"

# 6. gc removes the jobs' directories on every host (the first reaches the
# others, named in its job's run.sh header: jobctl.sh remove).
check "every job left a directory on h2" eval '[ "$(ls "$h2_jobs" | wc -l)" -ge 4 ]'
expect_exit 0 pst gc --older-than 0 --remote pairpod
check_eq "gc: no job directory left on h1" 0 "$(ls "$h1_jobs" | wc -l)"
check_eq "gc: no job directory left on h2" 0 "$(ls "$h2_jobs" | wc -l)"
