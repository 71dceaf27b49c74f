#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds with warnings as
# errors, then runs every test through ctest: the unit tests, and the
# real-guest suite (Debian's kernel under build/vmm, plus the direct-KVM
# tests), which runs inside the software-emulated test host when this
# machine's /dev/kvm cannot run Linux guests itself.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/tests/install-deps.sh"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}" "$ROOT/tests/build.sh" -DVMM_WERROR=ON
ctest --test-dir "${BUILD_DIR:-$ROOT/build}" --output-on-failure "$@"
