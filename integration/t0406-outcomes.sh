#!/usr/bin/env bash
# t0406: one outcome, however it is told. For jobs that end in each way (a
# failed rank, too few slots, a Python that is not installed, a timeout, a
# cancel, a lost job on runtime none; a registry that refuses the host's
# pull and an image without mpirun on docker), `pystrib run`
# and a later `pystrib attach` of the same job exit with the same code and
# print the same summary, which names the cause (the decisive line of
# logs/job.err when the job could not run) and a hint. A --gpus the host
# cannot give is refused before any job starts.
. "$(dirname "$0")/lib.sh"
bed_up registry sshd docker base

export PYSTRIB_REMOTE_PYTHON=/usr/bin/python3
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
jobs_dir=$BED_DIR/remote/jobs

cat > fails.py <<'EOF'
print("rank", rank, "starts", flush=True)
if rank == 1:
    raise ValueError("rank one is unhappy")
EOF
cat > ok.py <<'EOF'
print("rank", rank, "of", world_size)
EOF
cat > sleeps.py <<'EOF'
import time
print("sleeping", rank, flush=True)
time.sleep(120)
EOF

# summary FILE ID: the summary block of a run or attach (from "job ID ").
summary() { sed -n "/^job $2 /,\$p" "$1"; }

# same_outcome NAME CODE ID: run's exit code and summary (in $err) against
# those of `attach ID`; the summary must name the job's end.
same_outcome() {
	local name=$1 code=$2 id=$3
	summary "$err" "$id" > "$BED_DIR/$name.run"
	check "$name: run printed a summary" test -s "$BED_DIR/$name.run" || show "$err"
	"$PYSTRIB" -c "$BED_CONFIG" attach "$id" > "$BED_DIR/$name.attach.out" 2> "$BED_DIR/$name.attach.err"
	check_eq "$name: attach exits as run did" "$code" "$?" || show "$BED_DIR/$name.attach.err"
	summary "$BED_DIR/$name.attach.err" "$id" > "$BED_DIR/$name.attach"
	check_cmp "$name: attach prints run's summary" "$BED_DIR/$name.run" "$BED_DIR/$name.attach"
}

# 1. A rank raises: exit 1, the rank and its traceback.
expect_exit 1 "$PYSTRIB" -c "$BED_CONFIG" run --remote none fails.py -n 2
id=$(job_id_from_err "$err")
check_grep "failed rank: the headline names rank 1" -x "job $id failed: rank 1 exit 1" "$err"
check_grep "failed rank: its traceback" "^    ValueError: rank one is unhappy" "$err"
same_outcome "failed rank" 1 "$id"

# 2. More ranks than the host has cores, without --oversubscribe: mpirun
# refuses; the host's refusal (4), with mpirun's own words and a fix.
many=$(( $(nproc) + 2 ))
PYSTRIB_REMOTE_MPIRUN_ARGS="--bind-to none" expect_exit 4 \
	"$PYSTRIB" -c "$BED_CONFIG" run --remote none ok.py -n "$many"
id=$(job_id_from_err "$err")
check_grep "too few slots: says so, in mpirun's words" "could not run: .*not enough slots" "$err"
check_grep "too few slots: the hint says what to do" "^hint: .*--oversubscribe" "$err"
check_no_grep "too few slots: no rank is blamed" "rank 0 failed" "$err"
same_outcome "too few slots" 4 "$id"

# 3. The host's Python is not there: 4, named.
PYSTRIB_REMOTE_PYTHON=/opt/no/such/python3 expect_exit 4 \
	"$PYSTRIB" -c "$BED_CONFIG" run --remote none ok.py -n 1
id=$(job_id_from_err "$err")
check_grep "python missing: named" "'/opt/no/such/python3' is not installed" "$err"
check_grep "python missing: a hint" "^hint: install it there" "$err"
same_outcome "python missing" 4 "$id"

# 4. --timeout: 5, and the ranks' 143 explained.
expect_exit 5 "$PYSTRIB" -c "$BED_CONFIG" run --remote none sleeps.py -n 2 --timeout 3
id=$(job_id_from_err "$err")
check_grep "timeout: the headline says pystrib stopped it" "^job $id timed out: pystrib stopped it" "$err"
check_no_grep "timeout: no rank's exit 143 left unexplained" -E "rank [01]: exit 143" "$err"
same_outcome "timeout" 5 "$id"

# 5. Cancelled by `pystrib cancel` while run follows: 130 for both.
"$PYSTRIB" -c "$BED_CONFIG" run --remote none sleeps.py -n 2 > "$out" 2> "$err" &
pid=$!
for _ in $(seq 300); do grep -q "sleeping 1" "$out" && grep -q "sleeping 0" "$out" && break; sleep 0.1; done
id=$(job_id_from_err "$err")
check "cancel: pystrib cancel stops it" "$PYSTRIB" -c "$BED_CONFIG" cancel "$id"
wait "$pid"
check_eq "cancel: run exits 130" 130 "$?" || show "$err"
check_grep "cancel: the headline says cancelled" "^job $id cancelled" "$err"
same_outcome "cancel" 130 "$id"

# 6. The job's directory removed while it runs: lost, 4; attach then finds
# nothing to follow and says so with the same exit code.
"$PYSTRIB" -c "$BED_CONFIG" run --remote none sleeps.py -n 2 > "$out" 2> "$err" &
pid=$!
for _ in $(seq 300); do grep -q "sleeping 1" "$out" && grep -q "sleeping 0" "$out" && break; sleep 0.1; done
id=$(job_id_from_err "$err")
jpid=$(cat "$jobs_dir/$id/pid" 2>/dev/null)
rm -rf "${jobs_dir:?}/$id"
wait "$pid"
check_eq "lost: run exits 4" 4 "$?" || show "$err"
[ -n "$jpid" ] && kill -TERM -- "-$jpid" 2>/dev/null
check_grep "lost: the headline says lost, and why" "^job $id lost: .*job directory" "$err"
"$PYSTRIB" -c "$BED_CONFIG" attach "$id" > /dev/null 2> "$BED_DIR/lost.attach.err"
check_eq "lost: attach exits 4 too" 4 "$?" || show "$BED_DIR/lost.attach.err"
check_grep "lost: attach says it is lost" "job '$id' is lost" "$BED_DIR/lost.attach.err"

# 7. docker: the host cannot pull (its registry address is closed): the
# registry's side (3), for run and attach alike.
closed=$(free_port)
PYSTRIB_REMOTE_PULL_REGISTRY=127.0.0.1:$closed expect_exit 3 \
	"$PYSTRIB" -c "$BED_CONFIG" run --no-project ok.py -n 1
id=$(job_id_from_err "$err")
check_grep "registry: the headline names the pull" "^job $id could not run: registry: " "$err"
check_grep "registry: a hint" "^hint: check that the host reaches the registry" "$err"
same_outcome "registry" 3 "$id"

# 8. docker: --gpus on a host that cannot give GPUs: refused before any job
# starts (4), naming what is missing, with a fix. (A job the host's runtime
# refuses GPUs to anyway ends with the code no-gpu: test_launch.)
njobs=$(find "$jobs_dir" -mindepth 1 -maxdepth 1 | wc -l)
expect_exit 4 "$PYSTRIB" -c "$BED_CONFIG" run --no-project ok.py -n 1 --gpus all
check_grep "no GPU runtime: says what is missing" "cannot give GPUs: it has no nvidia-smi" "$err"
check_grep "no GPU runtime: a hint" "^hint: " "$err"
check_no_grep "no GPU runtime: no job was started" "^pystrib: job " "$err"
check_eq "no GPU runtime: no job directory was made" "$njobs" \
	"$(find "$jobs_dir" -mindepth 1 -maxdepth 1 | wc -l)"
check_no_grep "no GPU runtime: no spurious warning about removing a container" \
	"could not remove container" "$err"

# 9. docker: an image without mpirun: 4, said so.
if check "an image without mpirun is built and pushed" push_image_without_mpirun; then
	PYSTRIB_IMAGE_BASE=$BED_REGISTRY/nompi:1 expect_exit 4 \
		"$PYSTRIB" -c "$BED_CONFIG" run --no-project ok.py -n 1
	id=$(job_id_from_err "$err")
	check_grep "no mpirun: said so" "the image has no 'mpirun'" "$err"
	same_outcome "no mpirun" 4 "$id"
fi
