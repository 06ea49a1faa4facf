#!/usr/bin/env bash
# Sets up and runs the main job against a throwaway local default: installs
# Debian packages, builds pystrib, installs the notebook extension (magic/)
# for Debian's python3, starts a registry, an SSH host and a Docker engine on
# loopback (integration/bed.sh), runs scripts/demo-cell.py there as two MPI
# ranks, shows the results that came back, and stops everything.
#   scripts/demo.sh            keep the results in ./pystrib-results
#   scripts/demo.sh --keep     leave the services running (bed dir printed)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
pystrib=$top/build/pystrib
echo "== installing the notebook extension (pystributed) for Debian's python3"
/usr/bin/python3 -m pip install -q --root-user-action=ignore --break-system-packages --no-index --no-build-isolation ./magic

bed=$(mktemp -d /tmp/pystrib-demo.XXXXXX)
if [ "${1:-}" != --keep ]; then
  trap 'integration/bed.sh stop "$bed"; rm -rf "$bed"' EXIT
fi
echo "== starting a registry, an SSH host and a Docker engine on loopback in $bed"
integration/bed.sh start "$bed" registry sshd docker base
. "$bed/env"

echo "== the settings pystrib uses ($BED_CONFIG)"
"$pystrib" -c "$BED_CONFIG" config show

if "$pystrib" help push >/dev/null 2>&1; then
  echo "== pystrib run scripts/demo-cell.py -n 2 (image pushed to the registry, run by the remote's docker)"
  "$pystrib" -c "$BED_CONFIG" run scripts/demo-cell.py -n 2 --results "$top/pystrib-results"
else
  # Until `pystrib push` exists, the job runs on the SSH host with its own
  # mpirun and Python (runtime none), the path for hosts without an engine.
  echo "== pystrib run scripts/demo-cell.py -n 2 --remote none (the host's own mpirun: push is not built yet)"
  "$pystrib" -c "$BED_CONFIG" run scripts/demo-cell.py -n 2 --remote none --results "$top/pystrib-results"
fi
echo "== results"
find "$top/pystrib-results" -type f | sort | tail -n 20
