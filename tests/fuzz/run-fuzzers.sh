#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) with clang, ASan and
# UBSan, and runs each for a fixed time from its seed corpus
# (tests/fuzz/corpus/<target>/). Exit 0: every target ran clean; 1: a target
# crashed, leaked, hung or failed to build (the input is saved under
# <build>/artifacts/); 77: SKIP, no clang/libFuzzer on this machine.
#
#   tests/fuzz/run-fuzzers.sh [--seconds N] [--build DIR] [TARGET...]
#
# The working corpus grows in <build>/corpus/<target>/ (the repository's
# seeds are only read), so a later run continues where this one stopped.
# docs/fuzzing.md says how to run one target for long and turn a crash into
# a regression test.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECONDS_PER_TARGET=20
BUILD="$ROOT/build/fuzz"
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "run-fuzzers: unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done

CXX_FUZZ="${CXX_FUZZ:-clang++-16}"
CC_FUZZ="${CC_FUZZ:-clang-16}"
if ! command -v "$CXX_FUZZ" >/dev/null; then
  echo "SKIP: $CXX_FUZZ not found (Debian packages clang-16 libfuzzer-16-dev; tests/install-deps.sh installs them)"
  exit 77
fi

echo "run-fuzzers: building into $BUILD"
CC="$CC_FUZZ" CXX="$CXX_FUZZ" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVMM_FUZZ=ON -DVMM_TESTS=OFF -DVMM_WERROR=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >"$BUILD/build.log" 2>&1 || { tail -40 "$BUILD/build.log"; exit 1; }

if [ ${#TARGETS[@]} -eq 0 ]; then
  for src in "$ROOT"/tests/fuzz/fuzz_*.cpp; do TARGETS+=("$(basename "$src" .cpp)"); done
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$BUILD/artifacts"
failed=()
for t in "${TARGETS[@]}"; do
  corpus="$BUILD/corpus/$t"
  mkdir -p "$corpus"
  seeds="$ROOT/tests/fuzz/corpus/$t"
  [ -d "$seeds" ] || seeds=""
  log="$BUILD/$t.log"
  # -timeout: one input running 10 s is a hang; -max_len: room for a guest
  # RAM image (fuzz_ram.h) in the inputs that need one.
  if "$BUILD/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=20000 \
       -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" "$corpus" ${seeds:+"$seeds"} >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    printf 'run-fuzzers: %-22s ok   %10s runs (%s/s), %s\n' "$t" "$runs" "$rate" "$cov"
  else
    printf 'run-fuzzers: %-22s FAILED (log: %s)\n' "$t" "$log"
    grep -E 'ERROR|runtime error|SUMMARY|Test unit written|deadly signal|timeout' "$log" | head -8 | sed 's/^/    /'
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run-fuzzers: ${#failed[@]} target(s) failed: ${failed[*]}"
  exit 1
fi
echo "run-fuzzers: ${#TARGETS[@]} target(s) clean, ${SECONDS_PER_TARGET} s each"
