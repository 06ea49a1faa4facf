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

export HOME=$BED_DIR/home XDG_STATE_HOME=$BED_DIR/state
mkdir -p "$HOME"
unset SSH_AUTH_SOCK
out=$BED_DIR/last.out err=$BED_DIR/last.err
W=$BED_DIR/remote
P() { "$PYSTRIB" -c "$BED_CONFIG" "$@"; }
rsh() {
	ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" -o BatchMode=yes -o IdentitiesOnly=yes \
		-o UserKnownHostsFile="$BED_KNOWN_HOSTS" "$BED_SSH_USER@$BED_SSH_HOST" "$@"
}
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

remote_job "$A" succeeded 2 || fail "make job A"
rsh sh -s "$W/jobs/$A/results" "$BED_DIR/local/outside" <<'EOF' || fail "hostile results"
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
remote_job "$B" running 2 || fail "make job B"
record "$B" 2 submitted
remote_job "$C" succeeded 1 || fail "make job C"
record "$C" 1 running
record "$D" 1 running gone
remote_job "$E" running 1 || fail "make job E"
record "$E" 1 running

# 1. jobs: states from the remote, newest first.
rsh rm -rf "$W/jobs/$C"
expect_exit 0 P jobs
sed 's/^/    /' "$out"
grep -q "^$A .* succeeded " "$out" && ok "jobs: A succeeded (asked from the remote)" || fail "jobs A"
grep -q "^$B .* running " "$out" && ok "jobs: B running" || fail "jobs B"
grep -q "^$C .* lost " "$out" && ok "jobs: C, removed by hand, is lost" || fail "jobs C lost"
grep -q "^$D .* gone .*running? " "$out" && ok "jobs: D on an unconfigured remote: last known, marked" || fail "jobs D"
grep -q "gone.*no longer configured" "$err" && ok "jobs: names the unconfigured remote" || fail "jobs D note"
[ "$(grep -c '^2026' "$out")" -eq 5 ] && head -2 "$out" | grep -q "^$E" && ok "jobs: newest first" || fail "order"
grep -q '"state": "lost"' "$XDG_STATE_HOME/pystrib/jobs/$C.json" && ok "jobs: the record of C says lost" || fail "record C"

# 2. status.
expect_exit 0 P status "${A:0:18}"
grep -q "^state *succeeded" "$out" && grep -q "^1 *0 " "$out" && ok "status: state and per-rank exit codes" || { fail "status A"; cat "$out"; }
expect_exit 0 P status "$C"
grep -q "^state *lost (the job directory .* is gone)" "$out" && ok "status: lost, with the reason" || { fail "status C"; cat "$out"; }
expect_exit 2 P status "$D"
grep -q "job '$D' ran on remote 'gone', which is no longer configured" "$err" && ok "status: unconfigured remote named" || { fail "status D"; cat "$err"; }
expect_exit 2 P status 20261123-1
grep -q "ambiguous" "$err" && grep -q "$A" "$err" && grep -q "$E" "$err" && ok "ambiguous JOB: candidates listed" || { fail "ambiguous"; cat "$err"; }
expect_exit 2 P status 1999
grep -q "no job '1999'" "$err" && grep -q "$A" "$err" && ok "unknown JOB: known ones listed" || { fail "unknown"; cat "$err"; }
expect_exit 0 P status last
grep -q "^job *$E" "$out" && ok "status last: the newest" || fail "last"

# 2b. Every command that takes a JOB: unknown and ambiguous ids list the
#     candidates (exit 2), an unconfigured remote is named (exit 2), a
#     job whose directory is gone is lost with the reason (exit 4).
for cmd in status logs attach cancel fetch; do
	expect_exit 2 P "$cmd" 1999
	grep -q "no job '1999'" "$err" && grep -q "$A" "$err" || fail "$cmd: unknown JOB message"
	expect_exit 2 P "$cmd" 20261123-1
	grep -q "ambiguous" "$err" && grep -q "$B" "$err" || fail "$cmd: ambiguous JOB message"
	expect_exit 2 P "$cmd" "$D"
	grep -q "remote 'gone', which is no longer configured" "$err" || fail "$cmd: unconfigured remote"
done
for cmd in logs attach; do
	expect_exit 4 P "$cmd" "${C:0:17}"
	grep -q "job '$C' is lost: the job directory .* is gone" "$err" || { fail "$cmd: lost"; cat "$err"; }
done
ok "bad JOB arguments: the same errors from status, logs, attach, cancel, fetch"

# 2c. A job directory removed by hand while attach follows it: lost, with
#     the reason, exit 4; the record says so.
F=20261123-100500-f6f6f6
remote_job "$F" running 1 || fail "make job F"
record "$F" 1 running
P attach "$F" > "$BED_DIR/f.out" 2> "$BED_DIR/f.err" &
apid=$!
for _ in $(seq 100); do grep -q "rank 0 line 2" "$BED_DIR/f.out" && break; sleep 0.1; done
fpid=$(cat "$W/jobs/$F/pid")
rsh rm -rf "$W/jobs/$F"
wait "$apid"
code=$?
kill -TERM -- "-$fpid" 2>/dev/null || true
[ "$code" -eq 4 ] && grep -q "job $F lost: the job directory was removed" "$BED_DIR/f.err" \
	&& ok "attach: directory removed meanwhile: lost, with the reason, exit 4" || { fail "attach F exit $code"; cat "$BED_DIR/f.err"; }
grep -q '"state": "lost"' "$XDG_STATE_HOME/pystrib/jobs/$F.json" && ok "attach: the record of F says lost" || fail "record F"
grep -q "could not fetch" "$BED_DIR/f.err" && fail "attach F: tried to fetch a directory that is gone"

# 3. fetch: the hostile results.
mkdir -p "$BED_DIR/local/outside"
echo secret > "$BED_DIR/local/outside/victim"
before=$(cd "$BED_DIR/local" && find . -path ./res -prune -o -print | sort; md5sum /etc/passwd)
expect_exit 0 P fetch "$A" --results "$BED_DIR/local/res"
after=$(cd "$BED_DIR/local" && find . -path ./res -prune -o -print | sort; md5sum /etc/passwd)
[ "$before" = "$after" ] && ok "fetch: nothing landed outside the results directory" || fail "something outside changed"
[ "$(cat "$BED_DIR/local/outside/victim")" = secret ] && ok "fetch: the file outside is intact" || fail "victim"
R=$BED_DIR/local/res
[ "$(cat "$R/results/ok.txt")" = good ] && [ "$(cat "$R/results/sub/deep.txt")" = nested ] \
	&& [ "$(cat "$R/results/inside-link")" = good ] && [ "$(cat "$R/results/hard.txt")" = good ] \
	&& ok "fetch: files, an inside symlink and a hard link arrive" || fail "good files"
[ "$(cat "$R/logs/rank.1.out")" = "$(printf 'rank 1 line 1\nrank 1 line 2')" ] && ok "fetch: per-rank logs arrive" || fail "logs"
for bad in abs-link up-link abs-outside twisty fifo null; do
	if [ -e "$R/results/$bad" ] || [ -L "$R/results/$bad" ]; then fail "fetch: '$bad' was unpacked"; fi
	grep -q "skipped 'results/$bad'" "$err" || fail "fetch: no warning names '$bad'"
done
ok "fetch: each hostile entry refused and named"
grep -q "\"results\": \"$R\"" "$XDG_STATE_HOME/pystrib/jobs/$A.json" && ok "fetch: the record has the results path" || fail "record results"
expect_exit 4 P fetch "$C"
grep -q "job '$C' is lost" "$err" && ok "fetch of a lost job: a clear error" || { fail "fetch C"; cat "$err"; }
( cd "$BED_DIR/local" && P --json fetch "$A" > "$BED_DIR/json.out" 2>/dev/null )
grep -q "^{\"event\": *\"results\", *\"path\": *\"$R\"}" "$BED_DIR/json.out" \
	&& ok "fetch --json: a results event, the record's path reused" || { fail "json"; cat "$BED_DIR/json.out"; }

# 4. sshd unreachable: last known state, marked; nothing fails.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PYSTRIB_REMOTE_PORT=$port expect_exit 0 P jobs
grep -q "^$B .* running? " "$out" && grep -q "cannot reach" "$err" && ok "jobs, host down: last known state marked, reason given" || { fail "stale"; cat "$out" "$err"; }
PYSTRIB_REMOTE_PORT=$port expect_exit 4 P status "$B"
grep -q "last known" "$out" && ok "status, host down: last known state, exit 4" || fail "status stale"

# 5. cancel the running job for real.
pgid=$(cat "$W/jobs/$B/pid")
kill -0 "$pgid" 2>/dev/null && ok "B's process lives" || fail "B not running"
expect_exit 0 P cancel "$B"
grep -q "job $B cancelled" "$out" && ok "cancel: said" || { fail "cancel"; cat "$out" "$err"; }
sleep 0.2
kill -0 "$pgid" 2>/dev/null && fail "cancel: the process is still alive" || ok "cancel: the process group is gone"
[ "$(cat "$W/jobs/$B/state")" = cancelled ] && ok "cancel: remote state cancelled" || fail "state file"
expect_exit 0 P cancel "$B"
grep -q "already ended: cancelled" "$out" && ok "cancel again: already ended" || fail "cancel twice"

# 6. gc: never a running job; ended ones removed with their directories.
expect_exit 0 P gc --older-than 1
grep -q "^0 jobs removed" "$out" && ok "gc --older-than 1: nothing that young" || { fail "gc young"; cat "$out"; }
expect_exit 0 P gc --older-than 0 --dry-run
[ -d "$W/jobs/$A" ] && grep -q "would remove $A" "$out" && ok "gc --dry-run removes nothing" || fail "dry run"
expect_exit 0 P gc --older-than 0
for j in "$A" "$B" "$C" "$F"; do
	[ ! -e "$W/jobs/$j" ] && [ ! -e "$XDG_STATE_HOME/pystrib/jobs/$j.json" ] || fail "gc: $j remains"
done
ok "gc: ended and lost jobs removed, remote and local"
grep -q "^[0-9]* cached layers\{0,1\} ([0-9.]* MiB) removed from '.*/pystrib/layers'" "$out" \
	&& ok "gc: says what it pruned from the local layer cache" || { fail "gc: layer cache line"; cat "$out"; }
[ -d "$W/jobs/$E" ] && [ -e "$XDG_STATE_HOME/pystrib/jobs/$E.json" ] && ok "gc: the running job is kept" || fail "gc removed a running job"
[ -e "$XDG_STATE_HOME/pystrib/jobs/$D.json" ] && grep -q "kept job '$D' (last known running)" "$err" \
	&& ok "gc: a job on an unconfigured remote, last known running, is kept, with a warning" || fail "gc D"
[ -e "$R/results/ok.txt" ] && ok "gc: fetched results untouched" || fail "local results removed"
kill -TERM -- "-$(cat "$W/jobs/$E/pid")" 2>/dev/null || true
