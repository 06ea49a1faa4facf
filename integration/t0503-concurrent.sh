#!/usr/bin/env bash
# t0503: several pystrib processes at once, as two notebook cells and a CI
# job beside a shell would run them, against the bed's real sshd (runtime
# none): 6 `run --detach` in parallel while `jobs` lists and refreshes the
# records over and over; then `status` of every job at once, twice over,
# while the jobs end. Every local record stays valid JSON with its own id,
# none is lost, no temporary file is left, each job ran its own cell; `last`
# is the newest submission.
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
K=6

for k in $(seq $K); do
	cat > "cell$k.py" <<EOF
import time
print("cell $k rank", rank, flush=True)
time.sleep(2)
EOF
done

# Every record: valid JSON, the id its file name says, the fields run wrote.
check_records() {
	"$PY" - "$recs" "$@" <<'EOF'
import json, os, sys
d, want = sys.argv[1], int(sys.argv[2])
names = sorted(os.listdir(d))
files = [n for n in names if n.endswith(".json") and not n.startswith(".")]
stray = [n for n in names if n not in files and n != ".lock"]
assert not stray, "temporary files left: %s" % stray
assert len(files) == want, "%d records, not %d: %s" % (len(files), want, files)
ids = set()
for n in files:
    with open(os.path.join(d, n)) as f:
        r = json.load(f)
    assert r["id"] + ".json" == n, (n, r.get("id"))
    assert r["np"] == 1 and r["runtime"] == "none" and r["remote"] == "none", r
    assert r["cell"].startswith("cell") and r["state"], r
    ids.add(r["id"])
assert len(ids) == want
EOF
}

# 1. K submissions at once, `jobs` beside them.
pids=()
for k in $(seq $K); do
	P run --remote none "cell$k.py" -n 1 --detach > "sub$k.out" 2> "sub$k.err" &
	pids+=($!)
done
lister_fail=0
for i in $(seq 8); do
	P jobs --all > "jobs$i.out" 2> "jobs$i.err" || lister_fail=$((lister_fail + 1))
done &
lister=$!
bad=0
for k in $(seq $K); do
	wait "${pids[$((k - 1))]}" || { bad=$((bad + 1)); sed 's/^/#   /' "sub$k.err"; }
done
wait "$lister"
check_eq "$K concurrent 'run --detach': all exit 0 (submissions failed)" 0 "$bad"
cat jobs*.err > listers.err
check_no_grep "'jobs' beside them: no error, no warning" "pystrib: " listers.err || show listers.err
ids=$(cat sub*.out | sort)
check "$K distinct job ids printed" eval \
	'[ "$(echo "$ids" | grep -c .)" -eq "$K" ] && [ "$(echo "$ids" | sort -u | grep -c .)" -eq "$K" ]' ||
	echo "#   ids: $ids"
check "$K records, each valid JSON with its own id, no temporary file" check_records "$K"
for k in $(seq $K); do
	id=$(cat "sub$k.out")
	check_grep "each record names its own cell: cell$k" "\"cell\": \"cell$k.py\"" "$recs/$id.json"
done

# 2. While they run: `status` of every job at once, twice (each refreshes
#    its record under the lock), and `jobs` beside.
for round in 1 2; do
	pids=()
	for id in $ids; do
		P status "$id" > "st-$round-$id.out" 2> "st-$round-$id.err" &
		pids+=($!)
	done
	P jobs --all > "jobs-r$round.out" 2> "jobs-r$round.err" &
	pids+=($!)
	bad=0
	for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
	check_eq "round $round: $K 'status' and a 'jobs' at once, all exit 0 (failed)" 0 "$bad" ||
		show st-"$round"-*.err "jobs-r$round.err"
	check "round $round: records" check_records "$K"
	sleep 1.5
done

# 3. Every job ends; each ran its own cell; jobs shows them all succeeded.
for id in $ids; do
	for _ in $(seq 900); do
		[ "$(cat "$jobs_dir/$id/state" 2>/dev/null)" = succeeded ] && break
		sleep 0.1
	done
done
expect_exit 0 P jobs --all
check_eq "jobs: all $K succeeded" "$K" "$(grep -c " succeeded " "$out")" || show "$out"
for k in $(seq $K); do
	id=$(cat "sub$k.out")
	check_grep "each job ran its own cell: cell$k" -x "cell $k rank 0" "$jobs_dir/$id/logs/rank.0.out"
	check_grep "every record says succeeded: cell$k's" '"state": "succeeded"' "$recs/$id.json"
done
check "records still valid after the refreshes" check_records "$K"

# 4. `last` is the newest submission (the records' creation times; ids of
#    the same second sort by their random part, not by time).
newest=$("$PY" -c '
import json, os, sys
d = sys.argv[1]
rs = [json.load(open(os.path.join(d, n))) for n in os.listdir(d) if n.endswith(".json")]
print(max(rs, key=lambda r: (r["created"], r["id"]))["id"])' "$recs")
expect_exit 0 P status last
check_grep "status last: the newest submission ($newest)" "^job *$newest" "$out"
P --json jobs --all > jobs.json 2>/dev/null
check "jobs: newest first by submission time" "$PY" - jobs.json <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
created = [r["created"] for r in rows if r["event"] == "job"]
assert created == sorted(created, reverse=True), created
EOF
