#!/usr/bin/env bash
# t0501: the jobs commands (jobs, status, fetch, cancel, gc, JOB resolution)
# against the real sshd, on job directories made by hand over ssh in the
# layout of docs/remote-job.md, with local records beside them:
# - a finished job whose results/ holds what a hostile cell can make on a
#   real filesystem (symlinks out, absolute symlinks, a device, a fifo):
#   fetch unpacks the good files, names each refused entry, lands nothing
#   outside the results directory;
# - a running job (a live process group): shown running, cancelled for real;
# - a job directory removed by hand: 'lost' with the reason;
# - a job on a remote no longer configured: a clear error naming it;
# - sshd unreachable: the last known state, marked; gc keeps running jobs.
. "$(dirname "$0")/lib.sh"
bed_up sshd

export XDG_STATE_HOME=$BED_DIR/state
W=$BED_DIR/remote
P() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
rsh() { bed_ssh "$@"; }
now=$(date +%s)

# A local record, as `pystrib run` writes it. $4: remote name or "".
record() {
	local id=$1 np=$2 state=$3 remote=${4:-} created=${5:-$now}
	mkdir -p "$XDG_STATE_HOME/pystrib/jobs"
	{
		printf '{"id": "%s", "np": %d, "state": "%s", "created": %s,' "$id" "$np" "$state" "$created"
		[ -n "$remote" ] && printf ' "remote": "%s",' "$remote"
		printf ' "jobdir": "%s/jobs/%s", "runtime": "none",' "$W" "$id"
		printf ' "image": "127.0.0.1:5000/cells:t0501@sha256:%064d"}\n' 0
	} > "$XDG_STATE_HOME/pystrib/jobs/$id.json"
}

# A job directory on the remote, made over ssh. $2: state, $3: np.
remote_job() {
	local id=$1 state=$2 np=$3
	rsh sh -s "$W/jobs/$id" "$id" "$state" "$np" "$((now - 100))" "$((now - 40))" <<'EOF'
set -e
d=$1 id=$2 state=$3 np=$4 started=$5 ended=$6
mkdir -p "$d/logs" "$d/results"
cd "$d"
printf '{"id":"%s","np":%s,"runtime":"none"}\n' "$id" "$np" > job.json
echo "$started" > started
i=0
while [ "$i" -lt "$np" ]; do
	printf 'rank %s line 1\nrank %s line 2\n' "$i" "$i" > "logs/rank.$i.out"
	printf 'rank %s warning\n' "$i" > "logs/rank.$i.err"
	i=$((i + 1))
done
case $state in
running)
	setsid sleep 300 < /dev/null > /dev/null 2>&1 &
	echo $! > pid
	;;
*)
	i=0
	while [ "$i" -lt "$np" ]; do echo 0 > "logs/rank.$i.exit"; i=$((i + 1)); done
	echo 0 > exit
	echo "$ended" > ended
	;;
esac
echo "$state" > state
EOF
}

A=20261123-100000-a1a1a1	# succeeded, hostile results
B=20261123-100100-b2b2b2	# running
C=20261123-100200-c3c3c3	# its directory removed by hand
D=20261123-100300-d4d4d4	# on a remote that is no longer configured
E=20261123-100400-e5e5e5	# running, kept by gc

check "make job A" remote_job "$A" succeeded 2
check "hostile results made in A" rsh sh -s "$W/jobs/$A/results" "$BED_DIR/local/outside" <<'EOF'
set -e
cd "$1"
echo good > ok.txt
mkdir -p sub && echo nested > sub/deep.txt
ln -s ok.txt inside-link
ln -s /etc/passwd abs-link
ln -s ../../../../../../../../local/outside up-link
ln -s "$2" abs-outside
ln -s sub/../../../.. twisty
mkfifo fifo
mknod null c 1 3
ln ok.txt hard.txt
EOF
record "$A" 2 running
check "make job B" remote_job "$B" running 2
record "$B" 2 submitted
check "make job C" remote_job "$C" succeeded 1
record "$C" 1 running
record "$D" 1 running gone
check "make job E" remote_job "$E" running 1
record "$E" 1 running

# 1. jobs: states from the remote, newest first.
rsh rm -rf "$W/jobs/$C"
expect_exit 0 P jobs
sed 's/^/#   /' "$out"
check_grep "jobs: A succeeded (asked from the remote)" "^$A .* succeeded " "$out"
check_grep "jobs: B running" "^$B .* running " "$out"
check_grep "jobs: C, removed by hand, is lost" "^$C .* lost " "$out"
check_grep "jobs: D on an unconfigured remote: last known, marked" "^$D .* gone .*running? " "$out"
check_grep "jobs: names the unconfigured remote" "gone.*no longer configured" "$err"
check "jobs: newest first" eval '[ "$(grep -c "^2026" "$out")" -eq 5 ] && head -2 "$out" | grep -q "^$E"'
check_grep "jobs: the record of C says lost" '"state": "lost"' "$XDG_STATE_HOME/pystrib/jobs/$C.json"

# 2. status.
expect_exit 0 P status "${A:0:18}"
check "status: state and per-rank exit codes" eval 'grep -q "^state *succeeded" "$out" && grep -q "^1 *0 " "$out"' ||
	show "$out"
expect_exit 0 P status "$C"
check_grep "status: lost, with the reason" "^state *lost (the job directory .* is gone)" "$out"
expect_exit 2 P status "$D"
check_grep "status: unconfigured remote named" "job '$D' ran on remote 'gone', which is no longer configured" "$err"
expect_exit 2 P status 20261123-1
check "ambiguous JOB: candidates listed" eval \
	'grep -q "ambiguous" "$err" && grep -q "$A" "$err" && grep -q "$E" "$err"' || show "$err"
expect_exit 2 P status 1999
check "unknown JOB: known ones listed" eval 'grep -q "no job '"'"'1999'"'"'" "$err" && grep -q "$A" "$err"' || show "$err"
expect_exit 0 P status last
check_grep "status last: the newest" "^job *$E" "$out"

# 2b. Every command that takes a JOB: unknown and ambiguous ids list the
#     candidates (exit 2), an unconfigured remote is named (exit 2), a
#     job whose directory is gone is lost with the reason (exit 4).
for cmd in status logs attach cancel fetch; do
	expect_exit 2 P "$cmd" 1999
	check "bad JOB arguments: $cmd: unknown JOB, the known ones listed" eval \
		'grep -q "no job '"'"'1999'"'"'" "$err" && grep -q "$A" "$err"' || show "$err"
	expect_exit 2 P "$cmd" 20261123-1
	check "bad JOB arguments: $cmd: ambiguous JOB, the candidates listed" eval \
		'grep -q "ambiguous" "$err" && grep -q "$B" "$err"' || show "$err"
	expect_exit 2 P "$cmd" "$D"
	check_grep "bad JOB arguments: $cmd: unconfigured remote named" \
		"remote 'gone', which is no longer configured" "$err"
done
for cmd in logs attach; do
	expect_exit 4 P "$cmd" "${C:0:17}"
	check_grep "bad JOB arguments: $cmd: a lost job, with the reason" \
		"job '$C' is lost: the job directory .* is gone" "$err"
done

# 2c. A job directory removed by hand while attach follows it: lost, with
#     the reason, exit 4; the record says so.
F=20261123-100500-f6f6f6
check "make job F" remote_job "$F" running 1
record "$F" 1 running
P attach "$F" > "$BED_DIR/f.out" 2> "$BED_DIR/f.err" &
apid=$!
for _ in $(seq 100); do grep -q "rank 0 line 2" "$BED_DIR/f.out" && break; sleep 0.1; done
fpid=$(cat "$W/jobs/$F/pid")
rsh rm -rf "$W/jobs/$F"
wait "$apid"
code=$?
kill -TERM -- "-$fpid" 2>/dev/null || true
check "attach: directory removed meanwhile: lost, with the reason, exit 4" eval \
	'[ "$code" -eq 4 ] && grep -q "job $F lost: the job directory was removed" "$BED_DIR/f.err"' ||
	{ echo "#   exit $code"; show "$BED_DIR/f.err"; }
check_grep "attach: the record of F says lost" '"state": "lost"' "$XDG_STATE_HOME/pystrib/jobs/$F.json"
check_no_grep "attach F: no fetch tried of a directory that is gone" "could not fetch" "$BED_DIR/f.err"

# 3. fetch: the hostile results.
mkdir -p "$BED_DIR/local/outside"
echo secret > "$BED_DIR/local/outside/victim"
before=$(cd "$BED_DIR/local" && find . -path ./res -prune -o -print | sort; md5sum /etc/passwd)
expect_exit 0 P fetch "$A" --results "$BED_DIR/local/res"
after=$(cd "$BED_DIR/local" && find . -path ./res -prune -o -print | sort; md5sum /etc/passwd)
check_eq "fetch: nothing landed outside the results directory" "$before" "$after"
check_eq "fetch: the file outside is intact" secret "$(cat "$BED_DIR/local/outside/victim")"
R=$BED_DIR/local/res
check "fetch: files, an inside symlink and a hard link arrive" eval \
	'[ "$(cat "$R/results/ok.txt")" = good ] && [ "$(cat "$R/results/sub/deep.txt")" = nested ] &&
	[ "$(cat "$R/results/inside-link")" = good ] && [ "$(cat "$R/results/hard.txt")" = good ]'
check_eq "fetch: per-rank logs arrive" "$(printf 'rank 1 line 1\nrank 1 line 2')" "$(cat "$R/logs/rank.1.out")"
for bad in abs-link up-link abs-outside twisty fifo null; do
	check "fetch: hostile entry '$bad' not unpacked" eval '[ ! -e "$R/results/$bad" ] && [ ! -L "$R/results/$bad" ]'
	check_grep "fetch: hostile entry '$bad' named in a warning" "skipped 'results/$bad'" "$err"
done
check_grep "fetch: the record has the results path" "\"results\": \"$R\"" "$XDG_STATE_HOME/pystrib/jobs/$A.json"
expect_exit 4 P fetch "$C"
check_grep "fetch of a lost job: a clear error" "job '$C' is lost" "$err"
( cd "$BED_DIR/local" && P --json fetch "$A" > "$BED_DIR/json.out" 2>/dev/null )
check_grep "fetch --json: a results event, the record's path reused" \
	"^{\"event\": *\"results\", *\"path\": *\"$R\"}" "$BED_DIR/json.out"

# 4. sshd unreachable: last known state, marked; nothing fails.
port=$(free_port)
PYSTRIB_REMOTE_PORT=$port expect_exit 0 P jobs
check "jobs, host down: last known state marked, reason given" eval \
	'grep -q "^$B .* running? " "$out" && grep -q "cannot reach" "$err"' || show "$out" "$err"
PYSTRIB_REMOTE_PORT=$port expect_exit 4 P status "$B"
check_grep "status, host down: last known state, exit 4" "last known" "$out"

# 5. cancel the running job for real.
pgid=$(cat "$W/jobs/$B/pid")
check "B's process lives" kill -0 "$pgid"
expect_exit 0 P cancel "$B"
check_grep "cancel: said" "job $B cancelled" "$out" || show "$err"
sleep 0.2
check "cancel: the process group is gone" eval '! kill -0 "$pgid" 2>/dev/null'
check_eq "cancel: remote state cancelled" cancelled "$(cat "$W/jobs/$B/state")"
expect_exit 0 P cancel "$B"
check_grep "cancel again: already ended" "already ended: cancelled" "$out"

# 6. gc: never a running job; ended ones removed with their directories.
expect_exit 0 P gc --older-than 1
check_grep "gc --older-than 1: nothing that young" "^0 jobs removed" "$out"
expect_exit 0 P gc --older-than 0 --dry-run
check "gc --dry-run removes nothing" eval '[ -d "$W/jobs/$A" ] && grep -q "would remove $A" "$out"' || show "$out"
expect_exit 0 P gc --older-than 0
for j in "$A" "$B" "$C" "$F"; do
	check "gc: ended and lost jobs removed, remote and local: $j" eval \
		'[ ! -e "$W/jobs/$j" ] && [ ! -e "$XDG_STATE_HOME/pystrib/jobs/$j.json" ]'
done
check_grep "gc: says what it pruned from the local layer cache" \
	"^[0-9]* cached layers\{0,1\} ([0-9.]* MiB) removed from '.*/pystrib/layers'" "$out"
check "gc: the running job is kept" eval '[ -d "$W/jobs/$E" ] && [ -e "$XDG_STATE_HOME/pystrib/jobs/$E.json" ]'
check "gc: a job on an unconfigured remote, last known running, is kept, with a warning" eval \
	'[ -e "$XDG_STATE_HOME/pystrib/jobs/$D.json" ] && grep -q "kept job '"'"'$D'"'"' (last known running)" "$err"' ||
	show "$err"
check "gc: fetched results untouched" test -e "$R/results/ok.txt"
kill -TERM -- "-$(cat "$W/jobs/$E/pid")" 2>/dev/null || true
