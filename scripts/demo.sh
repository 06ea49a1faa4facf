#!/usr/bin/env bash
# Sets up and runs the main job against a throwaway local default: installs
# Debian packages, builds pystrib, installs the notebook extension (magic/)
# for Debian's python3, starts a registry, an SSH host and a Docker engine on
# loopback (integration/bed.sh), runs scripts/demo-cell.py there as two MPI
# ranks, shows the job's output and the results that came back, and stops
# everything.
#   scripts/demo.sh            keep the results in ./pystrib-results
#   scripts/demo.sh --keep     leave the services running (how to use and stop them printed)
# The set-up's own output (apt, cmake, the compiler, the services) goes to a
# log file, named first; each stage is one line with its time, and a stage
# that fails names itself and shows that log.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
keep=0
case "${1:-}" in
	--keep) keep=1 ;;
	"") ;;
	*) echo "usage: scripts/demo.sh [--keep]" >&2; exit 2 ;;
esac

log=$(mktemp /tmp/pystrib-demo.XXXXXX.log)
echo "== the set-up's output goes to $log"

# stage WHAT COMMAND...: one line, "== WHAT ... 12.3 s"; on failure the log, whole.
stage() {
	local what=$1 t0=$EPOCHREALTIME rc=0
	shift
	printf '== %s ... ' "$what"
	printf '\n== %s\n' "$what" >> "$log"
	"$@" >> "$log" 2>&1 || rc=$?
	local secs
	secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	if [ "$rc" -eq 0 ]; then
		echo "$secs s"
		return 0
	fi
	echo "failed after $secs s"
	echo "demo: the stage '$what' failed (exit $rc); the whole log ($log) follows" >&2
	cat "$log" >&2
	echo "demo: the stage '$what' failed (exit $rc); its output is above, and in $log" >&2
	exit "$rc"
}

build() {
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build -j"$(nproc)"
}

stage "installing Debian packages (scripts/install-deps.sh)" scripts/install-deps.sh
stage "building pystrib (cmake, in build/)" build
pystrib=$top/build/pystrib
stage "installing the notebook extension (pystributed) for Debian's python3" \
	/usr/bin/python3 -m pip install --root-user-action=ignore --break-system-packages \
	--no-index --no-build-isolation ./magic

bed=$(mktemp -d /tmp/pystrib-demo.XXXXXX)
if [ "$keep" -eq 0 ]; then
	trap 'integration/bed.sh stop "$bed" >> "$log" 2>&1; rm -rf "$bed"' EXIT
fi
# The base image comes from integration/bed.sh's cache (PYSTRIB_BED_CACHE);
# only the first run makes it.
cache=${PYSTRIB_BED_CACHE:-/var/cache/pystrib-bed}
if compgen -G "$cache/base-*/index.json" > /dev/null; then
	echo "== the base image (Debian 12 with python3, Open MPI and mpi4py) is cached in $cache"
else
	echo "== the base image (Debian 12 with python3, Open MPI and mpi4py) is made once by mmdebstrap" \
		"from this machine's apt sources: about 45 s, then cached in $cache"
fi
stage "starting a registry, an SSH host and a Docker engine on loopback, and pushing the base image" \
	integration/bed.sh start "$bed" registry sshd docker base
. "$bed/env"

echo "== pystrib -c $BED_CONFIG run scripts/demo-cell.py -n 2" \
	"(image pushed to the registry, pulled and run by the host's docker)"
rc=0
"$pystrib" -c "$BED_CONFIG" run scripts/demo-cell.py -n 2 --results "$top/pystrib-results" || rc=$?
if [ "$rc" -ne 0 ]; then
	echo "demo: the job failed (pystrib exit $rc): its output is above; the set-up's is in $log" >&2
	exit "$rc"
fi

echo "== the results that came back, in $top/pystrib-results"
for f in "$top"/pystrib-results/results/*; do
	[ -f "$f" ] || continue
	printf '%s: %s\n' "results/${f##*/}" "$(head -c 200 "$f" | head -n 1)"
done
printf 'logs/: %s\n' "$(cd "$top/pystrib-results/logs" && ls | tr '\n' ' ' | sed 's/ $//')"

if [ "$keep" -eq 1 ]; then
	echo "== the services keep running in $bed"
	echo "   use them:  $pystrib -c $bed/pystrib.ini run $top/scripts/demo-cell.py -n 2"
	echo "              (any command: $pystrib -c $bed/pystrib.ini jobs)"
	echo "   stop them: $top/integration/bed.sh stop $bed && rm -rf $bed"
fi
