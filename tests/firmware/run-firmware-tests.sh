#!/usr/bin/env bash
# run-firmware-tests.sh [--build DIR] [PYTEST-ARGS...]
#
# The firmware-boot suite (pytest, tests/firmware/test_*.py), in two parts:
#   1. boot sectors under SeaBIOS (test_seabios.py): real-mode code only, so
#      they run on this machine's /dev/kvm directly, even on a nested one
#      that cannot run Linux (tests/guest/README.md); on a machine with no
#      /dev/kvm at all they run in the test host with part 2.
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
# pytest exits 5 when -k selected nothing from a part: not a failure.
ok() { local rc=$?; [[ $rc == 5 ]] || status=1; }
# Part 2's marker expression: where this machine has no /dev/kvm at all,
# part 1 joins it in the test host (which has one) instead of skipping.
part2=linux
if [[ -c /dev/kvm ]]; then
    note "part 1: firmware on this machine's /dev/kvm"
    (cd "$HERE" && "$PY" -m pytest "${pytest_args[@]}" -m "not linux" --junitxml="$results/direct.xml") || ok
else
    note "part 1: this machine has no /dev/kvm; it runs with part 2"
    part2="linux or not linux"
fi

note "part 2: Linux through the firmware"
VMM_FW_KERNEL=$(guest_kernel)
VMM_FW_INITRAMFS=$(guest_test_initramfs)
export VMM_FW_KERNEL VMM_FW_INITRAMFS
linux=("$PY" -m pytest "${pytest_args[@]}" -m "$part2" --junitxml="$results/linux.xml")
if verdict=$("$GUEST_DIR/kvm-usable.sh"); then
    note "$verdict -> running them directly"
    (cd "$HERE" && "${linux[@]}") || ok
elif ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    note "SKIP: $verdict, and qemu-system-x86_64 is missing for the test host"
else
    note "$verdict -> running them inside the test host"
    # The emulated test host itself crashes now and then (tests/guest/README.md;
    # QEMU 7.2's TCG aborts in tcg_handle_interrupt): testhost.sh then exits
    # 125 (died) or 124 (timed out). conftest.py lists the tests that finished
    # in $results/done, so each new attempt runs only the others.
    rm -f "$results/done"
    for attempt in 1 2 3; do
        rest=()
        if [[ -f $results/done ]]; then
            while IFS= read -r id; do rest+=(--deselect "$id"); done < "$results/done"
        fi
        rc=0
        (cd "$HERE" && "$GUEST_DIR/testhost.sh" --timeout 2400 --scratch "$results" -- "${linux[@]}" "${rest[@]}") \
            || rc=$?
        if [[ $rc == 124 || $rc == 125 ]] && [[ $attempt -lt 3 ]]; then
            note "the test host died (status $rc) after $(cat "$results/done" 2>/dev/null | wc -l) finished tests;" \
                "attempt $((attempt + 1)) runs the others"
            continue
        fi
        break
    done
    [[ $rc == 0 ]] || (exit $rc) || ok
fi
exit $status
