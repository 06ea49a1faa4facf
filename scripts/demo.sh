#!/usr/bin/env bash
# Sets up and runs the main job against a throwaway local default: installs
# Debian packages, builds pystrib, starts a registry, an SSH host and a Docker
# engine on loopback (integration/bed.sh), runs scripts/demo-cell.py as two
# MPI ranks there, shows the results that came back, and stops everything.
#   scripts/demo.sh            keep the results in ./pystrib-results
#   scripts/demo.sh --keep     leave the services running (bed dir printed)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
pystrib=$top/build/pystrib

bed=$(mktemp -d /tmp/pystrib-demo.XXXXXX)
if [ "${1:-}" != --keep ]; then
  trap 'integration/bed.sh stop "$bed"' EXIT
fi
echo "== starting a registry, an SSH host and a Docker engine on loopback in $bed"
integration/bed.sh start "$bed" registry sshd docker base
. "$bed/env"

echo "== the settings pystrib uses ($BED_CONFIG)"
"$pystrib" -c "$BED_CONFIG" config show

if "$pystrib" help run >/dev/null 2>&1; then
  echo "== pystrib run scripts/demo-cell.py -n 2"
  "$pystrib" -c "$BED_CONFIG" run scripts/demo-cell.py -n 2 --results "$top/pystrib-results"
  echo "== results"
  find "$top/pystrib-results" -type f | sort | tail -n 20
  exit 0
fi

# Until `pystrib push` and `pystrib run` exist, the demo goes as far as the
# code does: pystrib writes the cell's build context; the bed's Docker engine
# builds it and runs the ranks, as the remote host will.
echo "== pystrib build scripts/demo-cell.py (the Docker build context of the cell)"
"$pystrib" -c "$BED_CONFIG" build scripts/demo-cell.py --no-project -o "$bed/context.tar"
tar tvf "$bed/context.tar"
echo "== 'push' and 'run' are not built yet; building and running the context by hand with the bed's dockerd"
export DOCKER_HOST="$BED_DOCKER_HOST" DOCKER_BUILDKIT=0
/usr/bin/docker build -q -t pystrib-demo - < "$bed/context.tar"
mkdir -p "$top/pystrib-results"
/usr/bin/docker run --rm --network none -v "$top/pystrib-results:/results" -e PYSTRIB_RESULTS=/results \
  pystrib-demo mpirun --allow-run-as-root --oversubscribe -np 2 \
  python3 /pystrib/cell/bootstrap.py /pystrib/cell/user_code.py
echo "== results"
find "$top/pystrib-results" -type f | sort
