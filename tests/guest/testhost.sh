#!/usr/bin/env bash
# testhost.sh [--smp N] [--mem MB] [--timeout SEC] [--scratch DIR] [--kernel PATH] [--] [CMD [ARGS...]]
#
# Boots the software-emulated "test host" (tests/guest/README.md): QEMU TCG
# with an AMD EPYC CPU model plus SVM, so Debian's kernel inside it gets a
# full-fidelity /dev/kvm from kvm-amd.  The build machine's root filesystem is
# exported read-only over 9p and becomes the test host's userland (chroot),
# so every binary here (build/vmm, QEMU, the guest kernels) runs unchanged in
# it.  CMD runs there as root, in the current directory, with the console
# (serial port) as its terminal: its stdout/stderr reach this terminal, and
# testhost.sh exits with CMD's exit status.
#
# Without CMD an interactive bash is started in the test host.
#
#   --smp N        test-host vCPUs (default 1, see below)
#   --mem MB       test-host memory (default 2048)
#   --timeout SEC  kill the test host after SEC seconds (default 3600; 0 = never)
#   --scratch DIR  directory exported writable into the test host at the same
#                  path (default: a fresh temporary directory, removed at exit;
#                  a DIR given here is kept).  Inside, $TESTHOST_SCRATCH names
#                  it; it is the only writable place that outlives the test
#                  host (/tmp inside is a tmpfs, everything else read-only).
#   --kernel PATH  test-host kernel, a bzImage (default: newest /boot/vmlinuz-*,
#                  or $TESTHOST_KERNEL); its modules come from /lib/modules/<ver>.
#                  The ELF vmlinux inside it is extracted (cached) and booted
#                  through its PVH entry, which is 5-10 s faster under TCG.
#
# Exit status: CMD's, read from DIR/exit-status written by the test host's
# init.  If the test host never reported one: 124 after a timeout, 125 if it
# died (both with a "testhost.sh: error:" line on stderr).
#
# Environment passed into the test host: variables named VMM_* and TESTHOST_*,
# CI, TERM.  VMM_TEST_CACHE selects the cache dir of the test-host initramfs
# (default build/test-cache in the repo); it is rebuilt when the kernel,
# busybox or the scripts change.
#
# When stdout is not a terminal, carriage returns from the serial console and
# the kernel's final "reboot: Power down" line are stripped from the output.
set -euo pipefail
PROG=testhost.sh
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
    sed -n '2,3p' "$0" | sed 's/^# \{0,1\}/usage: /' >&2
    exit 1
}

smp=1 mem=2048 timeout_s=3600 scratch="" keep_scratch=0 kernel=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --smp) [[ $# -ge 2 ]] || usage; smp=$2; shift 2 ;;
        --mem) [[ $# -ge 2 ]] || usage; mem=$2; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || usage; timeout_s=$2; shift 2 ;;
        --scratch) [[ $# -ge 2 ]] || usage; scratch=$2; keep_scratch=1; shift 2 ;;
        --kernel) [[ $# -ge 2 ]] || usage; kernel=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) break ;;
    esac
done
[[ $smp =~ ^[0-9]+$ && $mem =~ ^[0-9]+$ && $timeout_s =~ ^[0-9]+$ ]] || usage

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (install qemu-system-x86)"
[[ -n $kernel ]] || kernel=${TESTHOST_KERNEL:-$(newest_kernel)}
[[ -r $kernel ]] || die "cannot read kernel $kernel"
kver=$(kernel_version "$kernel")

# ---- cached test-host initramfs ----
initrd="$(cache_dir)/testhost-$kver.cpio.gz"
key="$(cat "$GUEST_DIR/make-testhost-initramfs.sh" "$GUEST_DIR/lib.sh" | sha256sum | cut -d' ' -f1)"
key+=" $(stamp "$kernel" "$(find_busybox_static)") $(sha256sum "/lib/modules/$kver/modules.dep" | cut -d' ' -f1)"
cached "$initrd" "$key" "$GUEST_DIR/make-testhost-initramfs.sh" --kver "$kver" >&2

# Boot the uncompressed ELF (PVH entry) extracted from the bzImage: under TCG
# the kernel's own XZ decompression costs 5-10 s of every test-host boot.
# TESTHOST_BZIMAGE=1 boots the bzImage instead.
boot_image=$kernel
if [[ -z ${TESTHOST_BZIMAGE:-} ]]; then
    boot_image=$(pvh_vmlinux_for "$kernel") || boot_image=$kernel
fi

# ---- scratch dir ----
if [[ -n $scratch ]]; then
    mkdir -p "$scratch" || die "cannot create $scratch"
    scratch=$(cd "$scratch" && pwd -P)
else
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/testhost.XXXXXX")
    scratch=$(cd "$scratch" && pwd -P)
fi
[[ $scratch =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "scratch path '$scratch' must be absolute without spaces or special characters"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [[ $keep_scratch == 0 ]]; then
        rm -rf "$scratch"
    else
        rm -f "$scratch/.testhost-run.sh"
    fi
}
trap cleanup EXIT
rm -f "$scratch/exit-status"

# ---- the script the test host runs (same cwd, selected environment) ----
runner=$scratch/.testhost-run.sh
{
    echo '#!/bin/bash'
    printf 'cd -- %q || { echo "testhost: cannot cd to %q" >&2; exit 125; }\n' "$PWD" "$PWD"
    while IFS='=' read -r name _; do
        [[ $name =~ ^(VMM_[A-Za-z0-9_]*|TESTHOST_[A-Za-z0-9_]*|CI|TERM)$ ]] || continue
        [[ $name == TESTHOST_SCRATCH ]] && continue
        printf 'export %s=%q\n' "$name" "${!name}"
    done < <(env)
    if [[ -t 0 ]] && size=$(stty size 2>/dev/null); then
        # the serial console has no window size; give it ours
        printf 'stty rows %d cols %d 2>/dev/null\n' "${size% *}" "${size#* }"
    fi
    if [[ $# -gt 0 ]]; then
        printf 'exec'
        printf ' %q' "$@"
        printf '\n'
    else
        echo 'echo "testhost: interactive shell in the test host; exit to power it off"'
        echo 'exec /bin/bash -i'
    fi
} >"$runner"
chmod 755 "$runner"

# cryptomgr.notests: the crypto self-tests cost boot time under TCG and are
# where the rare early-boot hang was seen; the test host needs none of them.
# idle=poll: the test host never executes HLT.  Every wedge seen so far left
# all of its vCPUs halted with timers no longer waking them (TCG); polling
# idle costs one host core, which single-threaded TCG uses anyway.
append="console=ttyS0 panic=-1 ${TESTHOST_KERNEL_ARGS-quiet loglevel=3} mitigations=off cryptomgr.notests idle=poll"
append+=" testhost.scratch=$scratch testhost.run=$runner"
# A checkout under /tmp or /run would be hidden by the test host's tmpfs
# mounts there: export it separately (read-only) and mount it on top.
repo_share=()
case $REPO_ROOT/ in
    /tmp/* | /run/* | /dev/shm/*)
        append+=" testhost.repo=$REPO_ROOT"
        repo_share=(-virtfs "local,path=$REPO_ROOT,mount_tag=repo,security_model=none,readonly=on,multidevs=remap")
        ;;
esac

# EPYC plus SVM; the features TCG cannot emulate are switched off explicitly
# (they would be dropped anyway, with one warning each).
cpu=EPYC,+svm,-rdseed,-sha-ni,-fxsr-opt,-misalignsse,-3dnowprefetch,-osvw,-topoext,-nrip-save,-xsavec

# Why one vCPU and one TCG thread by default (QEMU 7.2, measured here):
# - -smp 2 with multi-threaded TCG: the test host wedged about once in 3 runs
#   of build/kvm_tests: KVM creating/destroying VMs flips static keys
#   (preempt notifiers), the kernel patches __schedule's text with the int3
#   protocol, and one vCPU kept looping on that int3 while the other spun on
#   a lock with interrupts off.  Once it also hung in early boot.
# - -smp 2 with single-threaded TCG: no such hang in 40 kvm_tests runs, but
#   4-vCPU guests of the inner VMM stalled in 2 of 3 boots with every vCPU
#   of the test host idle (a wakeup lost between the test host's vCPUs).
# - -smp 1: 40 kvm_tests runs and repeated 4-vCPU guests, no hang, and no
#   slower than -smp 2 on the 2-core build machines.
# --smp N and TESTHOST_TCG_THREAD=multi|single override this.
tcg_thread=${TESTHOST_TCG_THREAD:-single}

# shellcheck disable=SC2054 # the commas are QEMU's, inside single words
qemu=(qemu-system-x86_64
    -accel "tcg,thread=$tcg_thread" -cpu "$cpu" -smp "$smp" -m "$mem"
    -nodefaults -no-user-config -display none -nic none -no-reboot
    # console: serial port on stdio; ^C goes to the guest, ^A x quits QEMU
    -chardev stdio,id=con0,mux=on,signal=off -serial chardev:con0 -mon chardev=con0
    -kernel "$boot_image" -initrd "$initrd" -append "$append"
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$scratch,mount_tag=scratch,security_model=none,multidevs=remap"
    "${repo_share[@]}"
)
# TESTHOST_QEMU_ARGS: extra QEMU options, split on spaces (debugging aid,
# e.g. "-qmp unix:/tmp/th.qmp,server=on,wait=off").
if [[ -n ${TESTHOST_QEMU_ARGS:-} ]]; then
    read -r -a extra <<<"$TESTHOST_QEMU_ARGS"
    qemu+=("${extra[@]}")
fi
if [[ $timeout_s -gt 0 ]]; then
    qemu=(timeout --foreground -k 10 "$timeout_s" "${qemu[@]}")
fi

# QEMU's stdio chardev needs an open stdin.
{ true <&0; } 2>/dev/null || exec </dev/null

# Boot watchdog: under TCG the test-host kernel very occasionally hangs in
# early boot (seen once in ~20 boots: a soft lockup in a crypto self-test
# thread).  The test host's init creates $scratch/.started right before it
# runs CMD; if that has not happened after $boot_timeout s, QEMU is killed
# and the boot is retried (TESTHOST_BOOT_ATTEMPTS, default 3).
boot_timeout=${TESTHOST_BOOT_TIMEOUT:-150}
attempts=${TESTHOST_BOOT_ATTEMPTS:-3}
watchdog() {
    local i
    for ((i = 0; i < boot_timeout; i++)); do
        sleep 1
        [[ -e $scratch/.started ]] && return 0
    done
    : >"$scratch/.boot-hung"
    [[ -s $scratch/.qemu.pid ]] && kill -TERM "$(cat "$scratch/.qemu.pid")" 2>/dev/null
    return 0
}
qemu+=(-pidfile "$scratch/.qemu.pid")

t0=$(now_ms)
for ((attempt = 1; attempt <= attempts; attempt++)); do
    rm -f "$scratch/.started" "$scratch/.boot-hung" "$scratch/.qemu.pid" "$scratch/exit-status"
    watchdog &
    wpid=$!
    set +e
    if [[ -t 1 ]]; then
        "${qemu[@]}"
        qst=$?
    else
        "${qemu[@]}" | sed -u -e 's/\r$//' -e '/^\(\[ *[0-9.]*\] \)\{0,1\}reboot: Power down$/d'
        qst=${PIPESTATUS[0]}
    fi
    kill "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    set -e
    [[ -e $scratch/.boot-hung ]] || break
    echo "$PROG: warning: the test host did not boot within $boot_timeout s (attempt $attempt of $attempts)" >&2
done
rm -f "$scratch/.started" "$scratch/.qemu.pid"
t1=$(now_ms)
elapsed=$(((t1 - t0) / 1000))

if [[ -e $scratch/.boot-hung ]]; then
    rm -f "$scratch/.boot-hung"
    echo "$PROG: error: the test host did not boot within $boot_timeout s, $attempts times" >&2
    exit 125
fi
if [[ -f $scratch/exit-status ]]; then
    rc=$(cat "$scratch/exit-status")
    [[ $rc =~ ^[0-9]+$ ]] || die "bad exit status '$rc' from the test host"
    [[ -n ${TESTHOST_VERBOSE:-} ]] && note "test host ran for ${elapsed} s, command exit status $rc"
    exit "$rc"
fi
if [[ $qst -eq 124 || $qst -eq 137 ]]; then
    echo "$PROG: error: test host timed out after ${timeout_s} s (no exit status from the command)" >&2
    exit 124
fi
echo "$PROG: error: test host died after ${elapsed} s without reporting an exit status (qemu status $qst)" >&2
exit 125
