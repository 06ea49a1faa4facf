#!/usr/bin/env bash
# bench/run-slurm.sh PYSTRIB_BINARY: `pystrib run` under Slurm side by side
# with what a Slurm user types today, on the bed's real Slurm (slurmctld and
# two slurmd nodes on this machine) reached through the bed's sshd (not a
# test: nothing here passes or fails; figures are medians of ROUNDS,
# default 3).
#
# The same NP-rank (default 4, over both nodes) mpi4py cell, runtime none,
# the same Python (Debian's /usr/bin/python3 and Open MPI's mpi4py):
#   hand    ssh HOST 'sbatch --parsable hand.sbatch, then tail -F of its
#           output file': a hand-written batch script, cell.py already in
#           the shared directory, `srun --mpi=pmix python3 -u cell.py`
#           (tail -s 0.05: tail -F looks for a file not there yet once a
#           second, which would cost the hand-written side up to 1 s).
#   pystrib pystrib run cell.py -n NP ([remote] scheduler = slurm): the
#           job directory and its files over SSH, sbatch, srun --mpi=pmix
#           of the cell in bootstrap.py, the output followed.
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

BED=$(mktemp -d /tmp/pbench.XXXXXX)
cleanup() { "$here/../integration/bed.sh" stop "$BED" >/dev/null 2>&1; rm -rf "$BED"; }
trap cleanup EXIT
"$here/../integration/bed.sh" start "$BED" slurm sshd >&2 || exit 1
# shellcheck disable=SC1091
. "$BED/env"
export SLURM_CONF=$BED_SLURM_CONF
export HOME=$BED/home XDG_CACHE_HOME=$BED/home/.cache XDG_STATE_HOME=$BED/home/.state
mkdir -p "$HOME"
unset SSH_AUTH_SOCK
cat >> "$BED_CONFIG" <<EOF
[remote.slurm]
runtime = none
python = $PY
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

hand_run() {
	local t
	t=$(timed "${SSH[@]}" "$HAND") || { say "the hand-written job failed"; cat "$BED/t.out" "$BED/t.out.err" >&2; exit 1; }
	[ "$(grep -c "$want" "$BED/t.out")" -eq "$NP" ] || { say "hand: not $NP sums"; cat "$BED/t.out" >&2; exit 1; }
	echo "$t"
}

pystrib_run() {
	local t
	t=$(cd "$work" && timed "$PYSTRIB" -c "$BED_CONFIG" run --remote slurm cell.py -n "$NP" --results "$BED/res") ||
		{ say "pystrib run failed"; cat "$BED/t.out" "$BED/t.out.err" >&2; exit 1; }
	[ "$(grep -c "$want" "$BED/t.out")" -eq "$NP" ] || { say "pystrib: not $NP sums"; cat "$BED/t.out" >&2; exit 1; }
	rm -rf "$BED/res"
	echo "$t"
}

say "one SSH round trip: $(timed "${SSH[@]}" echo x | cut -d' ' -f1) s"
[ -n "$(hand_run)" ] || exit 1		# warm-up: Slurm's and the page cache's
[ -n "$(pystrib_run)" ] || exit 1	# warm-up: runtime none's layers on the host
tsv=$BED/slurm.tsv
: > "$tsv"
for round in $(seq "$ROUNDS"); do
	h=$(hand_run)
	p=$(pystrib_run)
	[ -n "$h" ] && [ -n "$p" ] || exit 1
	printf '%s %s\n' "$h" "$p" | tr ' ' '\t' >> "$tsv"
	say "round $round: hand first line/end ${h/ //} s, pystrib ${p/ //} s"
done
$PY - "$tsv" "$NP" <<'EOF'
import statistics, sys
rows = [[float(x) for x in l.split("\t")] for l in open(sys.argv[1]).read().split("\n") if l]
med = lambda i: statistics.median(r[i] for r in rows)
def row(m, v, u): print("ROW\tslurm-run\t%s\t%s\t%s" % (m, v, u))
n = sys.argv[2]
row("hand sbatch+srun --mpi=pmix, %s ranks: first line, median" % n, "%.2f" % med(0), "s")
row("pystrib run --remote slurm, %s ranks: first line, median" % n, "%.2f" % med(2), "s")
row("pystrib / hand, first line (target <= 1.1), median of rounds", "%.2f" % statistics.median(r[2] / r[0] for r in rows), "x")
row("pystrib - hand, first line, median of rounds", "%.2f" % statistics.median(r[2] - r[0] for r in rows), "s")
row("hand: to the job's end, median", "%.2f" % med(1), "s")
row("pystrib: to the job's end (results back), median", "%.2f" % med(3), "s")
EOF
