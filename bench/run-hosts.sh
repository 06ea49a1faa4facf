#!/usr/bin/env bash
# bench/run-hosts.sh PYSTRIB_BINARY: the start overhead of a second host.
# On the bed's two namespace hosts (integration/bed.sh hosts), runtime
# none: `pystrib run` of a trivial mpi4py cell as 4 ranks over h1 and h2
# ([remote] hosts) against 2 ranks on h1 alone (--hosts with h1 only),
# alternated, ROUNDS each (default 5): the medians, their ratio and their
# difference. Wall time from the command's start to its end (the ranks'
# own work is a barrier). The same with runtime podman ([remote.pairpod]:
# a container of the image on each host), when podman and socat are
# here. Needs root. Rows for bench/run on stdout.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: bench/run-hosts.sh PYSTRIB_BINARY" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
ROUNDS=${ROUNDS:-5}
say() { echo "bench/hosts: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (network namespaces): nothing to measure"; exit 0; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
pod=''
command -v podman >/dev/null 2>&1 && command -v socat >/dev/null 2>&1 && pod=1
if [ -n "$pod" ]; then
	bench_bed registry base hosts
else
	bench_bed hosts
fi
mkdir -p "$BED/work"
cd "$BED/work" || exit 1
cat > cell.py <<'EOF2'
from mpi4py import MPI
MPI.COMM_WORLD.Barrier()
print("ok", MPI.COMM_WORLD.rank)
EOF2
remote=pair
one() {	# one ARGS...: the seconds of one run
	local t0 t1
	t0=$(date +%s.%N)
	"$PYSTRIB" -c "$BED_CONFIG" run --remote "$remote" --no-project cell.py "$@" --results "$BED/work/r" \
		>/dev/null 2>"$BED/work/last.err" || { cat "$BED/work/last.err" >&2; return 1; }
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# compare LABEL: ROUNDS of 4 ranks over both hosts against 2 on one,
# alternated after a warm-up (layers or the image on both hosts), for
# $remote; LABEL prefixes the rows ('' for runtime none).
compare() {
	local label=$1 m1 m2
	: > two.t
	: > one.t
	one -n 4 > /dev/null && one -n 2 --hosts 'root@198.18.0.1*2' > /dev/null || return 1
	for _ in $(seq "$ROUNDS"); do
		one -n 4 >> two.t || return 1
		one -n 2 --hosts 'root@198.18.0.1*2' >> one.t || return 1
	done
	m2=$(median < two.t)
	m1=$(median < one.t)
	say "${label}4 ranks over 2 hosts: $(xargs < two.t)"
	say "${label}2 ranks on 1 host:    $(xargs < one.t)"
	printf 'ROW\thosts\t%s4 ranks over 2 hosts, median\t%.3f\ts\n' "$label" "$m2"
	printf 'ROW\thosts\t%s2 ranks on 1 host, median\t%.3f\ts\n' "$label" "$m1"
	printf 'ROW\thosts\t%sover 2 hosts / on 1 host\t%.2f\t\n' "$label" "$(echo "$m2 / $m1" | bc -l)"
	printf 'ROW\thosts\t%sthe second host adds\t%.3f\ts\n' "$label" "$(echo "$m2 - $m1" | bc -l)"
}
compare '' || exit 1
[ -n "$pod" ] || exit 0
remote=pairpod
compare 'podman: ' || exit 1
