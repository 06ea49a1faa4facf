#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c) with clang, in a build
# directory of their own with the whole core instrumented for coverage, and runs
# each for SECONDS. Fails when a harness finds a crash, a leak or a hang; the
# input that did it is kept in BUILD/crashes/.
#
#   scripts/fuzz.sh [SECONDS] [NAME...]    default 30 s, every harness
#   PYSTRIB_FUZZ_BUILD=DIR scripts/fuzz.sh  build directory (default ./build-fuzz)
#
# The corpus grows in BUILD/corpus/NAME across runs, from a few seeds.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
[ $# -gt 0 ] && shift
case $secs in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [NAME...]" >&2; exit 2;; esac
build=${PYSTRIB_FUZZ_BUILD:-$src/build-fuzz}
command -v clang >/dev/null || {
	echo "fuzz.sh: clang is not installed (scripts/install-deps.sh installs it)" >&2; exit 2; }

if [ $# -gt 0 ]; then
	names=("$@")
else
	names=()
	for f in "$src"/tests/fuzz/fuzz_*.c; do names+=("$(basename "$f" .c)"); done
fi

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DPYSTRIB_FUZZ=ON -DPYSTRIB_SANITIZE=ON -DPYSTRIB_WERROR=ON -DBUILD_TESTING=OFF \
	-DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" > "$build.cmake.log" 2>&1 ||
	{ cat "$build.cmake.log" >&2; exit 1; }
rm -f "$build.cmake.log"
cmake --build "$build" -j2 --target "${names[@]}"

# A few well-formed inputs, so the fuzzer starts inside the grammar.
seed() {	# seed NAME FILE CONTENT
	mkdir -p "$build/corpus/$1"
	[ -e "$build/corpus/$1/$2" ] || printf '%s' "$3" > "$build/corpus/$1/$2"
}
d64=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
seed fuzz_remote_job a "$(printf 'alive 1\nstate failed\nexit 1\nstarted 1.5\nlaunched 2\nended 3\nruntime none\ncontainer \nreason slots\nerror mpirun has not enough slots\nrank 0 -1 0\nrank 1 143 2.5\njson\n{"id": "x", "np": 2}')"
seed fuzz_remote_job b "$(printf 'alive 0\nstate running\nreason\nerror\njson\n{"np": 1}')"
seed fuzz_remote_job c gone
seed fuzz_ref a "127.0.0.1:5000/pystrib/base:bookworm"
seed fuzz_ref b "ghcr.io/org/img:v1@sha256:$d64"
seed fuzz_ref c "[::1]:5000/a__b.c-d/e"
seed fuzz_auth a '1Bearer realm="https://auth.example.com/token",service="reg",scope="repository:a/b:pull,push"'
seed fuzz_auth b '1Basic realm=x, Bearer error="insufficient_scope"'
seed fuzz_auth c '0{"token":"abc.def","access_token":"x","expires_in":300}'
seed fuzz_dockercfg a '0{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}}}'
seed fuzz_dockercfg b '1{"credsStore":"desktop","credHelpers":{"127.0.0.1:5000":"pass"},"auths":{"127.0.0.1:5000":{"username":"u","password":"p","identitytoken":"t"}}}'
seed fuzz_manifest a "2{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":7,\"digest\":\"sha256:$d64\"},\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":9,\"digest\":\"sha256:$d64\"}]}"
seed fuzz_manifest b "5{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"size\":5,\"digest\":\"sha256:$d64\",\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"size\":5,\"digest\":\"sha256:$d64\",\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}]}"
seed fuzz_imageconfig a "$(printf '\301')"'{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"],"Cmd":["bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:'$d64'"]},"history":[{"created_by":"base"}]}'
# fuzz_follow: np, then the settings byte, then what follow.sh prints.
seed fuzz_follow a "$(printf '\002\040')S running 1700000000.5
D 0 o 0 6
hello
D 1 e 0 4
oops
X 0 0 1700000001.25
X 1 3 1700000002
E failed 3 1700000000 1700000002 rank 1 failed
"
seed fuzz_follow b "$(printf '\001\003')S pulling
S running 1700000000
D 0 o 0 12
no newline yD 0 o 12 2
z
X 0 0 0
E succeeded 0 0 0
R
tar bytes"
seed fuzz_follow c "$(printf '\003\024')D 2 e 0 0
D 2 e 0 3
a
bE lost -1 0 0 the job's pid is gone
"

mkdir -p "$build/crashes"
failed=()
for n in "${names[@]}"; do
	mkdir -p "$build/corpus/$n"
	log=$build/$n.log
	echo "fuzz.sh: $n for ${secs}s"
	if "$build/$n" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/crashes/$n-" "$build/corpus/$n" > "$log" 2>&1; then
		grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$log" | tail -n 1 || true
	else
		echo "fuzz.sh: $n FAILED (log: $log)" >&2
		grep -E 'ERROR|SUMMARY|Test unit written' "$log" >&2 || tail -n 30 "$log" >&2
		failed+=("$n")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: failed: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz.sh: ${#names[@]} harnesses, no crash in ${secs}s each"
