#!/usr/bin/env bash
# t0405: the remote host's failures are told apart from the cell's, with
# exit 4 and what to do: a full disk (the remote workdir on a small tmpfs,
# full before the job, or filled by the cell), and a command the job needs
# that is not installed there (runtime none with a python that does not
# exist; docker/podman/mpirun missing from PATH are in tests/unit/test_launch.c,
# an image without mpirun in t0402).
. "$(dirname "$0")/lib.sh"
bed_up sshd

export PYSTRIB_REMOTE_PYTHON=/usr/bin/python3 PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe
small=$BED_DIR/small
mkdir -p "$small"
mount -t tmpfs -o size=512k tmpfs "$small" 2>/dev/null || skip_all "cannot mount a tmpfs here"
unmount_small() { umount -l "$small" 2>/dev/null; }
cleanup unmount_small
work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
run() { "$PYSTRIB" -c "$BED_CONFIG" run --remote none --no-project "$@"; }
printf 'print("hello from", rank)\n' > hello.py

# 1. The disk is full before the job: nothing runs, exit 4, said so.
head -c 1M /dev/zero > "$small/fill" 2>/dev/null
PYSTRIB_REMOTE_WORKDIR=$small/w expect_exit 4 run hello.py -n 2
check_grep "full disk before the job: said so" -i "disk.*full\|no space left" "$err"
rm -f "$small/fill"

# 2. The cell fills the disk: exit 4 (not 1), the traceback, and the hint.
cat > filler.py <<'EOF'
import os
with open(os.path.join(os.environ["PYSTRIB_RESULTS"], "big%d" % rank), "wb") as f:
    f.write(b"x" * (4 << 20))
EOF
PYSTRIB_REMOTE_WORKDIR=$small/w expect_exit 4 run filler.py -n 2
# Whether the rank's traceback could still be written depends on what
# filled the disk first; the verdict may not.
check_grep "cell filled the disk: said so" -i "no space left on device" "$err"
check_grep "cell filled the disk: the hint says what to do" "^hint: free some space on the host" "$err"

# 3. A command the job needs is missing on the host: exit 4, which one.
PYSTRIB_REMOTE_PYTHON=/opt/no/such/python3 expect_exit 4 run hello.py -n 2
check_grep "missing python: named" "'/opt/no/such/python3' is not installed on this host" "$err"
check_grep "missing python: the hint" "^hint: install it there" "$err"
