#!/usr/bin/env bash
# blk-bench.sh [--build DIR] [--runs N] [--memory MB] [--cpus N] [--size MIB] [--bench-mib MIB] [--seconds S] [--timeout SEC] [--configs LIST]
#
# virtio-blk benchmark: the virtio block guest of the real-guest tests
# (tests/guest/make-blk-guest.sh: module initramfs, ext4 root on /dev/vda)
# runs tests/guest/blkbench.c on /dev/vdb, a raw image of --size MiB
# (default 1024, sparse), under
#   qemu          QEMU -accel kvm -M q35, vdb as
#                 -object iothread,id=io0 -device virtio-blk-pci,drive=d0,iothread=io0
#                 -drive if=none,id=d0,file=IMG,format=raw,aio=io_uring,cache=none
#                 (in the test host the iothread gets poll-max-ns=0, see below)
#   vmm           build/vmm --disk path=IMG,direct=on
#   vmm-buffered  build/vmm --disk path=IMG (host page cache)
# with the same kernel, command line, memory (default 512 MiB) and vCPUs
# (default 1; with N > 1 both get N queues on vdb).  The guest measures
# (O_DIRECT, blkbench bench): sequential write then read of --bench-mib MiB
# (default 128) in 1 MiB requests, then 4 KiB random reads within that region
# at queue depth 1 and 32 (Linux AIO), --seconds each (default 5).  The root
# disk (vda) is a private copy of the root image, never measured.
#
# Where the image lives: it must support O_DIRECT for QEMU's cache=none (and
# the VMM's direct=on), which tmpfs (the test host's /tmp) and 9p (the
# scratch dir) do not.  Inside the test host a RAM block device (brd,
# modprobe'd from the build machine's /lib/modules) is formatted ext4 and
# mounted at /tmp/blk-bench-fs: O_DIRECT works, both VMMs see the same
# medium, and no disk of the build machine is in the figures.  Run directly
# on a KVM host the image goes to DIR/blk-bench/img (override with
# VMM_BLK_BENCH_DIR), i.e. a real disk.  A fresh image per run.
#
# Each figure is the median of N runs (default 3; configurations interleaved
# within each run).  Results: DIR/blk-bench/results.txt and results.tsv, with
# ratios ours / QEMU (for IOPS and MB/s higher is better, for the QD1
# latency lower is better).  In the test host the figures are nested-KVM
# under TCG: compare within one run only.  Exits 1 if a configuration had no
# valid run.
set -euo pipefail
PROG=blk-bench.sh
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/../guest/lib.sh"

usage() {
    sed -n '2p' "$0" | sed 's/^# /usage: /' >&2
    exit 1
}
build="$REPO_ROOT/build" runs=3 mem=512 cpus=1 size_mib=1024 bench_mib=128 seconds=5 run_timeout=600
inner=0 logdir="" configs=qemu,vmm,vmm-buffered
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) [[ $# -ge 2 ]] || usage; build=$2; shift 2 ;;
        --runs) [[ $# -ge 2 ]] || usage; runs=$2; shift 2 ;;
        --memory) [[ $# -ge 2 ]] || usage; mem=$2; shift 2 ;;
        --cpus) [[ $# -ge 2 ]] || usage; cpus=$2; shift 2 ;;
        --size) [[ $# -ge 2 ]] || usage; size_mib=$2; shift 2 ;;
        --bench-mib) [[ $# -ge 2 ]] || usage; bench_mib=$2; shift 2 ;;
        --seconds) [[ $# -ge 2 ]] || usage; seconds=$2; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || usage; run_timeout=$2; shift 2 ;;
        --configs) [[ $# -ge 2 ]] || usage; configs=$2; shift 2 ;;
        --inner) inner=1; shift ;;          # internal: measure here
        --logdir) logdir=$2; shift 2 ;;     # internal
        -h|--help) usage ;;
        *) usage ;;
    esac
done
for v in "$runs" "$mem" "$cpus" "$size_mib" "$bench_mib" "$seconds" "$run_timeout"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "numeric options take positive integers ('$v')"
done
[[ $bench_mib -le $size_mib ]] || die "--bench-mib ($bench_mib) exceeds --size ($size_mib)"
mkdir -p "$build"
build=$(cd "$build" && pwd)
export VMM_TEST_CACHE=${VMM_TEST_CACHE:-$build/test-cache}
command -v qemu-system-x86_64 >/dev/null 2>&1 || die "qemu-system-x86_64 is missing (package qemu-system-x86)"

# ------------------------------------------------------------- outer ----
if [[ $inner == 0 ]]; then
    guest_kernel >/dev/null
    guest_blk_initramfs >/dev/null
    guest_blk_rootfs >/dev/null
    logdir=$build/blk-bench
    rm -rf "$logdir"
    mkdir -p "$logdir"
    inner_args=(--inner --build "$build" --runs "$runs" --memory "$mem" --cpus "$cpus" --size "$size_mib"
        --bench-mib "$bench_mib" --seconds "$seconds" --timeout "$run_timeout" --configs "$configs" --logdir "$logdir")
    if verdict=$("$GUEST_DIR/kvm-usable.sh"); then
        note "$verdict -> measuring directly"
        exec "$SELF" "${inner_args[@]}"
    fi
    note "$verdict -> measuring inside the test host (nested KVM under TCG: compare within this run only)"
    total=$((3 * runs * (run_timeout + 30) + 240))
    # memory: the guest, QEMU/VMM overhead and the RAM disk holding the image
    exec "$GUEST_DIR/testhost.sh" --mem $((2048 + bench_mib * 2)) --timeout "$total" --scratch "$logdir" -- \
        "$SELF" "${inner_args[@]}"
fi

# ------------------------------------------------------------- inner ----
[[ -n $logdir ]] || die "--inner needs --logdir"
kernel=$(guest_kernel)
initrd=$(guest_blk_initramfs)
rootimg=$(guest_blk_rootfs)
vmm=$build/vmm
append="console=ttyS0 panic=-1 quiet vmmtest.cpus=$cpus vmmtest.blk=bench vmmtest.bench_mib=$bench_mib vmmtest.bench_s=$seconds"
names=(qemu vmm vmm-buffered)
keys=(seqwrite_MBps seqread_MBps randread_qd1_iops randread_qd1_lat_us randread_qd32_iops)

work=$(mktemp -d "${TMPDIR:-/tmp}/blk-bench.XXXXXX")
fsdir=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [[ -n $fsdir ]] && mountpoint -q "$fsdir" 2>/dev/null; then
        umount "$fsdir" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The image's filesystem (see the header).
if [[ -n ${VMM_BLK_BENCH_DIR:-} ]]; then
    imgdir=$VMM_BLK_BENCH_DIR
    medium="$imgdir (VMM_BLK_BENCH_DIR)"
elif [[ -n ${TESTHOST:-} ]]; then
    fsdir=/tmp/blk-bench-fs
    mkdir -p "$fsdir"
    [[ -b /dev/ram0 ]] || modprobe brd rd_nr=1 rd_size=$(((size_mib + 64) * 1024)) ||
        die "modprobe brd failed (the RAM disk for the image)"
    mkfs.ext4 -q -F /dev/ram0 || die "mkfs.ext4 /dev/ram0 failed"
    grep -qw ext4 /proc/filesystems || modprobe ext4 || die "modprobe ext4 failed"
    mount -t ext4 /dev/ram0 "$fsdir" || die "mounting /dev/ram0 failed"
    imgdir=$fsdir
    medium="ext4 on a RAM disk (brd) in the test host"
else
    imgdir=$logdir/img
    medium="$imgdir"
fi
mkdir -p "$imgdir"
img=$imgdir/bench.img

# Extra properties of QEMU's iothread (VMM_BLK_BENCH_IOTHREAD overrides).
# In the test host: poll-max-ns=0.  With the iothread's default adaptive
# busy-polling the guest stalled there (RCU stalls, soft lockups, the QD32
# phase never finishing: the poller and the vCPU share the test host's one
# TCG vCPU); without polling the same run completed.  On a real host
# QEMU's defaults stand.
iothread_default=""
[[ -n ${TESTHOST:-} ]] && iothread_default=",poll-max-ns=0"
iothread_opts=${VMM_BLK_BENCH_IOTHREAD-$iothread_default}

# cmd_for NAME DIR: the command line, in the array CMD
cmd_for() {
    local dir=$2 q mq=""
    [[ $cpus -gt 1 ]] && mq=",num_queues=$cpus"
    case $1 in
        qemu)
            # shellcheck disable=SC2054 # QEMU's commas
            CMD=(qemu-system-x86_64 -accel kvm -cpu host -M q35 -smp "$cpus" -m "$mem"
                -nodefaults -no-user-config -display none -nic none -no-reboot
                -serial "file:$dir/console" -monitor none
                -kernel "$kernel" -initrd "$initrd" -append "$append"
                -drive "if=none,id=root,file=$dir/root.img,format=raw" -device virtio-blk-pci,drive=root
                -object "iothread,id=io0$iothread_opts"
                -device "virtio-blk-pci,drive=d0,iothread=io0,num-queues=$cpus"
                -drive "if=none,id=d0,file=$img,format=raw,aio=io_uring,cache=none")
            ;;
        vmm | vmm-buffered)
            q=""
            [[ $1 == vmm ]] && q=",direct=on"
            CMD=("$vmm" --kernel "$kernel" --initramfs "$initrd" --cmdline "$append" --cpus "$cpus"
                --memory "${mem}M" --serial "file=$dir/console" --log-level info
                --disk "path=$dir/root.img" --disk "path=$img$q$mq")
            ;;
    esac
}

available() { # NAME -> 0 if selected and it can run here
    [[ ,$configs, == *,$1,* ]] && [[ $1 != vmm* || -x $vmm ]]
}

# bench_run NAME RUN: appends "k=v ..." (or "fail") to $work/NAME.res
bench_run() {
    local name=$1 run=$2 dir st=0 line ok=1 k v t0
    dir=$work/$name.$run
    mkdir -p "$dir"
    cp --sparse=always "$rootimg" "$dir/root.img"
    rm -f "$img"
    truncate -s "${size_mib}M" "$img"
    cmd_for "$name" "$dir"
    note "run $run $name: starting"
    t0=$(now_ms)
    timeout -k 5 "$run_timeout" "${CMD[@]}" </dev/null >"$dir/stdout" 2>"$dir/stderr" || st=$?
    tr -d '\r' <"$dir/console" 2>/dev/null | grep -E '^(BLKBENCH|VMMTEST)' >"$dir/results" || true
    line=""
    for k in "${keys[@]}"; do
        v=$(sed -n "s/^BLKBENCH $k=\\([0-9.]*\\)\$/\\1/p" "$dir/results" | head -n 1)
        [[ -n $v ]] || ok=0
        line+="$k=${v:--} "
    done
    grep -q '^BLKBENCH done' "$dir/results" || ok=0
    grep -q '^VMMTEST: FAIL' "$dir/results" && ok=0
    [[ $st -eq 0 ]] || ok=0
    if [[ $ok == 1 ]]; then
        echo "$line" >>"$work/$name.res"
        note "run $run $name ($(elapsed_ms_to_s "$t0") s): $line"
    else
        echo fail >>"$work/$name.res"
        note "run $run $name: FAILED (status $st); console tail:"
        tr -d '\r' <"$dir/console" 2>/dev/null | tail -n 10 | sed 's/^/    /' >&2 || true
        tail -n 5 "$dir/stderr" | sed 's/^/    stderr: /' >&2
    fi
    rm -f "$dir/root.img" "$img"
    { mkdir -p "$logdir/$name.$run" && cp -r "$dir"/. "$logdir/$name.$run/"; } || true
}

elapsed_ms_to_s() {
    local t=$(($(now_ms) - $1))
    echo "$((t / 1000)).$((t % 1000 / 100))"
}

median() {
    { grep -E '^[0-9.]+$' || true; } | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else print a[int((NR + 1) / 2)] }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'
}

where="directly on /dev/kvm"
[[ -n ${TESTHOST:-} ]] && where="inside the test host (nested KVM under QEMU TCG): compare within this table only"
note "$(basename "$kernel"), ${mem} MiB, $cpus vCPU(s), image ${size_mib} MiB on $medium, $runs run(s), $where"
[[ -x $vmm ]] || note "$vmm not found: only QEMU is measured"

for ((r = 1; r <= runs; r++)); do
    for n in "${names[@]}"; do
        available "$n" && bench_run "$n" "$r"
    done
done

declare -A VAL OK
bad=0
for n in "${names[@]}"; do
    if ! available "$n"; then
        OK[$n]=skipped
        for k in "${keys[@]}"; do VAL[$n.$k]=n/a; done
        continue
    fi
    for k in "${keys[@]}"; do
        VAL[$n.$k]=$({ grep -v '^fail' "$work/$n.res" 2>/dev/null || true; } | tr ' ' '\n' | sed -n "s/^$k=//p" | median)
    done
    nok=$(grep -cv '^fail' "$work/$n.res" 2>/dev/null || true)
    OK[$n]="${nok:-0}/$runs"
    [[ ${nok:-0} -gt 0 ]] || bad=1
done

{
    echo
    echo "blk-bench: $(basename "$kernel"), ${mem} MiB, $cpus vCPU(s), vdb = ${size_mib} MiB raw image on $medium"
    echo "guest: blkbench O_DIRECT, seq 1 MiB x ${bench_mib} MiB, 4 KiB random reads ${seconds} s each; median of $runs run(s)"
    echo "QEMU: -M q35, -object iothread,id=io0${iothread_opts}, aio=io_uring,cache=none; vmm: direct=on / vmm-buffered: none"
    echo "measured $where"
    printf '%-13s %12s %12s %12s %14s %13s %8s\n' config "seqwr MB/s" "seqrd MB/s" "rr QD1 IOPS" "QD1 lat us" "rr QD32 IOPS" "ok runs"
    for n in "${names[@]}"; do
        printf '%-13s %12s %12s %12s %14s %13s %8s\n' "$n" "${VAL[$n.seqwrite_MBps]}" "${VAL[$n.seqread_MBps]}" \
            "${VAL[$n.randread_qd1_iops]}" "${VAL[$n.randread_qd1_lat_us]}" "${VAL[$n.randread_qd32_iops]}" "${OK[$n]}"
    done
    echo
    printf '%-22s %8s %8s %8s %8s %8s\n' "ratio (ours / QEMU)" seqwr seqrd QD1 "QD1 lat" QD32
    for a in vmm vmm-buffered; do
        printf '%-22s %8s %8s %8s %8s %8s\n' "$a / qemu" \
            "$(ratio "${VAL[$a.seqwrite_MBps]}" "${VAL[qemu.seqwrite_MBps]}")" \
            "$(ratio "${VAL[$a.seqread_MBps]}" "${VAL[qemu.seqread_MBps]}")" \
            "$(ratio "${VAL[$a.randread_qd1_iops]}" "${VAL[qemu.randread_qd1_iops]}")" \
            "$(ratio "${VAL[$a.randread_qd1_lat_us]}" "${VAL[qemu.randread_qd1_lat_us]}")" \
            "$(ratio "${VAL[$a.randread_qd32_iops]}" "${VAL[qemu.randread_qd32_iops]}")"
    done
} | tee "$logdir/results.txt"

{
    printf 'config'
    printf '\t%s' "${keys[@]}" ok_runs
    printf '\n'
    for n in "${names[@]}"; do
        printf '%s' "$n"
        for k in "${keys[@]}"; do printf '\t%s' "${VAL[$n.$k]}"; done
        printf '\t%s\n' "${OK[$n]}"
    done
} >"$logdir/results.tsv"

exit "$bad"
