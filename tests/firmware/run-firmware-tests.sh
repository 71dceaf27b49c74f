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
# to DIR/firmware-tests/. Exits non-zero if either part failed. In the test
# host, a test that QEMU 7.2's known abort killed 4 times is reported as
# SKIP with that reason (docs/firmware.md, "Known problems").
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
    # The emulated test host itself dies now and then (tests/guest/README.md):
    # testhost.sh then exits 125 (died) or 124 (timed out). conftest.py lists
    # the tests that finished in $results/done and the one running in
    # $results/running, so each new attempt runs only the others. Up to 3
    # such deaths are retried. A death by QEMU 7.2's known abort ($QEMU_ABORT,
    # docs/firmware.md) is charged to the test that was running instead: it
    # gets up to 4 tries, and a test the emulator killed 4 times is reported
    # as SKIP with that reason while the others still run.
    QEMU_ABORT="tcg_handle_interrupt: assertion failed"
    rm -f "$results/done" "$results/running"
    declare -A aborts=()
    skipped=()
    deaths=0
    attempt=0
    while :; do
        attempt=$((attempt + 1))
        rest=()
        if [[ -f $results/done ]]; then
            while IFS= read -r id; do rest+=(--deselect "$id"); done < "$results/done"
        fi
        for id in "${skipped[@]}"; do rest+=(--deselect "$id"); done
        rm -f "$results/running"
        log=$results/testhost-$attempt.log
        rc=0
        (cd "$HERE" && "$GUEST_DIR/testhost.sh" --timeout 2400 --scratch "$results" -- "${linux[@]}" "${rest[@]}" 2>&1) \
            | tee "$log" || rc=$?
        [[ $rc == 124 || $rc == 125 ]] || break
        running=$(cat "$results/running" 2>/dev/null || true)
        finished=$( (cat "$results/done" 2>/dev/null || true) | wc -l)
        if [[ -n $running ]] && ! grep -qxF -- "$running" "$results/done" 2>/dev/null \
            && grep -qF -- "$QEMU_ABORT" "$log"; then
            n=$(( ${aborts[$running]:-0} + 1 ))
            aborts[$running]=$n
            why="QEMU aborted ($QEMU_ABORT) in $running ($n of 4)"
            if (( n >= 4 )); then
                skipped+=("$running")
                note "SKIP: $running: the test host's QEMU 7.2 aborted in it 4 times (docs/firmware.md)"
            fi
        else
            deaths=$((deaths + 1))
            why="the test host died (status $rc) after $finished finished tests ($deaths of 3)"
            (( deaths < 3 )) || break
        fi
        (( attempt < 12 )) || break
        note "$why; attempt $((attempt + 1)) runs the others"
    done
    for id in "${skipped[@]}"; do
        note "SKIP: $id: not run to the end; the test host's QEMU 7.2 aborted in it 4 times ($QEMU_ABORT)"
    done
    [[ $rc == 0 ]] || (exit $rc) || ok
fi
exit $status
