#!/usr/bin/env bash
# bench/run-slurm.sh PYSTRIB_BINARY: `pystrib run` under Slurm side by side
# with what a Slurm user types today, on the bed's real Slurm (slurmctld and
# two slurmd nodes on this machine) reached through the bed's sshd (not a
# test: nothing here passes or fails; figures are medians of ROUNDS,
# default 3).
#
# The same NP-rank (default 4, over both nodes) mpi4py cell, runtime none,
# the same Python (Debian's /usr/bin/python3 and Open MPI's mpi4py), and
# then (where podman is installed; PODMAN=0 skips it) runtime podman, the
# bed's base image (Debian, python3, mpi4py) already on the nodes:
#   hand    ssh HOST 'sbatch --parsable hand.sbatch, then tail -F of its
#           output file': a hand-written batch script, cell.py already in
#           the shared directory, `srun --mpi=pmix python3 -u cell.py`
#           (tail -s 0.05: tail -F looks for a file not there yet once a
#           second, which would cost the hand-written side up to 1 s).
#   pystrib pystrib run cell.py -n NP ([remote] scheduler = slurm): the
#           job directory and its files over SSH, sbatch, srun --mpi=pmix
#           of the cell in bootstrap.py, the output followed.
#   hand, podman   the same batch script, its srun running a task script
#           per rank: `podman run --rm` of the base image with host network,
#           IPC, PIDs and user namespace, PMIX_SERVER_TMPDIR and the shared
#           directory mounted, -e of every PMIX_/OMPI_/SLURM_ variable.
#   pystrib, podman   pystrib run --remote spod (runtime podman): also the
#           cell's image pushed, the pull step on every node (the image is
#           there: a look each), one container per task, the rm step.
# Measured: from the command's start to the first line of the cell's output
# on this side (a Slurm job's start is mostly Slurm's: the controller's
# scheduling pass and two slurmd's step launch), and to its end (pystrib
# also brings results back). Ratio pystrib/hand of the first line (target
# <= 1.1), the median of the rounds' own ratios (the machine's load drifts),
# and the absolute difference.
#
# Rows for bench/run go to stdout as "ROW<TAB>bench<TAB>measure<TAB>value<TAB>unit";
# everything else goes to stderr.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: bench/run-slurm.sh PYSTRIB_BINARY" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
ROUNDS=${ROUNDS:-3}
NP=${NP:-4}
PY=/usr/bin/python3
say() { echo "bench/run-slurm: $*" >&2; }
command -v slurmctld >/dev/null 2>&1 || { say "no slurmctld (scripts/install-deps.sh installs slurm-wlm)"; exit 1; }

# shellcheck source=bench/lib.sh
. "$here/lib.sh"
PODMAN=${PODMAN:-1}
command -v podman >/dev/null 2>&1 || PODMAN=0
services=(slurm sshd)
[ "$PODMAN" = 0 ] || services=(registry podman base slurm sshd)
bench_bed "${services[@]}"
export SLURM_CONF=$BED_SLURM_CONF
cat >> "$BED_CONFIG" <<EOF
[remote.slurm]
runtime = none
python = $PY
scheduler = slurm
[remote.spod]
runtime = podman
scheduler = slurm
EOF
SSH=(ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" -o BatchMode=yes -o IdentitiesOnly=yes
	-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BED_KNOWN_HOSTS" "$BED_SSH_USER@$BED_SSH_HOST")
want="sum $((NP * (NP + 1) / 2))"

# The hand-written side's directory: the bed's login host is this machine,
# its nodes share its filesystem.
hand=$BED/hand
work=$BED/work
mkdir -p "$hand" "$work"
cat > "$work/cell.py" <<'EOF'
from mpi4py import MPI
c = MPI.COMM_WORLD
print("rank", c.rank, "sum", c.allreduce(c.rank + 1))
EOF
cp "$work/cell.py" "$hand/cell.py"
cat > "$hand/hand.sbatch" <<EOF
#!/bin/sh
#SBATCH --job-name=hand
#SBATCH --ntasks=$NP
#SBATCH --output=hand.%j.out
srun --mpi=pmix $PY -u cell.py
EOF
# With podman: a task script per rank, what Slurm users with containers
# write (PMIx's contact and rendezvous directory passed in by hand).
cat > "$hand/task-podman.sh" <<EOF
#!/bin/sh
exec podman run --rm --network host --ipc host --pid host --userns host \\
	-v "\$PWD:\$PWD" -w "\$PWD" -v "\$PMIX_SERVER_TMPDIR:\$PMIX_SERVER_TMPDIR" \\
	\$(env | grep -oE '^(PMIX|OMPI|SLURM)_[A-Za-z0-9_]*' | sed 's/^/-e /') \\
	-e OMPI_ALLOW_RUN_AS_ROOT=1 -e OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \\
	${BED_BASE:-none} python3 -u cell.py
EOF
sed 's|^srun --mpi=pmix .*|srun --mpi=pmix sh task-podman.sh|' "$hand/hand.sbatch" > "$hand/hand-podman.sbatch"
# What the user types: submit, then follow the output file to the job's end.
HAND="cd '$hand' && j=\$(sbatch --parsable hand.sbatch) || exit 1
j=\${j%%;*}
sbatch_wait() { while squeue -h -j \"\$j\" -o %T 2>/dev/null | grep -q .; do sleep 0.2; done; }
sbatch_wait & w=\$!
tail -s 0.05 -n +1 -F --pid=\$w hand.\$j.out 2>/dev/null
exit 0"

# timed CMD...: runs CMD, prints "FIRST TOTAL" (seconds from its start to
# its first line of stdout, and to its end), its stdout to $BED/t.out.
timed() {
	$PY - "$BED/t.out" "$@" <<'EOF'
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=open(sys.argv[1] + ".err", "w"))
first = p.stdout.readline()
t1 = time.monotonic()
rest = p.stdout.read()
rc = p.wait()
t2 = time.monotonic()
open(sys.argv[1], "wb").write(first + rest)
if rc != 0 or not first:
    sys.exit(1)
print("%.3f %.3f" % (t1 - t0, t2 - t0))
EOF
}

hand_run() {	# hand_run [podman]
	local t cmd=$HAND
	[ "${1:-}" != podman ] || cmd=${HAND//hand.sbatch/hand-podman.sbatch}
	t=$(timed "${SSH[@]}" "$cmd") || { say "the hand-written job failed"; cat "$BED/t.out" "$BED/t.out.err" >&2; exit 1; }
	[ "$(grep -c "$want" "$BED/t.out")" -eq "$NP" ] || { say "hand: not $NP sums"; cat "$BED/t.out" >&2; exit 1; }
	echo "$t"
}

pystrib_run() {	# pystrib_run [REMOTE]
	local t
	t=$(cd "$work" && timed "$PYSTRIB" -c "$BED_CONFIG" run --remote "${1:-slurm}" cell.py -n "$NP" --results "$BED/res") ||
		{ say "pystrib run failed"; cat "$BED/t.out" "$BED/t.out.err" >&2; exit 1; }
	[ "$(grep -c "$want" "$BED/t.out")" -eq "$NP" ] || { say "pystrib: not $NP sums"; cat "$BED/t.out" >&2; exit 1; }
	rm -rf "$BED/res"
	echo "$t"
}

# rounds TSV [podman]: the rounds of hand and pystrib, side by side.
rounds() {
	local tsv=$1 mode=${2:-} remote=slurm h p
	[ -z "$mode" ] || remote=spod
	: > "$tsv"
	[ -n "$(hand_run $mode)" ] || exit 1		# warm-up: Slurm's and the page cache's
	[ -n "$(pystrib_run $remote)" ] || exit 1	# warm-up: the layers, or the image, on the host
	for round in $(seq "$ROUNDS"); do
		h=$(hand_run $mode)
		p=$(pystrib_run $remote)
		[ -n "$h" ] && [ -n "$p" ] || exit 1
		printf '%s %s\n' "$h" "$p" | tr ' ' '\t' >> "$tsv"
		say "${mode:-none} round $round: hand first line/end ${h/ //} s, pystrib ${p/ //} s"
	done
}

# rows TSV LABEL: the figures of rounds' TSV for bench/run.
rows() {
	$PY - "$1" "$NP" "$2" <<'EOF'
import statistics, sys
rows = [[float(x) for x in l.split("\t")] for l in open(sys.argv[1]).read().split("\n") if l]
med = lambda i: statistics.median(r[i] for r in rows)
def row(m, v, u): print("ROW\tslurm-run\t%s\t%s\t%s" % (m, v, u))
n, what = sys.argv[2], sys.argv[3]
row("hand sbatch+srun --mpi=pmix%s, %s ranks: first line, median" % (what, n), "%.2f" % med(0), "s")
row("pystrib run --remote slurm%s, %s ranks: first line, median" % (what, n), "%.2f" % med(2), "s")
row("pystrib / hand%s, first line (target <= 1.1), median of rounds" % what, "%.2f" % statistics.median(r[2] / r[0] for r in rows), "x")
row("pystrib - hand%s, first line, median of rounds" % what, "%.2f" % statistics.median(r[2] - r[0] for r in rows), "s")
row("hand%s: to the job's end, median" % what, "%.2f" % med(1), "s")
row("pystrib%s: to the job's end (results back), median" % what, "%.2f" % med(3), "s")
EOF
}

say "one SSH round trip: $(timed "${SSH[@]}" echo x | cut -d' ' -f1) s"
rounds "$BED/slurm.tsv"
rows "$BED/slurm.tsv" ""
if [ "$PODMAN" != 0 ]; then
	# The hand-written side's image on the nodes already (the bed's nodes
	# share this machine's podman storage).
	CONTAINERS_CONF=$BED_CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$BED_CONTAINERS_STORAGE_CONF \
		podman pull -q --tls-verify=false "$BED_BASE" >/dev/null || { say "cannot pull $BED_BASE"; exit 1; }
	rounds "$BED/podman.tsv" podman
	rows "$BED/podman.tsv" ", podman"
fi
