#!/usr/bin/env bash
# t0901: one job over several hosts ([remote] hosts), runtime none, on the
# bed's two namespace hosts h1 (198.18.0.1) and h2 (198.18.0.2), each with
# its own sshd, host name and workdir: a 4-rank job over both sums right,
# with MASTER_ADDR rank 0's host on every rank, LOCAL_RANK 0,1 on each, and
# the results of both (a name on both hosts: under results/HOST/); a host
# down, or with an unknown key, is refused before anything starts (exit 4,
# named, no job directory on the other); a host's processes killed mid-job
# fail the job naming the host and leave no rank behind; cancel stops the
# ranks on every host.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces)"
command -v ip >/dev/null 2>&1 || skip_all "no ip (iproute2)"
bed_up hosts
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() { "$PYSTRIB" -c "$BED_CONFIG" run --remote pair --no-project "$@"; }
pst() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
h1_jobs=$BED_DIR/hosts/h1-work/jobs
h2_jobs=$BED_DIR/hosts/h2-work/jobs
# The cell's processes on host $1 (h1, h2): bootstrap.py or orted.
ranks_on() { host_procs "$1" 'bootstrap.py\|orted'; }
h2_sshd_start() { sh "$BED_DIR/hosts/h2-start.sh"; }

# 1. Four ranks over both hosts.
cat > allreduce.py <<'EOF2'
import os, socket
from mpi4py import MPI
c = MPI.COMM_WORLD
e = os.environ
print("rank", c.rank, "on", socket.gethostname(), "local", e["LOCAL_RANK"], "of", e["LOCAL_WORLD_SIZE"],
      "master", e["MASTER_ADDR"], e["MASTER_PORT"], "sum", c.allreduce(c.rank + 1))
res = e["PYSTRIB_RESULTS"]
with open(os.path.join(res, "rank%d.txt" % c.rank), "w") as f:
    f.write("rank %d on %s\n" % (c.rank, socket.gethostname()))
EOF2
expect_exit 0 run allreduce.py -n 4 --results "$work/res1"
for r in 0 1 2 3; do
	check_grep "rank $r: the sum over 4 ranks is 10" "^\[$r\] rank $r on .* sum 10$" "$out"
	check_grep "rank $r: MASTER_ADDR is rank 0's host as the others reach it" \
		"^\[$r\] rank $r .* master 198\.18\.0\.1 [0-9]" "$out"
done
check_eq "ranks 0 and 1 run on h1, local ranks 0 and 1 of 2" "0 1" "$(sed -n 's/^\[[01]\] rank [01] on h1 local \([01]\) of 2 .*/\1/p' "$out" | sort | xargs)"
check_eq "ranks 2 and 3 run on h2, local ranks 0 and 1 of 2" "0 1" \
	"$(sed -n 's/^\[[23]\] rank [23] on h2 local \([01]\) of 2 .*/\1/p' "$out" | sort | xargs)"
check_eq "one MASTER_PORT for every rank" 1 "$(sed -n 's/.* master [0-9.]* \([0-9]*\) .*/\1/p' "$out" | sort -u | wc -l)"
for r in 0 1 2 3; do
	h=h1
	[ "$r" -lt 2 ] || h=h2
	check_eq "rank $r's result comes back (from $h)" "rank $r on $h" "$(cat "$work/res1/results/rank$r.txt" 2>/dev/null)"
	check "rank $r's log comes back" test -s "$work/res1/logs/rank.$r.out"
done
check "h2's ranks wrote on h2, into a job directory of the same path" \
	eval "ls '$h2_jobs'/*/results/rank2.txt >/dev/null"

# 2. The same name written on both hosts: h2's under results/198.18.0.2/;
# without -n, the slots of both hosts.
cat > same.py <<'EOF2'
import os, socket
from mpi4py import MPI
c = MPI.COMM_WORLD
if os.environ["LOCAL_RANK"] == "0":
    with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "host.txt"), "w") as f:
        f.write(socket.gethostname() + "\n")
c.Barrier()
EOF2
expect_exit 0 run same.py --results "$work/res2"
check_grep "no -n: as many ranks as the hosts' slots (4)" "rank 3: exit 0" "$err"
check_eq "rank 0's host keeps results/ itself" h1 "$(cat "$work/res2/results/host.txt" 2>/dev/null)"
check_eq "a name on both hosts: the other's under results/HOST/" h2 \
	"$(cat "$work/res2/results/198.18.0.2/host.txt" 2>/dev/null)"

# 3. h2 down before the start: exit 4 naming it, nothing started on h1.
before=$(ls "$h1_jobs" | wc -l)
kill "$(cat "$BED_DIR/hosts/h2-sshd.pid")"
sleep 0.5
expect_exit 4 run allreduce.py -n 4 --results "$work/res3"
check_grep "the host down is named" "root@198.18.0.2:22.*nothing started" "$err"
check_eq "no job directory on h1" "$before" "$(ls "$h1_jobs" | wc -l)"
check_eq "no rank on h1" 0 "$(ranks_on h1)"
h2_sshd_start
host_wait h2

# 4. h2's key unknown (a known_hosts without it): exit 4, named, nothing started.
grep -v '^198\.18\.0\.2 ' "$BED_HOSTS_KNOWN_HOSTS" > "$work/known_h1"
sed "s|^known_hosts = $BED_HOSTS_KNOWN_HOSTS\$|known_hosts = $work/known_h1|" "$BED_CONFIG" > "$work/unknown.ini"
chmod 600 "$work/unknown.ini"
expect_exit 4 "$PYSTRIB" -c "$work/unknown.ini" run --remote pair --no-project allreduce.py -n 4 \
	--results "$work/res4"
check_grep "the host of the unknown key is named" "198.18.0.2.*nothing started" "$err"
check_eq "no job directory on h1 for it" "$before" "$(ls "$h1_jobs" | wc -l)"

# 5. h2's ranks and daemon killed mid-job: the job fails naming h2, no rank left.
cat > slow.py <<'EOF2'
import time
from mpi4py import MPI
c = MPI.COMM_WORLD
print("started", c.rank, flush=True)
time.sleep(60)
c.Barrier()
EOF2
run slow.py -n 4 --results "$work/res5" > "$work/kill.out" 2> "$work/kill.err" &
runner=$!
# Wait for h2's ranks' processes there too.
for _ in $(seq 300); do [ "$(grep -c started "$work/kill.out")" -ge 2 ] && [ "$(ranks_on h2)" -ge 3 ] && break; sleep 0.1; done
for p in $(ip netns pids h2); do
	ps -o args= -p "$p" 2>/dev/null | grep -q 'bootstrap.py\|orted' && kill -9 "$p"
done
wait "$runner"
check_eq "a host lost mid-job: exit 4" 4 "$?"
check_grep "the lost host is named" "host '198.18.0.2' was lost while the job ran" "$work/kill.err"
sleep 1
check_eq "no rank left on h1" 0 "$(ranks_on h1)"
check_eq "no rank left on h2" 0 "$(ranks_on h2)"

# 6. cancel stops the ranks on every host.
run slow.py -n 4 --detach --results "$work/res6" > "$work/det.out" 2>&1
id=$(tail -n 1 "$work/det.out")
for _ in $(seq 300); do [ "$(ranks_on h2)" -ge 2 ] && break; sleep 0.1; done
check "the detached job runs on h2" eval '[ "$(ranks_on h2)" -ge 2 ]' ||
	{ show "$work/det.out" "$h1_jobs/$id/state" "$h1_jobs/$id/logs/job.err"
	  for p in $(ip netns pids h1) $(ip netns pids h2); do ps -o pid=,stat=,args= -p "$p" | cut -c1-160; done; }
expect_exit 0 pst cancel "$id"
sleep 1
check_eq "cancel: no rank left on h1" 0 "$(ranks_on h1)"
check_eq "cancel: no rank left on h2" 0 "$(ranks_on h2)"
