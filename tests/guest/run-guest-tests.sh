#!/usr/bin/env bash
# run-guest-tests.sh [--build DIR] [--timeout SEC] [--only REGEX] [--list] [--vmm vmm|qemu] [-- PYTEST-ARGS...]
#
# The real-guest suite: pytest cases in tests/guest/test_*.py, run by
# runner.py where guests can run (directly, or inside the software-emulated
# test host). This wrapper keeps the command ctest and README use; see
# runner.py's help and tests/guest/README.md.
exec /usr/bin/python3 -B "$(dirname "$0")/runner.py" "$@"
