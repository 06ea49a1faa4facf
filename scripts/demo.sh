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
elif "$pystrib" help push >/dev/null 2>&1; then
  echo "== pystrib push scripts/demo-cell.py ('run' is not built yet)"
  "$pystrib" -c "$BED_CONFIG" push scripts/demo-cell.py --no-project
else
  echo "== 'push' and 'run' are not built yet: the demo stops after the settings"
fi
