#!/usr/bin/env bash
# kvm-usable.sh [--timeout SEC]
#
# Exits 0 if this machine's /dev/kvm can run a full Linux guest directly,
# 1 otherwise, and prints one line saying why ("kvm-usable: yes: ..." /
# "kvm-usable: no: ...").  This script is the single place that decides
# whether the real-guest tests run directly or inside the test host.
#
# How it decides:
#   1. /dev/kvm missing, not a character device or not openable read-write
#      -> no.
#   2. Otherwise the reference VMM (QEMU, -accel kvm) boots Debian's kernel
#      with the test-mode initramfs.  Reaching "VMMTEST: init started" means
#      the kernel got through everything a VMM under test will need: ring-0
#      int3/iretq (the kernel's int3 self-test and text patching), interrupt
#      delivery, the APIC timer, ACPI -> yes.  On nested setups without
#      hardware virtualization underneath, the kernel stops at its int3
#      self-test with a KVM internal error (see tests/guest/README.md);
#      QEMU then reports "KVM internal error"/"emulation failure" and leaves
#      the VM paused, so those messages end the probe at once -> no.
#      QEMU exiting without the marker, or the timeout (default 120 s, or
#      $KVM_USABLE_TIMEOUT) -> no.  Without QEMU nothing can be verified -> no.
#   A real /dev/kvm answers in 1-3 s; a broken nested one in ~50 s.
#
# VMM_FORCE_TESTHOST=1 makes it answer "no" without probing (to exercise the
# test-host path on a machine whose /dev/kvm works).
set -euo pipefail
PROG=kvm-usable.sh
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/lib.sh"

timeout_s=${KVM_USABLE_TIMEOUT:-120}
while [[ $# -gt 0 ]]; do
    case $1 in
        --timeout) [[ $# -ge 2 ]] || die "--timeout needs a value"; timeout_s=$2; shift 2 ;;
        *) echo "usage: $0 [--timeout SEC]" >&2; exit 1 ;;
    esac
done

no() {
    echo "kvm-usable: no: $*"
    exit 1
}

[[ -n ${VMM_FORCE_TESTHOST:-} && ${VMM_FORCE_TESTHOST} != 0 ]] && no "VMM_FORCE_TESTHOST is set"
[[ -e /dev/kvm ]] || no "/dev/kvm does not exist (no KVM on this machine)"
[[ -c /dev/kvm ]] || no "/dev/kvm is not a character device"
if ! (exec 3<>/dev/kvm) 2>/dev/null; then
    no "/dev/kvm cannot be opened read-write by $(id -un) (permissions? try the kvm group)"
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
    no "/dev/kvm opens, but qemu-system-x86_64 (package qemu-system-x86) is needed to verify that a full Linux guest runs"

kernel=$(guest_kernel)
initrd=$(guest_test_initramfs)
work=$(mktemp -d "${TMPDIR:-/tmp}/kvm-usable.XXXXXX")
qpid=""
cleanup() {
    [[ -n $qpid ]] && kill -KILL "$qpid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

log=$work/console.log
qemu-system-x86_64 -M pc -accel kvm -cpu host -m 256 -smp 1 \
    -nodefaults -no-user-config -display none -nic none -no-reboot \
    -serial "file:$log" -monitor none \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet vmmtest.end=poweroff" \
    </dev/null >"$work/qemu.out" 2>&1 &
qpid=$!

start=$(now_ms)
while :; do
    if grep -q 'VMMTEST: init started' "$log" 2>/dev/null; then
        t=$(($(now_ms) - start))
        echo "kvm-usable: yes: QEMU -accel kvm booted $(basename "$kernel") to its initramfs init in $((t / 1000)).$((t % 1000 / 100)) s"
        exit 0
    fi
    if err=$(grep -h -m1 -i -E 'KVM internal error|emulation failure|KVM: entry failed|failed to initialize kvm|Could not access KVM' "$work/qemu.out" 2>/dev/null); then
        no "QEMU -accel kvm could not run Linux: $err (nested KVM without hardware virtualization underneath?)"
    fi
    if ! kill -0 "$qpid" 2>/dev/null; then
        wait "$qpid" && st=0 || st=$?
        qpid=""
        no "QEMU -accel kvm exited (status $st) before the guest reached init: $(tail -n 2 "$work/qemu.out" | tr '\n' ' ')"
    fi
    if [[ $(($(now_ms) - start)) -gt $((timeout_s * 1000)) ]]; then
        no "QEMU -accel kvm did not reach the guest's init within $timeout_s s (last console line: $(tail -n 1 "$log" 2>/dev/null | tr -d '\r'))"
    fi
    sleep 0.2
done
