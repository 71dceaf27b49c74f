#!/usr/bin/env bash
# net-bench.sh [--build DIR] [--runs N] [--mib MIB] [--also OPTS]
#
# virtio-net throughput against QEMU: the real-guest `net` case
# (tests/guest/test_virtio.py: the virtio block guest with eth0 on a tap
# that the VMM creates, link-local addresses, MIB MiB of random data over
# TCP guest->host then host->guest, both checked by SHA-256) under build/vmm
# and under QEMU's userspace virtio-net-pci on the same tap (`-netdev
# tap,vhost=off`, tests/guest/qemu_adapter.py), alternating, N
# runs each (default 3), all in ONE test host (or directly, as root, on a
# machine whose /dev/kvm runs Linux guests: VMM_NET_TEST_ON_HOST=1 is set).
# The host side (python3) times each direction from the first byte to the
# last. Results: DIR/net-bench/results.txt with the median seconds per
# direction and the ratio QEMU time / our time (above 1: we are faster);
# DIR/net-bench/tcp.txt has each round's TCP_INFO from both ends.
# --also OPTS adds a third contender in every round: build/vmm with OPTS
# appended to its --net spec (e.g. --also packed=off: the split ring, QEMU's
# default, rather than our default packed one).
# In the test host the figures are nested KVM under TCG: compare within one
# run only. A test host that wedges (its heartbeat stops for
# VMM_GUEST_WEDGE_SECONDS, default 60) is killed and a new one runs the
# rounds not yet done, up to VMM_NET_BENCH_ATTEMPTS (default 4) test hosts.
set -euo pipefail
PROG=net-bench.sh
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/../guest/lib.sh"

build="$REPO_ROOT/build" runs=3 mib=64 inner=0 also=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) build=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --mib) mib=$2; shift 2 ;;
        --also) also=$2; shift 2 ;;
        --inner) inner=1; shift ;;  # internal: measure here
        *) sed -n '2p' "$0" | sed 's/^# /usage: /' >&2; exit 1 ;;
    esac
done
out=$build/net-bench
mkdir -p "$out"
runner=$REPO_ROOT/tests/guest/runner.py

if [[ $inner == 0 ]]; then
    # The guest artifacts are built (cached) here, where the cache is writable.
    guest_kernel >/dev/null && guest_test_initramfs >/dev/null && guest_pvh_vmlinux >/dev/null &&
        guest_blk_initramfs >/dev/null && guest_blk_rootfs >/dev/null || die "could not build the guest"
    # A fresh benchmark. Each finished contender-round leaves .done-R-TAG,
    # so a test host restarted after a wedge goes on where it stopped.
    : >"$out/raw.txt"
    : >"$out/tcp.txt"
    rm -rf "$out"/.done-* "$out"/logs-* "$out"/run-*.log
fi
if [[ $inner == 0 ]] && ! "$REPO_ROOT/tests/guest/kvm-usable.sh" >/dev/null 2>&1; then
    # A wedged test host (watch_testhost) is followed by another for the
    # rounds left, at most VMM_NET_BENCH_ATTEMPTS (default 4) test hosts.
    attempts=${VMM_NET_BENCH_ATTEMPTS:-4} wedge_s=${VMM_GUEST_WEDGE_SECONDS:-60}
    for ((a = 1; a <= attempts; a++)); do
        note "running inside the test host ($a of at most $attempts)"
        VMM_GUEST_ROUND=1 "$REPO_ROOT/tests/guest/testhost.sh" --timeout 7200 --scratch "$out" -- \
            "$SELF" --inner --build "$build" --runs "$runs" --mib "$mib" ${also:+--also "$also"} &
        pid=$! wedged=0
        if ! watch_testhost "$pid" "$out" "$wedge_s" "$out/logs-*/.heartbeat"; then
            note "warning: the test host wedged (no heartbeat for $WEDGE_AGE s); killed it"
            wedged=1
        fi
        st=0
        wait "$pid" || st=$?
        [[ $wedged == 1 ]] || exit "$st"
        rm -f "$out"/logs-*/.heartbeat
    done
    die "the test host wedged $attempts times; the rounds done so far are in $out/raw.txt"
fi
export VMM_NET_TEST_ON_HOST=1 VMM_NET_MIB=$mib

for ((r = 1; r <= runs; r++)); do
    for who in vmm qemu ${also:+"vmm+$also"}; do
        tag=${who//[^A-Za-z0-9+=-]/_} opts=""
        [[ $who == vmm+* ]] && opts=${who#vmm+}
        [[ -e $out/.done-$r-$tag ]] && continue  # before a wedge and restart
        log=$out/run-$r-$tag.log
        VMM_NET_OPTS=$opts "$runner" --here --build "$build" --vmm "${who%%+*}" --logdir "$out/logs-$r-$tag" \
            --only '^net$' >"$log" 2>&1 || true
        line=$(grep -E '^  net: ' "$out/logs-$r-$tag/net.info" 2>/dev/null | tail -n 1 || true)
        # "  net: 64 MiB guest->host in 12.34 s, host->guest in 23.45 s"
        if [[ $line =~ guest-\>host\ in\ ([0-9.]+)\ s,\ host-\>guest\ in\ ([0-9.]+)\ s ]] &&
            grep -q '^PASS net ' "$out/logs-$r-$tag/.results" 2>/dev/null; then
            echo "$who ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" >>"$out/raw.txt"
            echo "run $r $who: guest->host ${BASH_REMATCH[1]} s, host->guest ${BASH_REMATCH[2]} s"
        else
            echo "run $r $who: no valid result (see $log)"
        fi
        # Each end's TCP_INFO at the end of its send (guest: blkbench, host:
        # harness.py): RTT, congestion window, what limited the sender.
        grep -h -o -E '(blkbench|tcp-sink|tcp-source): tcp rtt=.*' "$out/logs-$r-$tag/net.console" \
            "$out/logs-$r-$tag/net.host" 2>/dev/null | sed "s/^/run $r $who: /" >>"$out/tcp.txt" || true
        : >"$out/.done-$r-$tag"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR + 1) / 2)]; else print "nan"}'; }
{
    echo "net-bench: $mib MiB each way over TCP, $runs run(s), median seconds (lower is better)"
    for dir in 2 3; do
        name=$([[ $dir == 2 ]] && echo "guest->host" || echo "host->guest")
        q=$(awk -v d=$dir '$1 == "qemu" {print $d}' "$out/raw.txt" | median)
        for who in vmm ${also:+"vmm+$also"}; do
            v=$(awk -v d=$dir -v w="$who" '$1 == w {print $d}' "$out/raw.txt" | median)
            ratio=$(awk -v v="$v" -v q="$q" 'BEGIN { if (v + 0 > 0 && q + 0 > 0) printf "%.2f", q / v; else print "n/a" }')
            printf '%-12s %s %8s s  qemu %8s s  speed ratio (qemu/%s time) %s\n' "$name" "$who" "$v" "$q" "$who" "$ratio"
        done
    done
} | tee "$out/results.txt"
grep -q '^vmm ' "$out/raw.txt" && grep -q '^qemu ' "$out/raw.txt"
