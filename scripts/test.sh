#!/usr/bin/env bash
# Sets up and runs every test: installs Debian packages, builds pystrib with
# AddressSanitizer + UndefinedBehaviorSanitizer and warnings as errors, then
# runs the cmocka unit tests (CTest), the Python tests, the end-to-end
# scenarios against real services on loopback (integration/), and, in CI,
# each fuzz harness briefly. Exits non-zero if anything fails.
#   scripts/test.sh                 everything
#   scripts/test.sh unit            only the build and the unit tests
#   PYSTRIB_TESTS=t04 scripts/test.sh   only integration scenarios matching t04
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
what=${1:-all}
build=${PYSTRIB_BUILD_DIR:-$top/build-test}

scripts/install-deps.sh
cmake -S . -B "$build" -DPYSTRIB_SANITIZE=ON -DPYSTRIB_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

# Leaks are bugs here: keep LeakSanitizer on (the default with ASan).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "== unit tests (cmocka)"
ctest --test-dir "$build" --output-on-failure -j2
[ "$what" = unit ] && exit 0

echo "== python tests"
pytests=()
[ -d tests/python ] && pytests+=(tests/python)
[ -d magic/tests ] && pytests+=(magic/tests)
if [ ${#pytests[@]} -gt 0 ]; then
  PYSTRIB_BIN="$build/pystrib" /usr/bin/python3 -m pytest -q "${pytests[@]}"
fi

if [ ! -x scripts/fuzz.sh ]; then
  echo "== fuzzing skipped: no scripts/fuzz.sh"
elif [ "${CI:-}" != true ]; then
  echo "== fuzzing skipped: it runs in CI only (CI=true scripts/test.sh, or scripts/fuzz.sh SECONDS)"
else
  echo "== fuzzing (${PYSTRIB_FUZZ_SECONDS:-30} s per harness)"
  scripts/fuzz.sh "${PYSTRIB_FUZZ_SECONDS:-30}"
fi

echo "== end to end (integration/)"
integration/run.sh "$build/pystrib" "${PYSTRIB_TESTS:-}"
