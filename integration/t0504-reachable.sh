#!/usr/bin/env bash
# t0504: a job is reachable from anywhere once it is recorded. Jobs are
# started with `run --detach -c FILE` from a directory A (the bed's sshd,
# runtime none); then `attach`, `status`, `logs`, `fetch` and `cancel` reach
# them from a directory B with no -c and no ./pystrib.ini, after FILE is
# gone, and with an unrelated config (-c, or ./pystrib.ini in a directory C)
# whose hosts are elsewhere. A recorded identity that is gone is named.
# status gives each rank a state (exited N, running, killed by SIGNAME).
. "$(dirname "$0")/lib.sh"
bed_up sshd

A=$LIB_DIR/a B=$LIB_DIR/b C=$LIB_DIR/c
mkdir -p "$A" "$B" "$C"
cp "$BED_CONFIG" "$A/job.ini"
# Nothing else to find: no $PYSTRIB_CONFIG, no ~/.config/pystrib/config.ini.
check "no config in HOME" eval '[ ! -e "$XDG_CONFIG_HOME/pystrib/config.ini" ]'
nowhere=$(free_port)
cat > "$C/pystrib.ini" <<EOF
[remote]
host = 127.0.0.1
port = $nowhere
user = nobody
identity = $LIB_DIR/no-such-key
[remote.other]
runtime = none
EOF
cp "$C/pystrib.ini" "$B/other.ini"
P() { "$PYSTRIB" "$@"; }

cat > "$A/hello.py" <<'EOF'
import os
print("hello from rank", rank, flush=True)
with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "r%d.txt" % rank), "w") as f:
    f.write("result of rank %d\n" % rank)
EOF
cat > "$A/wait.py" <<'EOF'
import time
print("waiting", rank, flush=True)
time.sleep(120)
EOF

# 1. A finished job, from B with no config at all (FILE still there).
cd "$A" || exit 1
expect_exit 0 P -c "$A/job.ini" --json run --remote none --detach -n 2 hello.py
id=$(job_id_from_json "$out")
check "run --detach gives a job id" eval '[ -n "$id" ]' || show "$err"
cd "$B" || exit 1
expect_exit 0 P attach "$id"
check_grep "attach from B follows the job" -x "\[1\] hello from rank 1" "$out" || show "$err"
check_no_grep "attach from B: no 'no remote host'" "no remote host" "$err"
expect_exit 0 P status "$id"
check_grep "status from B says succeeded" "succeeded" "$out" "$err"
check_grep "status: a state column, rank 1 exited 0" "^1  *0  *[0-9].*  *exited 0$" "$out"
expect_exit 0 P logs "$id"
check_grep "logs from B print the ranks' output" -x "\[0\] hello from rank 0" "$out" || show "$err"
rm -rf "$A/pystrib-results"
expect_exit 0 P fetch "$id"
check_eq "fetch from B puts the results where the job's record says" "result of rank 1" \
	"$(cat "$A/pystrib-results/$id/results/r1.txt" 2>/dev/null)" || show "$err"
check "fetch from B writes nothing in B" eval '[ -z "$(ls -A "$B" | grep -v other.ini)" ]'

# 2. FILE gone: the record's own target.
mv "$A/job.ini" "$A/job.ini.away"
expect_exit 0 P status "$id"
check_grep "status with the job's config gone" "succeeded" "$out" "$err"
expect_exit 0 P -c "$B/other.ini" logs "$id"
check_grep "logs with an unrelated -c" -x "\[1\] hello from rank 1" "$out" || show "$err"
expect_exit 0 P -c "$B/other.ini" attach "$id"
check_grep "attach with an unrelated -c" -x "\[0\] hello from rank 0" "$out" || show "$err"
cd "$C" || exit 1
expect_exit 0 P status "$id"
check_grep "status with an unrelated ./pystrib.ini" "succeeded" "$out" "$err"
expect_exit 0 P fetch "$id" --results "$C/res"
check_eq "fetch with an unrelated ./pystrib.ini" "result of rank 0" \
	"$(cat "$C/res/results/r0.txt" 2>/dev/null)" || show "$err"

# 3. A running job cancelled from C, its config gone.
mv "$A/job.ini.away" "$A/job.ini"
cd "$A" || exit 1
expect_exit 0 P -c "$A/job.ini" --json run --remote none --detach -n 2 wait.py
id2=$(job_id_from_json "$out")
mv "$A/job.ini" "$A/job.ini.away"
cd "$C" || exit 1
for _ in $(seq 100); do
	[ "$(cat "$BED_DIR/remote/jobs/$id2/state" 2>/dev/null)" = running ] && break
	sleep 0.1
done
expect_exit 0 P status "$id2"
check_grep "status of a running job from C" "running" "$out" "$err"
check_grep "status: rank 1's state is running" "^1  *-  *-  *running$" "$out"
expect_exit 0 P cancel "$id2"
expect_exit 0 P status "$id2"
check_grep "status after cancel from C says cancelled" "cancelled" "$out" "$err"
check_grep "status: a cancelled rank's state says how it ended" "^0  .*  \(killed by SIG\|exited \|no exit code\)" "$out"

# 4. The recorded identity gone: said, with the file's name.
mv "$BED_SSH_KEY" "$BED_SSH_KEY.away"
cd "$B" || exit 1
expect_exit 2 P logs "$id"
check_grep "a gone identity is named" "identity file '$BED_SSH_KEY' is gone" "$err"
mv "$BED_SSH_KEY.away" "$BED_SSH_KEY"
expect_exit 0 P logs "$id"
