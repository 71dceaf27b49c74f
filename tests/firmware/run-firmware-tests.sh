#!/usr/bin/env bash
# run-firmware-tests.sh [--build DIR] [PYTEST-ARGS...]
#
# The firmware-boot suite (pytest, tests/firmware/test_*.py), in two parts:
#   1. boot sectors under SeaBIOS (test_seabios.py): real-mode code only, so
#      they run on this machine's /dev/kvm directly, even on a nested one
#      that cannot run Linux (tests/guest/README.md); SKIP without /dev/kvm.
#   2. Debian's kernel through SeaBIOS and GRUB (test_linux.py, marker
#      `linux`): directly where tests/guest/kvm-usable.sh says /dev/kvm runs
#      Linux, otherwise inside the software-emulated test host.
# PYTEST-ARGS go to both pytest runs (e.g. -k cdrom, -x). JUnit results and
# each VM's serial output and stderr (NAME.serial, NAME.stderr) are written
# to DIR/firmware-tests/. Exits non-zero if either part failed.
set -euo pipefail
PROG=run-firmware-tests.sh
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/guest/lib.sh
. "$HERE/../guest/lib.sh"

build=$REPO_ROOT/build
if [[ ${1:-} == --build ]]; then
    build=$(cd "$2" && pwd)
    shift 2
fi
# Debian's interpreter: python3-pytest is installed for it, not for any
# other python3 that may come first on PATH.
PY=/usr/bin/python3
"$PY" -m pytest --version >/dev/null 2>&1 || die "pytest is missing for $PY (Debian package python3-pytest)"
results=$build/firmware-tests
rm -rf "$results"
mkdir -p "$results"
export VMM_FW_LOGDIR=$results
pytest_args=(. -p no:cacheprovider -rs -v --vmm "$build/vmm" "$@")

status=0
note "part 1: firmware on this machine's /dev/kvm"
# pytest exits 5 when -k selected nothing from a part: not a failure.
ok() { local rc=$?; [[ $rc == 5 ]] || status=1; }
(cd "$HERE" && "$PY" -m pytest "${pytest_args[@]}" -m "not linux" --junitxml="$results/direct.xml") || ok

note "part 2: Linux through the firmware"
VMM_FW_KERNEL=$(guest_kernel)
VMM_FW_INITRAMFS=$(guest_test_initramfs)
export VMM_FW_KERNEL VMM_FW_INITRAMFS
linux=("$PY" -m pytest "${pytest_args[@]}" -m linux --junitxml="$results/linux.xml")
if verdict=$("$GUEST_DIR/kvm-usable.sh"); then
    note "$verdict -> running them directly"
    (cd "$HERE" && "${linux[@]}") || ok
elif ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    note "SKIP: $verdict, and qemu-system-x86_64 is missing for the test host"
else
    note "$verdict -> running them inside the test host"
    # The emulated test host itself crashes now and then (tests/guest/README.md):
    # testhost.sh then exits 125 (died) or 124 (timed out); run it once more.
    for attempt in 1 2; do
        rc=0
        (cd "$HERE" && "$GUEST_DIR/testhost.sh" --timeout 2400 --scratch "$results" -- "${linux[@]}") || rc=$?
        [[ $rc == 124 || $rc == 125 ]] && [[ $attempt == 1 ]] && { note "the test host died (status $rc); once more"; continue; }
        break
    done
    [[ $rc == 0 ]] || (exit $rc) || ok
fi
exit $status
