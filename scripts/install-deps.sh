#!/usr/bin/env bash
# Installs, from Debian's archive only, everything pystrib needs to build, to run
# its tests and to run the local test bed. Safe to run again.
#   scripts/install-deps.sh            build + test + test-bed packages
#   scripts/install-deps.sh --build    only what building pystrib needs
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config git
  libssh-dev libcurl4-openssl-dev libarchive-dev libjansson-dev libgit2-dev
  libinih-dev libssl-dev zlib1g-dev libcmocka-dev
)
bed_pkgs=(
  clang libclang-rt-14-dev
  docker.io podman runc docker-registry apache2-utils
  openssh-server openssh-client openssl
  openmpi-bin python3-mpi4py mmdebstrap skopeo umoci iproute2 procps psmisc curl socat
  python3-ipykernel python3-nbclient python3-nbformat jupyter-nbconvert python3-pytest
  python3-pip python3-setuptools python3-wheel
  python3-numpy python3-torch python3-ipyparallel
  slurm-wlm munge libpmix-dev
)

pkgs=("${build_pkgs[@]}")
[ "${1:-}" = "--build" ] || pkgs+=("${bed_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
