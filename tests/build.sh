#!/usr/bin/env bash
# Configures and builds into BUILD_DIR (default: build/) with ccache-friendly
# settings. Extra arguments are passed to cmake's configure step.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" ${BUILD_TARGET:+--target "$BUILD_TARGET"}
