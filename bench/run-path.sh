#!/usr/bin/env bash
# bench/run-path.sh PYSTRIB_BINARY: `pystrib run` side by side with the path
# it replaces, on the bed's loopback registry, sshd and dockerd (not a test:
# nothing here passes or fails; figures are medians of ROUNDS, default 3).
#
# For a one-line edit of a 2-rank mpi4py cell (the base image cached):
#   old     docker build (classic builder, FROM the base, COPY the cell) +
#           docker push + ssh HOST docker pull + ssh HOST docker run ... mpirun.
#           The built image is removed from the daemon after the push (its
#           parent layers kept: the build cache, and what the host pulled
#           before), so the host really pulls what changed.
#   pystrib pystrib run cell.py -n 2: push; then, over one SSH connection
#           and no remote shell, pull, create and start the container
#           through the engine's socket and follow the job in it (docker
#           exec), results back as a tar (the bed logs in as root with an
#           absolute workdir: docs/remote-job.md).
#   floor   ssh HOST docker run BASE mpirun -np 2 python3 -c CELL: nothing to
#           build, push or pull.
# Ratios: old/pystrib (target >= 2) and pystrib/floor (target <= 1.25),
# each the median of the rounds' own ratios (the machine's load drifts).
# Then the same with a 100 MiB project directory beside the cell (PROJECT_MB),
# unchanged between runs (old: COPY project/ before the cell; pystrib:
# --project). The dockerd is both the "local" and the "remote" engine, as the
# single daemon of the bed.
#
# Rows for bench/run go to stdout as "ROW<TAB>bench<TAB>measure<TAB>value<TAB>unit";
# everything else goes to stderr.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: bench/run-path.sh PYSTRIB_BINARY" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
ROUNDS=${ROUNDS:-3}
PROJECT_MB=${PROJECT_MB:-100}
PY=/usr/bin/python3
D=/usr/bin/docker

row() { printf 'ROW\t%s\t%s\t%s\t%s\n' "$@"; }
say() { echo "bench/run-path: $*" >&2; }
now() { date +%s.%N; }
since() { $PY -c "print('%.3f' % ($(now) - $1))"; }

# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_bed registry sshd docker base
export DOCKER_HOST=$BED_DOCKER_HOST DOCKER_BUILDKIT=0
SSH=(ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" -o BatchMode=yes -o IdentitiesOnly=yes
	-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BED_KNOWN_HOSTS" "$BED_SSH_USER@$BED_SSH_HOST")
RUN_FLAGS=(--rm --network host --ipc host)
MPIRUN=(mpirun --allow-run-as-root -np 2)
CELL='from mpi4py import MPI
c = MPI.COMM_WORLD
print("rank", c.rank, "sum", c.allreduce(c.rank + 1))'

say "caching the base image on the daemon"
$D pull -q "$BED_BASE" > /dev/null || exit 1
say "one SSH round trip (the remote login shell's own cost): $(t0=$(now); "${SSH[@]}" true; since "$t0") s"

work=$BED/work
mkdir -p "$work"
cd "$work" || exit 1
edit=0
new_cell() {	# a one-line edit of cell.py
	edit=$((edit + 1))
	{ printf '%s\n' "$CELL"; printf 'edit = %d\n' "$edit"; } > cell.py
}

old_path() {	# old_path WITH_PROJECT: prints its wall time
	local t0 img=$BED_REGISTRY/bench/old:latest
	{
		printf 'FROM %s\n' "$BED_BASE"
		[ "$1" = 1 ] && printf 'COPY project/ /project/\n'
		printf 'COPY cell.py /cell.py\n'
	} > Dockerfile
	t0=$(now)
	$D build -q -t "$img" . > /dev/null &&
		$D push -q "$img" > /dev/null &&
		$D rmi --no-prune "$img" > /dev/null &&
		"${SSH[@]}" docker pull -q "$img" > /dev/null &&
		"${SSH[@]}" docker run "${RUN_FLAGS[@]}" "$img" "${MPIRUN[@]}" python3 /cell.py > "$BED/old.out" ||
		{ say "the old path failed"; exit 1; }
	since "$t0"
	grep -q "sum 3" "$BED/old.out" || { say "old path: no sum"; cat "$BED/old.out" >&2; exit 1; }
	$D rmi --no-prune "$img" > /dev/null 2>&1
}

pystrib_run() {	# pystrib_run WITH_PROJECT: prints its wall time
	local t0 proj=(--no-project)
	[ "$1" = 1 ] && proj=(--project "$work/project")
	t0=$(now)
	"$PYSTRIB" -c "$BED_CONFIG" run cell.py -n 2 --timeout 600 "${proj[@]}" --results "$BED/res" \
		> "$BED/p.out" 2> "$BED/p.err" || { say "pystrib run failed"; cat "$BED/p.err" >&2; exit 1; }
	since "$t0"
	grep -q "sum 3" "$BED/p.out" || { say "pystrib: no sum"; cat "$BED/p.out" >&2; exit 1; }
	rm -rf "$BED/res"
}

login() {	# one SSH round trip: what the remote login shell costs
	local t0
	t0=$(now)
	"${SSH[@]}" true || { say "ssh failed"; exit 1; }
	since "$t0"
}

floor() {
	local t0
	t0=$(now)
	"${SSH[@]}" docker run "${RUN_FLAGS[@]}" "$BED_BASE" "${MPIRUN[@]}" python3 -c "$(printf '%q' "$CELL")" \
		> "$BED/f.out" || { say "the floor failed"; exit 1; }
	since "$t0"
	grep -q "sum 3" "$BED/f.out" || { say "floor: no sum"; cat "$BED/f.out" >&2; exit 1; }
}

bench() {	# bench NAME WITH_PROJECT
	local name=$1 p=$2 tsv=$BED/$1.tsv o t f l
	: > "$tsv"
	new_cell
	[ -n "$(old_path "$p")" ] || exit 1	# warm-up: build cache, project layer on the host
	new_cell
	[ -n "$(pystrib_run "$p")" ] || exit 1	# warm-up: layer cache, project layer pushed and pulled
	for round in $(seq "$ROUNDS"); do
		new_cell
		o=$(old_path "$p")
		new_cell
		t=$(pystrib_run "$p")
		f=$(floor)
		l=$(login)
		# A step that failed said so and printed no time: stop here.
		[ -n "$o" ] && [ -n "$t" ] && [ -n "$f" ] && [ -n "$l" ] || exit 1
		printf '%s\t%s\t%s\t%s\n' "$o" "$t" "$f" "$l" >> "$tsv"
		say "$name round $round: old $o s, pystrib $t s, floor $f s, ssh HOST true $l s"
	done
	$PY - "$tsv" "$name" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
old, pys, flo, ssh = (statistics.median(float(r[i]) for r in rows) for i in range(4))
def row(m, v, u): print("ROW\t%s\t%s\t%s\t%s" % (sys.argv[2], m, v, u))
row("old path (build+push+ssh pull+ssh run), median", "%.2f" % old, "s")
row("pystrib run of a one-line edit, median", "%.2f" % pys, "s")
row("floor (ssh docker run BASE mpirun), median", "%.2f" % flo, "s")
row("ssh HOST true (one remote login), median", "%.2f" % ssh, "s")
# Ratios within a round (same load on a shared machine), then their median.
ratio = lambda a, b: statistics.median(float(r[a]) / float(r[b]) for r in rows)
row("old path / pystrib (target >= 2), median of rounds", "%.2f" % ratio(0, 1), "x")
row("pystrib / floor (target <= 1.25), median of rounds", "%.2f" % ratio(1, 2), "x")
# For context: the old path over a floor that builds, pushes and pulls
# nothing but pays one remote login, as every tool that runs a remote
# command does (pystrib, with docker's socket and a root login, runs none).
row("old path / floor (context), median of rounds", "%.2f" % ratio(0, 2), "x")
EOF
}

bench run-cell 0
mkdir -p project
say "writing a ${PROJECT_MB} MiB project"
head -c $((PROJECT_MB << 20)) /dev/urandom > project/data.bin
printf 'VALUE = 1\n' > project/util.py
bench "run-cell+${PROJECT_MB}MiB-project" 1
