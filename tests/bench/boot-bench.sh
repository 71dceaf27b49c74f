#!/usr/bin/env bash
# boot-bench.sh [--build DIR] [--runs N] [--memory MB] [--timeout SEC] [--configs LIST]
#
# Boot benchmark: the same Debian kernel and the same test-mode initramfs
# (tests/guest/make-guest-initramfs.sh --mode test), 1 vCPU, --memory MB
# (default 256), booted side by side in the same host and the same run by
#   qemu-pc       QEMU -M pc -nodefaults, the bzImage (SeaBIOS + linuxboot)
#   qemu-microvm  QEMU -M microvm,x-option-roms=off,pit=off,pic=off,rtc=on,
#                 the PVH ELF extracted from the bzImage (with rtc=off, or
#                 with microvm's defaults, Debian's 6.1 kernel hangs in
#                 early boot under QEMU 7.2)
#   vmm-bzimage   build/vmm, the bzImage
#   vmm-pvh       build/vmm, the PVH ELF
# Guest command line: console=ttyS0 panic=-1 quiet vmmtest.cpus=1
# vmmtest.mem_mb=MB (quiet: the kernel log over an emulated UART would
# dominate the figures).  Measured for each:
#   init     wall time from starting the VMM process to the guest's
#            "VMMTEST: init started" console line, taken when that line
#            comes out of the VMM's stdout pipe (tee -p to the log, and
#            grep --line-buffered -m1 for the marker: a slow reader would
#            stall the guest's UART and the guest with it)
#   exit     wall time until the VMM exited (the guest powers off after its
#            checks); a run counts only if it exited 0 with "VMMTEST: done"
#            and no "VMMTEST: FAIL"
#   KVM_RUN  time from the VMM's execve to its first KVM_RUN ioctl, from
#            `strace -f --seccomp-bpf -ttt -e trace=execve,ioctl` in separate
#            runs (killed right after the first KVM_RUN), for every VMM alike
#            so that strace does not distort the other figures; build/vmm's
#            own --boot-report figure ("first KVM_RUN at <ms> ms", from its
#            process start) is shown beside it as "self"
#   RSS      peak RSS of the VMM process (GNU time's %M, i.e. ru_maxrss),
#            which includes the guest RAM the guest touched
# --configs takes a comma-separated subset of the four names (default: all;
# the build/vmm ones are left out when build/vmm does not exist).  --timeout
# bounds each VMM run (default 240 s).
# Each figure is the median of N runs (default 3; the configurations are
# interleaved within each run).  Ratios are ours / QEMU: vmm-bzimage against
# qemu-pc, vmm-pvh against qemu-microvm.
#
# Where /dev/kvm cannot run Linux guests (tests/guest/kvm-usable.sh) the whole
# benchmark runs inside the software-emulated test host (testhost.sh): the
# figures are then TCG figures, meaningful only as ratios within one run.
# Results are also written to DIR/boot-bench/results.txt and results.tsv.
# Exits 1 if some configuration had no valid run.
set -euo pipefail
PROG=boot-bench.sh
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/../guest/lib.sh"

usage() {
    sed -n '2p' "$0" | sed 's/^# /usage: /' >&2
    exit 1
}
build="$REPO_ROOT/build" runs=3 mem=256 run_timeout=240 inner=0 logdir="" configs=qemu-pc,qemu-microvm,vmm-bzimage,vmm-pvh
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) [[ $# -ge 2 ]] || usage; build=$2; shift 2 ;;
        --runs) [[ $# -ge 2 ]] || usage; runs=$2; shift 2 ;;
        --memory) [[ $# -ge 2 ]] || usage; mem=$2; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || usage; run_timeout=$2; shift 2 ;;
        --configs) [[ $# -ge 2 ]] || usage; configs=$2; shift 2 ;;
        --inner) inner=1; shift ;;          # internal: measure here
        --logdir) logdir=$2; shift 2 ;;     # internal
        -h|--help) usage ;;
        *) usage ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ && $mem =~ ^[1-9][0-9]*$ && $run_timeout =~ ^[1-9][0-9]*$ ]] ||
    die "--runs, --memory and --timeout take positive numbers"
mkdir -p "$build"
build=$(cd "$build" && pwd)
export VMM_TEST_CACHE=${VMM_TEST_CACHE:-$build/test-cache}

for t in qemu-system-x86_64 strace /usr/bin/time setsid timeout; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (packages: qemu-system-x86 strace time util-linux coreutils)"
done

# ------------------------------------------------------------- outer ----
if [[ $inner == 0 ]]; then
    guest_kernel >/dev/null
    guest_test_initramfs >/dev/null
    guest_pvh_vmlinux >/dev/null
    logdir=$build/boot-bench
    rm -rf "$logdir"
    mkdir -p "$logdir"
    inner_args=(--inner --build "$build" --runs "$runs" --memory "$mem" --timeout "$run_timeout"
        --configs "$configs" --logdir "$logdir")
    if verdict=$("$GUEST_DIR/kvm-usable.sh"); then
        note "$verdict -> measuring directly"
        exec "$SELF" "${inner_args[@]}"
    fi
    note "$verdict -> measuring inside the test host (TCG timings: compare within this run only)"
    # 4 configurations x runs x (timed run + strace run)
    total=$((4 * runs * (run_timeout + 60) + 180))
    exec "$GUEST_DIR/testhost.sh" --timeout "$total" --scratch "$logdir" -- "$SELF" "${inner_args[@]}"
fi

# ------------------------------------------------------------- inner ----
[[ -n $logdir ]] || die "--inner needs --logdir"
kernel=$(guest_kernel)
initrd=$(guest_test_initramfs)
vmlinux=$(guest_pvh_vmlinux)
vmm=$build/vmm
append="console=ttyS0 panic=-1 quiet vmmtest.cpus=1 vmmtest.mem_mb=$mem"
names=(qemu-pc qemu-microvm vmm-bzimage vmm-pvh)

# cmd_for NAME: the command line, in the array CMD
cmd_for() {
    local q=(qemu-system-x86_64 -accel kvm -cpu host -smp 1 -m "$mem"
        -nodefaults -no-user-config -display none -nic none -no-reboot
        -serial stdio -monitor none -initrd "$initrd" -append "$append")
    case $1 in
        qemu-pc) CMD=("${q[@]}" -M pc -kernel "$kernel") ;;
        qemu-microvm) CMD=("${q[@]}" -M "microvm,x-option-roms=off,pit=off,pic=off,rtc=on" -kernel "$vmlinux") ;;
        vmm-bzimage) CMD=("$vmm" --kernel "$kernel" --initramfs "$initrd" --cmdline "$append"
            --cpus 1 --memory "${mem}M" --boot-report) ;;
        vmm-pvh) CMD=("$vmm" --kernel "$vmlinux" --initramfs "$initrd" --cmdline "$append"
            --cpus 1 --memory "${mem}M" --boot-report) ;;
    esac
}

available() { # NAME -> 0 if selected and it can run here
    [[ ,$configs, == *,$1,* ]] && [[ $1 != vmm-* || -x $vmm ]]
}

# watch_init T0 MARKFILE: consume the console on stdin; when the init marker
# passes, write the ms since T0 (an EPOCHREALTIME) to MARKFILE.
watch_init() {
    local t0=${1/./} now
    if grep --line-buffered -m1 -F 'VMMTEST: init started' >/dev/null; then
        now=${EPOCHREALTIME/./}
        echo $(((now - t0) / 1000)) >"$2"
    fi
    cat >/dev/null # keep draining (tee -p would cope, this is cheaper)
}

# timed_run NAME RUN: console timestamps, exit time, peak RSS.  Appends
# "init_ms exit_ms rss_kb self_ms" (or "fail ...") to $work/NAME.timed.
timed_run() {
    local name=$1 run=$2 dir t0 st init total rss self
    dir=$work/$name.$run # local tmpfs; copied to $logdir afterwards
    mkdir -p "$dir"
    cmd_for "$name"
    rm -f "$dir/init_ms"
    t0=$EPOCHREALTIME
    { /usr/bin/time -f '%M' -o "$dir/rss" timeout -k 5 "$run_timeout" "${CMD[@]}" \
        </dev/null 2>"$dir/stderr" && echo 0 >"$dir/status" || echo $? >"$dir/status"; } |
        tee -p "$dir/console" | watch_init "$t0" "$dir/init_ms"
    total=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
    st=$(cat "$dir/status")
    init=$(cat "$dir/init_ms" 2>/dev/null || true)
    rss=$(grep -E '^[0-9]+$' "$dir/rss" | tail -n 1 || true)
    self=$(sed -n 's/^vmm: boot: first KVM_RUN at \([0-9.]*\) ms.*/\1/p' "$dir/stderr" | head -n 1)
    if [[ $st == 0 && -n $init ]] && tr -d '\r' <"$dir/console" | grep -E '^VMMTEST: done' >/dev/null &&
        ! tr -d '\r' <"$dir/console" | grep -E '^VMMTEST: FAIL' >/dev/null; then
        echo "$init $total ${rss:--} ${self:--}" >>"$work/$name.timed"
        note "run $run $name: init ${init} ms, exit ${total} ms, peak RSS ${rss:-?} KiB${self:+, self-reported first KVM_RUN $self ms}"
    else
        echo "fail" >>"$work/$name.timed"
        note "run $run $name: FAILED (status $st, init marker: ${init:-none}); console tail:"
        tr -d '\r' <"$dir/console" | tail -n 8 | sed 's/^/    /' >&2
        tail -n 5 "$dir/stderr" | sed 's/^/    stderr: /' >&2
    fi
    { mkdir -p "$logdir/$name.$run" && cp -r "$dir"/. "$logdir/$name.$run/"; } || true
}

# strace_run NAME RUN: ms from execve to the first KVM_RUN; appends to
# $work/NAME.kvmrun.  The VMM is killed as soon as that line appears.
strace_run() {
    local name=$1 run=$2 dir pid i ms
    dir=$work/$name.$run # local tmpfs; copied to $logdir afterwards
    mkdir -p "$dir"
    cmd_for "$name"
    rm -f "$dir/strace"
    # own session/process group, so that one kill ends strace and the VMM
    setsid strace -f --seccomp-bpf -ttt -e trace=execve,ioctl -o "$dir/strace" "${CMD[@]}" \
        </dev/null >/dev/null 2>"$dir/strace.stderr" &
    pid=$!
    for ((i = 0; i < run_timeout * 10; i++)); do
        grep -q 'KVM_RUN' "$dir/strace" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ms=$(awk '/execve\(/ && s == "" { s = $2 } /KVM_RUN/ && r == "" { r = $2 }
              END { if (s != "" && r != "") printf "%d\n", (r - s) * 1000; else print "fail" }' "$dir/strace" 2>/dev/null || echo fail)
    echo "$ms" >>"$work/$name.kvmrun"
    note "run $run $name: first KVM_RUN ${ms} ms after execve (strace)"
    { mkdir -p "$logdir/$name.$run" && cp -r "$dir"/. "$logdir/$name.$run/"; } || true
}

# median of the numbers on stdin ("-" if none)
median() {
    { grep -E '^[0-9.]+$' || true; } | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else print a[int((NR + 1) / 2)] }'
}
col() { # FILE N: column N of the valid lines
    [[ -f $1 ]] || return 0
    grep -v '^fail' "$1" | awk -v n="$2" '{ print $n }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/boot-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

where="directly on /dev/kvm"
[[ -n ${TESTHOST:-} ]] && where="inside the test host (QEMU TCG + nested SVM): TCG timings, compare within this table only"
note "$(basename "$kernel"), ${mem} MiB, 1 vCPU, $runs run(s), $where"
[[ -x $vmm ]] || note "$vmm not found: only QEMU is measured"

for ((r = 1; r <= runs; r++)); do
    for n in "${names[@]}"; do
        available "$n" && timed_run "$n" "$r"
    done
    for n in "${names[@]}"; do
        available "$n" && strace_run "$n" "$r"
    done
done

declare -A INIT EXIT RSS SELF KRUN OK
bad=0
for n in "${names[@]}"; do
    if ! available "$n"; then
        INIT[$n]=n/a EXIT[$n]=n/a RSS[$n]=n/a SELF[$n]=n/a KRUN[$n]=n/a OK[$n]="skipped"
        continue
    fi
    INIT[$n]=$(col "$work/$n.timed" 1 | median)
    EXIT[$n]=$(col "$work/$n.timed" 2 | median)
    RSS[$n]=$(col "$work/$n.timed" 3 | median)
    [[ ${RSS[$n]} != - ]] && RSS[$n]=$(awk -v k="${RSS[$n]}" 'BEGIN { printf "%.1f", k / 1024 }')
    SELF[$n]=$(col "$work/$n.timed" 4 | median)
    KRUN[$n]=$(col "$work/$n.kvmrun" 1 | median)
    nok=$(grep -cv '^fail' "$work/$n.timed" 2>/dev/null || true)
    OK[$n]="${nok:-0}/$runs"
    [[ ${nok:-0} -gt 0 ]] || bad=1
done

{
    echo
    echo "boot-bench: $(basename "$kernel"), ${mem} MiB, 1 vCPU, test-mode initramfs, median of $runs run(s)"
    echo "measured $where"
    printf '%-13s %10s %10s %17s %14s %15s %8s\n' config "init ms" "exit ms" "1st KVM_RUN ms" "(self-report)" "peak RSS MiB" "ok runs"
    for n in "${names[@]}"; do
        printf '%-13s %10s %10s %17s %14s %15s %8s\n' "$n" "${INIT[$n]}" "${EXIT[$n]}" "${KRUN[$n]}" "${SELF[$n]}" "${RSS[$n]}" "${OK[$n]}"
    done
    echo
    printf '%-26s %6s %6s %12s %9s\n' "ratio (ours / QEMU)" init exit "1st KVM_RUN" "peak RSS"
    for pair in "vmm-bzimage qemu-pc" "vmm-pvh qemu-microvm"; do
        read -r a b <<<"$pair"
        printf '%-26s %6s %6s %12s %9s\n' "$a / $b" "$(ratio "${INIT[$a]}" "${INIT[$b]}")" \
            "$(ratio "${EXIT[$a]}" "${EXIT[$b]}")" "$(ratio "${KRUN[$a]}" "${KRUN[$b]}")" "$(ratio "${RSS[$a]}" "${RSS[$b]}")"
    done
} | tee "$logdir/results.txt"

{
    printf 'config\tinit_ms\texit_ms\tfirst_kvm_run_ms_strace\tfirst_kvm_run_ms_self\tpeak_rss_mib\tok_runs\n'
    for n in "${names[@]}"; do
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "${INIT[$n]}" "${EXIT[$n]}" "${KRUN[$n]}" "${SELF[$n]}" "${RSS[$n]}" "${OK[$n]}"
    done
} >"$logdir/results.tsv"

exit "$bad"
