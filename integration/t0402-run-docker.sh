#!/usr/bin/env bash
# t0402: pystrib run with runtime docker: the cell is pushed to the bed's
# registry, pulled by the bed's dockerd through the bed's sshd and run as 2
# Open MPI ranks in its container. A 2-rank mpi4py allreduce prints the
# right sum on each rank and each rank's file comes back, also with two jobs
# at once (host IPC: their Open MPI files kept apart); a cell raising on
# rank 1 exits 1 with its traceback; --timeout exits 5 and SIGINT exits 130,
# both leaving no container and no process behind.
# t0403 runs the same scenario with ENGINE=podman.
. "$(dirname "$0")/lib.sh"
ENGINE=${ENGINE:-docker}
bed_up registry sshd base "$ENGINE"

export PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
if [ "$ENGINE" = docker ]; then
	remote=default
	containers() { DOCKER_HOST=$BED_DOCKER_HOST /usr/bin/docker ps -a --format '{{.Names}}'; }
else
	remote=podman
	containers() {
		CONTAINERS_CONF=$BED_CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$BED_CONTAINERS_STORAGE_CONF \
			podman ps -a --format '{{.Names}}'
	}
fi
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() {
	if [ "$remote" = default ]; then
		"$PYSTRIB" -c "$BED_CONFIG" run --no-project "$@"
	else
		"$PYSTRIB" -c "$BED_CONFIG" run --no-project --remote "$remote" "$@"
	fi
}
# The same with --json: the job's id from its events.
run_json() {
	if [ "$remote" = default ]; then
		"$PYSTRIB" -c "$BED_CONFIG" --json run --no-project "$@"
	else
		"$PYSTRIB" -c "$BED_CONFIG" --json run --no-project --remote "$remote" "$@"
	fi
}
jobs_dir=$BED_DIR/remote/jobs
# What is left of a job: its container, and processes naming its directory.
leftover() {
	containers | grep -x "pystrib-$1"
	pgrep -af -- "$jobs_dir/$1" | grep -v pgrep
	true
}

# 1. Allreduce on 2 ranks, in the container; each rank's file comes back.
cat > allreduce.py <<'EOF'
import os
from mpi4py import MPI
c = MPI.COMM_WORLD
print("rank", c.rank, "of", world_size, "sum", c.allreduce(c.rank + 1))
print("in", "container" if os.path.exists("/pystrib/cell/user_code.py") else "host")
with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "rank%d.txt" % rank), "w") as f:
    f.write("written by rank %d\n" % rank)
EOF
if [ "$ENGINE" = docker ]; then
	expect_exit 0 "$PYSTRIB" -c "$BED_CONFIG" -v run --no-project allreduce.py -n 2 --results "$work/res1"
	check "docker: the job's container was started through the engine's socket" eval \
		'grep -q "^pystrib: timing: container started through the engine'"'"'s socket" "$err" &&
		! grep -q "the job starts through a shell" "$err"' || show "$err"
else
	expect_exit 0 run allreduce.py -n 2 --results "$work/res1"
fi
for r in 0 1; do
	check_grep "$ENGINE: rank $r prints the allreduce sum 3" -x "\[$r\] rank $r of 2 sum 3" "$out" || show "$err"
	check_grep "$ENGINE: rank $r ran in the image" -x "\[$r\] in container" "$out"
	check_eq "$ENGINE: rank $r's result file came back" "written by rank $r" \
		"$(cat "$work/res1/results/rank$r.txt" 2>/dev/null)"
done
# The text output is what this run checks: its id from stderr.
id=$(job_id_from_err "$err")
check_grep "$ENGINE: summary names the pushed image, pinned, and its tag" \
	-E "image:   $BED_REGISTRY/cells@sha256:[0-9a-f]{64} \(tag [a-z]+-[0-9a-f]{12}\)" "$err"
check "$ENGINE: remote state succeeded" eval '[ -n "$id" ] && [ "$(cat "$jobs_dir/$id/state" 2>/dev/null)" = succeeded ]'
check_eq "$ENGINE: the job used $ENGINE" "$ENGINE" "$(cat "$jobs_dir/$id/runtime" 2>/dev/null)"
# Removed right after the final state is written: give it a moment.
for _ in $(seq 50); do [ -z "$(leftover "$id")" ] && break; sleep 0.1; done
check_eq "$ENGINE: the container is removed after the run" "" "$(leftover "$id")"

# 1a. docker: the bed's config names the engine's socket, so the image was
# pulled through it and the job's container started through it, with no
# remote shell at all (the bed logs in as root, its workdir is absolute);
# with a socket that is not there, the job starts through a shell and pulls
# the image itself. Either way it runs.
if [ "$ENGINE" = docker ]; then
	check_no_grep "docker: the job found the image pulled through the socket" "pulling the image" "$err"
	printf '# pulled by the job\n' >> allreduce.py
	expect_exit 0 env PYSTRIB_REMOTE_DOCKER_SOCKET=/nonexistent/docker.sock \
		"$PYSTRIB" -c "$BED_CONFIG" -v run --no-project allreduce.py -n 2 --results "$work/res1a"
	# The image is new (the cell changed) and pystrib could not pull it: if
	# it is on the engine now, the job pulled it. (Its 'pulling' state can
	# pass between two looks of the follower: a small layer pulls in 0.1 s.)
	pulled=$(sed -n 's/^  image:   \([^ ]*\).*/\1/p' "$err")
	check "docker: no socket there: said with -v, and the job pulled the image itself" eval \
		'grep -qx "\[1\] rank 1 of 2 sum 3" "$out" &&
		grep -q "the job starts through a shell: .*opened no stream to '"'"'/nonexistent/docker.sock'"'"'" "$err" &&
		[ -n "$pulled" ] && DOCKER_HOST=$BED_DOCKER_HOST "$DOCKER" image inspect "$pulled" >/dev/null' ||
		show "$out" "$err"
	# doctor says whether the socket answers; a missing one is no failure.
	expect_exit 0 "$PYSTRIB" -c "$BED_CONFIG" doctor
	check_grep "docker: doctor finds the engine's socket" \
		"^ok  *socket  *the engine answers at '${BED_DOCKER_HOST#unix://}'" "$out"
	expect_exit 0 env PYSTRIB_REMOTE_DOCKER_SOCKET=/nonexistent/docker.sock "$PYSTRIB" -c "$BED_CONFIG" doctor
	check_grep "docker: doctor names a socket that is not there, as information" \
		"^info  *socket .*/nonexistent/docker.sock.*jobs pull the image themselves" "$out"

	# An image without mpirun: no rank can start; exit 4 (the host's side,
	# not the cell's) with what is missing.
	if check "docker: an image without mpirun is built and pushed" push_image_without_mpirun; then
		PYSTRIB_IMAGE_BASE=$BED_REGISTRY/nompi:1 expect_exit 4 run allreduce.py -n 2
		check_grep "docker: an image without mpirun: said so" "the image has no 'mpirun'" "$err"
	fi
fi

# 1c. docker: the follower runs in the container (docker exec over the
# engine's socket): when pystrib's connection drops mid-job, it reconnects
# and a follower through a shell goes on from the same offsets; every line
# arrives once, in order, and the results still come back.
if [ "$ENGINE" = docker ]; then
	cat > count.py <<'EOF'
import os, time
for i in range(60):
    print("n %d" % i, flush=True)
    time.sleep(0.1)
with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "done.txt"), "w") as f:
    f.write("counted\n")
EOF
	"$PYSTRIB" -c "$BED_CONFIG" -v run --no-project count.py -n 1 --results "$work/res1c" \
		> "$BED_DIR/count.out" 2> "$BED_DIR/count.err" &
	pid=$!
	for _ in $(seq 300); do grep -qx "\[0\] n 10" "$BED_DIR/count.out" && break; sleep 0.1; done
	# The sshd process at the other end of pystrib's connection.
	port=$(ss -tnpH state established | awk -v p="pid=$pid," -v peer="127.0.0.1:$BED_SSH_PORT" '$0 ~ p && $4 == peer {
		split($3, a, ":"); print a[2]; exit }')
	sshd=$(ss -tnpH state established "( sport = :$BED_SSH_PORT and dport = :$port )" |
		sed -n 's/.*pid=\([0-9]*\),.*/\1/p' | head -1)
	if check "docker: the sshd of pystrib's connection is found (port '$port', sshd '$sshd')" eval \
		'[ -n "$sshd" ] && grep -q "container started through the engine'"'"'s socket" "$BED_DIR/count.err"' ||
		{ show "$BED_DIR/count.err"; false; }; then
		kill -9 "$sshd"
		wait "$pid"
		code=$?
		got=$(sed -n 's/^\[0\] n \([0-9]*\)$/\1/p' "$BED_DIR/count.out" | tr '\n' ' ')
		check "docker: a dropped connection while following in the container: every line once, results back" eval \
			'[ "$code" = 0 ] && [ "$got" = "$(seq 0 59 | tr "\n" " ")" ] &&
			grep -q "reconnected" "$BED_DIR/count.err" && [ -f "$work/res1c/results/done.txt" ]' ||
			{ echo "#   exit $code, lines: $got"; show "$BED_DIR/count.err"; }
	else
		kill "$pid" 2>/dev/null
		wait "$pid"
	fi
fi

# 1b. Two jobs at once: their ranks' shared memory (host IPC) kept apart.
cat > busy.py <<'EOF'
from mpi4py import MPI
c = MPI.COMM_WORLD
total = 0
for i in range(20000):
    total += c.allreduce(1)
print("rank", c.rank, "total", total)
EOF
run busy.py -n 2 --timeout 120 > "$BED_DIR/busy1.out" 2> "$BED_DIR/busy1.err" &
busy1=$!
run busy.py -n 2 --timeout 120 > "$BED_DIR/busy2.out" 2> "$BED_DIR/busy2.err" &
busy2=$!
wait "$busy1"
c1=$?
wait "$busy2"
c2=$?
sums=$(cat "$BED_DIR/busy1.out" "$BED_DIR/busy2.out" | grep -c "total 40000$")
check_eq "$ENGINE: two jobs at once both finish with the right sums (exits, right sums)" "0 0 4" "$c1 $c2 $sums" ||
	show "$BED_DIR"/busy*.err
for f in "$BED_DIR"/busy1.err "$BED_DIR"/busy2.err; do
	b=$(job_id_from_err "$f")
	check "$ENGINE: job $b's shared-memory directory is removed" eval '[ -n "$b" ] && [ ! -e "/dev/shm/pystrib-$b" ]'
done

# 2. A cell that raises on rank 1: exit 1, the traceback, which rank.
cat > fails.py <<'EOF'
print("rank", rank, "starts", flush=True)
if rank == 1:
    def inner():
        raise ValueError("rank one is unhappy")
    inner()
EOF
expect_exit 1 run fails.py -n 2
check_grep "$ENGINE: names the failed rank" "^rank 1 failed (exit 1)" "$err"
check "$ENGINE: shows the traceback" eval \
	'grep -q "^    ValueError: rank one is unhappy" "$err" && grep -q "in inner" "$err"' || show "$err"

# 3. --timeout: exit 5; the container and every process gone.
cat > sleeps.py <<'EOF'
import time
print("sleeping", rank, flush=True)
time.sleep(120)
EOF
start=$(date +%s)
expect_exit 5 run_json sleeps.py -n 2 --timeout 4
took=$(( $(date +%s) - start ))
id=$(job_id_from_json "$out")
check "$ENGINE: timeout stopped the job in less than 60 s ($took s)" test "$took" -lt 60
check_eq "$ENGINE: remote state timeout" timeout "$(cat "$jobs_dir/$id/state" 2>/dev/null)"
sleep 0.5
check_eq "$ENGINE: timeout left no container or process" "" "$(leftover "$id")"

# 4. SIGINT to pystrib: the job stopped, exit 130, nothing left.
"$PYSTRIB" -c "$BED_CONFIG" --json run --no-project $([ "$remote" = default ] || echo "--remote $remote") \
	sleeps.py -n 2 > "$out" 2> "$err" &
pid=$!
for _ in $(seq 600); do grep -q "sleeping 1" "$out" && grep -q "sleeping 0" "$out" && break; sleep 0.1; done
id=$(job_id_from_json "$out")
check "$ENGINE: SIGINT: the container runs before" eval 'containers | grep -qx "pystrib-$id"'
kill -INT "$pid"
wait "$pid"
code=$?
check_eq "$ENGINE: SIGINT exits 130" 130 "$code" || show "$err"
check_eq "$ENGINE: SIGINT: remote state cancelled" cancelled "$(cat "$jobs_dir/$id/state" 2>/dev/null)"
sleep 0.5
check_eq "$ENGINE: SIGINT left no container or process" "" "$(leftover "$id")"
