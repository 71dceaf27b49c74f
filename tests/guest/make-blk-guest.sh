#!/usr/bin/env bash
# make-blk-guest.sh --initramfs OUT.cpio.gz [--kver VERSION]
# make-blk-guest.sh --rootfs OUT.img --blkbench BIN [--hostile BIN] [--rtctest BIN] [--size MIB]
#
# The two halves of the virtio block/console guest (the suite's
# blk-* and console cases, tests/bench/blk-bench.sh).  Neither needs root.
#
# --initramfs: a busybox initramfs carrying the modules Debian's kernel has
#   as modules (virtio, virtio_ring, virtio_pci_{legacy,modern}_dev,
#   virtio_pci, virtio_blk, virtio_console, virtio-rng, virtio_balloon,
#   virtio_net (with failover, net_failover), crc16, mbcache, jbd2, ext4 and the
#   crc32c implementations ext4's metadata checksums need), copied from
#   /lib/modules/VERSION (default: the newest kernel's) in modules.dep order
#   (.ko.xz/.ko.zst/.ko.gz are decompressed).  Its /init:
#     1. prints "VMMTEST: init started" and writes 0x01 to port 0x440,
#     2. mounts proc, sys, devtmpfs; insmods the modules in order
#        ("VMMTEST: FAIL insmod <m>" if one fails),
#     3. waits up to 20 s for vmmtest.root= (default /dev/vda), mounts it as
#        ext4 (read-write) on /newroot, moves /dev there and switch_roots
#        into /sbin/vmmtest-blk.  If the root never appears it prints
#        "VMMTEST: FAIL root ..." with /proc/partitions and powers off.
#
# --rootfs: an ext4 image (mke2fs -d from a staging dir, no loop mount) of
#   SIZE MiB (default 48) holding busybox, BIN as /bin/blkbench, the --hostile
#   BIN (hostile.c) as /bin/vmmhostile, the --rtctest BIN (rtctest.c) as
#   /bin/vmmrtc and the test script /sbin/vmmtest-blk.  That script reports to the console and, once it
#   exists, /dev/hvc0 (virtio-console port 0), and runs what vmmtest.blk=
#   says (the host side of each case is in tests/guest/test_virtio.py):
#     root       / is ext4 on /dev/vda, read-write (a file written, synced,
#                read back); virtio interrupts are PCI-MSI(-X) lines in
#                /proc/interrupts, or IO-APIC lines with vmmtest.irq=intx
#     integrity  blkbench pattern-write /dev/vdb SEED_W COUNT (vmmtest.seed_w,
#                vmmtest.count); /dev/vdc is read-only (sysfs ro=1), holds
#                the host's pattern (pattern-verify SEED_R COUNT) and a write
#                to it fails
#     images     disk image formats: /dev/vdb (a qcow2 overlay on a raw base)
#                holds the host's pattern SEED_R and gets pattern-write
#                SEED_W; /dev/vdc (a compressed qcow2) holds SEED_R;
#                /dev/vdd (snapshot=on over zeros) gets pattern-write SEED_W
#                and reads it back
#     discard    /dev/vdb advertises discard; blkdiscard of its first
#                vmmtest.discard_mib MiB
#     mq         /sys/block/vda/mq and vdb/mq have vmmtest.queues hardware
#                queues; blkbench (8 MiB, QD 1 and 32 reads) on /dev/vdb works
#     console    "VMMTEST: hvc0 <token>" written to /dev/hvc0; with
#                vmmtest.hvc_in=<token> a line is read from /dev/hvc0 (10 s)
#                and compared
#     balloon    virtio_balloon bound; touches most free memory and frees
#                it ("VMMTEST: balloon touched N"), waits for MemTotal to
#                drop by vmmtest.balloon_mib (the host inflates), says
#                "balloon inflated", waits for it to come back (the host
#                deflates) and touches the memory again
#     balloon-report  fills most free memory with a tmpfs file ("VMMTEST:
#                report filled N"), frees it 3 s later ("report freed"),
#                then sleeps vmmtest.hold_s while the host watches free page
#                reporting and stops the VM
#     net        eth0 is bound to virtio_net (with vmmtest.queues: that many
#                rx queues); vmmtest.net_ip/24 on it; ping vmmtest.net_peer;
#                then vmmtest.net_mib MiB of random data to the peer's TCP
#                port 5001 ("net tx-sha SHA" first) and the same amount
#                received on port 5002 after "net listening" ("net rx-sha
#                SHA SIZE"); the host side checks the checksums. Both
#                transfers use blkbench tcp-send/tcp-recv (1 MiB writes and
#                reads; busybox nc's 8 KiB loop was the bottleneck)
#                vmmtest.hvc_in=<token> a line is read from /dev/hvc0
#                and compared (60 s: the host reads the control API counters first)
#     serial     named virtio-serial ports vmmtest.ser_names=ONE,TWO: both in
#                /sys/class/virtio-ports; "VMMTEST-SERIAL one <token>" written to
#                ONE, a line read back and compared with vmmtest.ser_one, ONE
#                closed; "VMMTEST-SERIAL two <token>" written to TWO, which
#                must then yield vmmtest.ser_two and EOF (host disconnect)
#     bench      blkbench bench /dev/vdb vmmtest.bench_mib vmmtest.bench_s
#     scsi       virtio-scsi, target 0: vmmtest.scsi_luns LUNs in sysfs; LUNs 0
#                and 1 get blkbench pattern-write (seeds SEED_W and SEED_W+1);
#                LUN 2 is read-only (sysfs ro=1, holds the host's pattern
#                SEED_R, writes refused, also when forced); LUN 5 advertises
#                discard and blkdiscards its first vmmtest.discard_mib MiB;
#                LUN 3 is a CD-ROM (type 5) whose iso9660 /vmmtest.txt holds
#                vmmtest.token
#     cidata     the cloud-init seed (--cloud-init) is the one SCSI LUN: an
#                ISO 9660 volume "cidata" (read from its primary volume
#                descriptor); mounted, its Rock Ridge
#                names user-data and network-config have the md5 sums
#                vmmtest.ud_md5 and vmmtest.nc_md5, and meta-data says
#                "instance-id: iid-vmmtest.uuid" and "local-hostname: vmm"
#     scsi-many  vmmtest.scsi_luns sd disks appear (LUNs 0..N-1 of target 0)
#                and the last one reads
#     net-ping   the root checks, then net's first half: eth0 on virtio_net,
#                the address, ping vmmtest.net_peer (no transfers)
#     durable    for each disk in vmmtest.durable (vdX or lunN, comma-separated):
#                write-back cache advertised, blkbench pattern-write of
#                seed SEED_W+index (O_DIRECT writes, fsync); then "VMMTEST:
#                flushed" and a 600 s sleep (the host kills the VMM)
#     hostile    vmmhostile (hostile.c) attacks the VMM: every I/O port, then
#                every virtio PCI device but the root disk's, vmmtest.rounds
#                rounds each (seed SEED_W); then, with the drivers bound again,
#                the read-only disk with serial vmmtest-ro and SCSI LUN 0 still
#                hold the host's pattern (SEED_R, SEED_R+1), the rng reads and
#                the root file system takes a write; "VMMTEST: hostile checked",
#                then a "VMMTEST: tick N" line a second for vmmtest.hold_s s
#     enospc     vdb and SCSI LUN 0 sit on a too-small host file system:
#                blkbench fill of vmmtest.fill_mib MiB fails on each with an
#                I/O error, then both still read
#     rtc        the kernel's rtc_cmos lines ("VMMTEST: info rtc-dmesg ..."),
#                then vmmrtc (rtctest.c) on /dev/rtc0: periodic, alarm and
#                update interrupts, a set time read back, the chip's own
#                periodic interrupt on IRQ 8; its lines as "VMMTEST: info RTC ..."
#   then prints "VMMTEST: done" (and 0x02 to port 0x440) and powers off.
#   Results are "VMMTEST: PASS|FAIL|SKIP <check> ..." lines.
set -euo pipefail
PROG=make-blk-guest.sh
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
    sed -n '2,3p' "$0" | sed 's/^# /usage: /' >&2
    exit 1
}

what="" out="" kver="" blkbench="" hostile="" rtctest="" size_mib=48
while [[ $# -gt 0 ]]; do
    case $1 in
        --initramfs|--rootfs) what=${1#--}; [[ $# -ge 2 ]] || usage; out=$2; shift 2 ;;
        --kver) [[ $# -ge 2 ]] || usage; kver=$2; shift 2 ;;
        --blkbench) [[ $# -ge 2 ]] || usage; blkbench=$2; shift 2 ;;
        --hostile) [[ $# -ge 2 ]] || usage; hostile=$2; shift 2 ;;
        --rtctest) [[ $# -ge 2 ]] || usage; rtctest=$2; shift 2 ;;
        --size) [[ $# -ge 2 ]] || usage; size_mib=$2; shift 2 ;;
        *) # cached() appends the temporary output path
            [[ -n $what && $1 != -* ]] || usage; out=$1; shift ;;
    esac
done
[[ -n $what && -n $out ]] || usage

busybox=$(find_busybox_static)
work=$(mktemp -d "${TMPDIR:-/tmp}/blk-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# busybox tree with one relative symlink per applet
busybox_tree() {
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc,run,mnt}
    cp "$busybox" "$root/bin/busybox"
    local applet target
    while read -r applet; do
        [[ $applet == bin/busybox ]] && continue
        case $applet in
            bin/*) target=busybox ;;
            sbin/*) target=../bin/busybox ;;
            usr/bin/*|usr/sbin/*) target=../../bin/busybox ;;
            *) target=/bin/busybox ;;
        esac
        ln -sf "$target" "$root/$applet"
    done < <("$busybox" --list-full)
    echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
}

# ------------------------------------------------------------ initramfs --
build_initramfs() {
    [[ -n $kver ]] || kver=$(kernel_version "$(newest_kernel)")
    local mdir=/lib/modules/$kver
    [[ -f $mdir/modules.dep ]] || die "$mdir/modules.dep not found"
    busybox_tree
    mkdir -p "$root/newroot" "$root/lib/modules"

    # Dependency-ordered module list (modules.dep: "path: dep dep ..."; each
    # module after its dependencies).  Optional ones may be missing or built in.
    local want=(virtio_pci virtio_blk virtio_console virtio-rng virtio_balloon virtio_net crc32c_generic crc32c-intel ext4
        virtio_scsi sd_mod sr_mod isofs)
    declare -A seen=()
    local order=()
    add_module() { # NAME-or-PATH
        local m=$1 line path deps d
        if [[ $m == */* ]]; then
            line=$(grep -E "^${m}:" "$mdir/modules.dep" || true)
        else
            line=$(grep -E "/${m}\\.ko(\\.[a-z]+)?:" "$mdir/modules.dep" || true)
        fi
        [[ -n $line ]] || return 0 # built in (or absent): nothing to load
        path=${line%%:*}
        [[ -z ${seen[$path]:-} ]] || return 0
        seen[$path]=1
        deps=${line#*:}
        for d in $deps; do add_module "$d"; done
        order+=("$path")
    }
    local m
    for m in "${want[@]}"; do add_module "$m"; done
    [[ ${#order[@]} -gt 0 ]] || die "none of ${want[*]} is a module in $mdir"

    local p base
    : >"$root/lib/modules/order"
    for p in "${order[@]}"; do
        base=$(basename "$p")
        case $base in
            *.ko.xz) xz -dc "$mdir/$p" >"$root/lib/modules/${base%.xz}"; base=${base%.xz} ;;
            *.ko.zst) zstd -qdc "$mdir/$p" >"$root/lib/modules/${base%.zst}"; base=${base%.zst} ;;
            *.ko.gz) gzip -dc "$mdir/$p" >"$root/lib/modules/${base%.gz}"; base=${base%.gz} ;;
            *) cp "$mdir/$p" "$root/lib/modules/$base" ;;
        esac
        echo "$base" >>"$root/lib/modules/order"
    done

    cat >"$root/init" <<'EOF'
#!/bin/sh
# virtio block guest, stage 1: load the modules, switch_root into /dev/vda.
echo "VMMTEST: init started"
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
printf '\001' | dd of=/dev/port bs=1 seek=1088 count=1 conv=notrunc 2>/dev/null
fatal() {
    echo "VMMTEST: FAIL $*"
    echo "VMMTEST: done"
    poweroff -f
    sleep 5
}
while read -r m; do
    case $m in
        crc32c-intel.ko) insmod "/lib/modules/$m" 2>/dev/null ;; # needs SSE4.2; generic is the fallback
        *) insmod "/lib/modules/$m" || echo "VMMTEST: FAIL insmod $m" ;;
    esac
done </lib/modules/order
root=/dev/vda
for w in $(cat /proc/cmdline); do
    case $w in vmmtest.root=*) root=${w#vmmtest.root=} ;; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b "$root" ]; then
    echo "VMMTEST: info /proc/partitions: $(tr '\n' ' ' </proc/partitions)"
    echo "VMMTEST: info lspci: $(cat /sys/bus/pci/devices/*/uevent 2>/dev/null | grep PCI_ID | tr '\n' ' ')"
    fatal root "$root did not appear within 20 s"
fi
mount -t ext4 -o rw "$root" /newroot || fatal root "mount -t ext4 $root failed"
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /sbin/vmmtest-blk
EOF
    chmod 755 "$root/init"
    mkdir -p "$(dirname "$out")"
    {
        (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible)
        newc_dev_nodes
    } | gzip -9 -n >"$out"
    echo "$PROG: wrote $out (modules: $(tr '\n' ' ' <"$root/lib/modules/order"))" >&2
}

# --------------------------------------------------------------- rootfs --
build_rootfs() {
    [[ -x $blkbench ]] || die "--blkbench BIN is required for --rootfs"
    command -v mke2fs >/dev/null || die "mke2fs is missing (package e2fsprogs)"
    busybox_tree
    cp "$blkbench" "$root/bin/blkbench"
    if [[ -n $hostile ]]; then cp "$hostile" "$root/bin/vmmhostile"; fi
    if [[ -n $rtctest ]]; then cp "$rtctest" "$root/bin/vmmrtc"; fi
    mkdir -p "$root/var"
    echo "vmm blk test root" >"$root/etc/vmmtest-root"

    cat >"$root/sbin/vmmtest-blk" <<'EOF'
#!/bin/sh
# virtio block guest, stage 2 (on the ext4 root): the checks of vmmtest.blk=.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp

# Everything goes to the console and, when virtio-console is there, to hvc0.
say() {
    echo "$*"
    if [ -c /dev/hvc0 ]; then echo "$*" >/dev/hvc0 2>/dev/null; fi
}
pass() { say "VMMTEST: PASS $*"; }
fail() { say "VMMTEST: FAIL $*"; }
skip() { say "VMMTEST: SKIP $*"; }
info() { say "VMMTEST: info $*"; }
say "VMMTEST: stage2 started"

blk=root irq=msi seed_w=1 seed_r=2 count=128 queues="" discard_mib=16 hvc_in="" token=""
bench_mib=256 bench_s=5 balloon_mib=256 hold_s=90 scsi_luns=0 durable="" fill_mib=32 rounds=20
net_ip=169.254.77.2 net_peer=169.254.77.1 net_mib=64
for w in $(cat /proc/cmdline); do
    case $w in
        vmmtest.blk=*) blk=${w#vmmtest.blk=} ;;
        vmmtest.irq=*) irq=${w#vmmtest.irq=} ;;
        vmmtest.seed_w=*) seed_w=${w#vmmtest.seed_w=} ;;
        vmmtest.seed_r=*) seed_r=${w#vmmtest.seed_r=} ;;
        vmmtest.count=*) count=${w#vmmtest.count=} ;;
        vmmtest.queues=*) queues=${w#vmmtest.queues=} ;;
        vmmtest.discard_mib=*) discard_mib=${w#vmmtest.discard_mib=} ;;
        vmmtest.hvc_in=*) hvc_in=${w#vmmtest.hvc_in=} ;;
        vmmtest.token=*) token=${w#vmmtest.token=} ;;
        vmmtest.bench_mib=*) bench_mib=${w#vmmtest.bench_mib=} ;;
        vmmtest.bench_s=*) bench_s=${w#vmmtest.bench_s=} ;;
        vmmtest.balloon_mib=*) balloon_mib=${w#vmmtest.balloon_mib=} ;;
        vmmtest.hold_s=*) hold_s=${w#vmmtest.hold_s=} ;;
        vmmtest.net_ip=*) net_ip=${w#vmmtest.net_ip=} ;;
        vmmtest.net_peer=*) net_peer=${w#vmmtest.net_peer=} ;;
        vmmtest.net_mib=*) net_mib=${w#vmmtest.net_mib=} ;;
        vmmtest.scsi_luns=*) scsi_luns=${w#vmmtest.scsi_luns=} ;;
        vmmtest.durable=*) durable=${w#vmmtest.durable=} ;;
        vmmtest.fill_mib=*) fill_mib=${w#vmmtest.fill_mib=} ;;
        vmmtest.rounds=*) rounds=${w#vmmtest.rounds=} ;;
    esac
done

check_root() {
    set -- $(awk '$2 == "/" { print $1, $3, $4 }' /proc/mounts | tail -n 1)
    if [ "$1" = /dev/vda ] && [ "$2" = ext4 ]; then
        pass rootfs "$1 $2 $3"
    else
        fail rootfs "/ is '$1' type '$2' ($3), expected /dev/vda ext4"
    fi
    if grep -q 'vmm blk test root' /etc/vmmtest-root 2>/dev/null; then
        pass rootfs-content
    else
        fail rootfs-content "/etc/vmmtest-root missing or wrong"
    fi
    if echo "written $token" >/var/rw-test && sync && grep -q "written $token" /var/rw-test; then
        pass rootfs-rw
    else
        fail rootfs-rw "write to /var/rw-test failed"
    fi
}

check_irq() {
    grep -i virtio /proc/interrupts | sed 's/  */ /g' | while read -r l; do info "irq $l"; done
    msi=$(grep -i virtio /proc/interrupts | grep -c 'PCI-MSI')
    ioapic=$(grep -i virtio /proc/interrupts | grep -c 'IO-APIC')
    if [ "$irq" = intx ]; then
        if [ "$ioapic" -gt 0 ] && [ "$msi" = 0 ]; then
            pass irq "intx: $ioapic IO-APIC virtio line(s), no MSI"
        else
            fail irq "intx expected: $ioapic IO-APIC and $msi PCI-MSI virtio lines"
        fi
    else
        if [ "$msi" -gt 0 ]; then
            pass irq "msi: $msi PCI-MSI virtio line(s)"
        else
            fail irq "no PCI-MSI virtio line in /proc/interrupts ($ioapic IO-APIC)"
        fi
    fi
}

meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; } # KEY -> kB
# fill_memory MIB: touch MIB of RAM (a tmpfs file), free it; prints the MiB written
fill_memory() {
    mkdir -p /mnt/fill
    mount -t tmpfs -o "size=${1}m" tmpfs /mnt/fill || { echo 0; return; }
    dd if=/dev/zero of=/mnt/fill/x bs=1M count="$1" 2>/dev/null
    echo $(($(stat -c %s /mnt/fill/x 2>/dev/null || echo 0) >> 20))
    rm -f /mnt/fill/x
    umount /mnt/fill
}
# wait_mem KEY le|ge KB SECONDS: until /proc/meminfo's KEY is <= or >= KB
wait_mem() {
    i=0
    while [ $i -lt "$4" ]; do
        v=$(meminfo "$1")
        if [ "$2" = le ] && [ "$v" -le "$3" ]; then return 0; fi
        if [ "$2" = ge ] && [ "$v" -ge "$3" ]; then return 0; fi
        sleep 1
        i=$((i + 1))
    done
    return 1
}
balloon_bound() {
    if ls /sys/bus/virtio/drivers/virtio_balloon/ 2>/dev/null | grep -q '^virtio'; then
        pass balloon-bound
    else
        fail balloon-bound "no device bound to the virtio_balloon driver"
    fi
}
# virtio-scsi: LUNs of target 0 in sysfs, and the block device of one LUN.
scsi_count() { ls -d /sys/bus/scsi/devices/*:0:0:* 2>/dev/null | wc -l; }
scsi_blk() {
    for d in /sys/bus/scsi/devices/*:0:0:"$1"/block/*; do
        [ -e "$d" ] && echo "${d##*/}" && return
    done
}
# Scanning and sd/sr probing are asynchronous: wait (up to $1 s) until
# vmmtest.scsi_luns LUNs exist and each has its block device.
wait_scsi() {
    i=0
    while [ $i -lt $(($1 * 10)) ]; do
        b=$(ls -d /sys/bus/scsi/devices/*:0:0:*/block/* 2>/dev/null | wc -l)
        [ "$(scsi_count)" -ge "$scsi_luns" ] && [ "$b" -ge "$scsi_luns" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    info "scsi scan took ~$((i / 10)) s"
}

# eth0 is virtio_net (with vmmtest.queues rx queues), comes up at net_ip and
# reaches net_peer (the host's end of the tap).
net_up() {
    if [ -d /sys/class/net/eth0 ]; then
        drv=$(basename "$(readlink /sys/class/net/eth0/device/driver)")
        if [ "$drv" = virtio_net ]; then pass net-device "eth0 $(cat /sys/class/net/eth0/address)"; else fail net-device "eth0's driver is '$drv'"; fi
    else
        fail net-device "no eth0 ($(ls /sys/class/net | tr '\n' ' '))"
    fi
    if [ -n "$queues" ]; then
        n=$(ls -d /sys/class/net/eth0/queues/rx-* 2>/dev/null | wc -l)
        if [ "$n" = "$queues" ]; then pass net-mq "$n rx queues"; else fail net-mq "eth0 has $n rx queues, expected $queues"; fi
    fi
    ip addr add "$net_ip/24" dev eth0
    ip link set eth0 up
    ok=0
    for i in $(seq 1 40); do
        if ping -c 1 -W 1 "$net_peer" >/dev/null 2>&1; then ok=1; break; fi
    done
    if [ $ok = 1 ] && out=$(ping -c 3 -W 2 "$net_peer" 2>&1); then
        pass net-ping "$(echo "$out" | tail -n 1)"
    else
        fail net-ping "no answer from $net_peer"
    fi
}

case $blk in
    net)
        net_up
        dd if=/dev/urandom of=/tmp/tx bs=1M count="$net_mib" 2>/dev/null
        say "VMMTEST: net tx-sha $(sha256sum /tmp/tx | cut -d' ' -f1)"
        t0=$(date +%s)
        if timeout 900 blkbench tcp-send "$net_peer" 5001 /tmp/tx; then pass net-tx "$net_mib MiB in $(($(date +%s) - t0)) s"; else fail net-tx "sending to $net_peer:5001 failed"; fi
        rm -f /tmp/tx
        timeout 900 blkbench tcp-recv 5002 /tmp/rx &
        ncpid=$!
        sleep 1
        say "VMMTEST: net listening"
        t0=$(date +%s)
        wait $ncpid
        say "VMMTEST: net rx-sha $(sha256sum /tmp/rx | cut -d' ' -f1) $(stat -c %s /tmp/rx)"
        info "net: received in $(($(date +%s) - t0)) s"
        rm -f /tmp/rx
        ;;
    balloon)
        # The host inflates the balloon by balloon_mib after "balloon
        # touched" (measuring the VMM's RSS around it), then empties it after
        # "balloon inflated". MemTotal follows (no deflate_on_oom).
        balloon_bound
        t0=$(meminfo MemTotal)
        fill=$(($(meminfo MemAvailable) / 1024 - 48))
        got=$(fill_memory "$fill")
        info "balloon: MemTotal $t0 kB, touched $got MiB"
        say "VMMTEST: balloon touched $got"
        want=$((t0 - (balloon_mib - 4) * 1024))
        if wait_mem MemTotal le "$want" 120; then
            pass balloon-inflate "MemTotal $t0 -> $(meminfo MemTotal) kB"
        else
            fail balloon-inflate "MemTotal is $(meminfo MemTotal) kB after 120 s, expected <= $want"
        fi
        say "VMMTEST: balloon inflated"
        if wait_mem MemTotal ge $((t0 - 1024)) 120; then
            pass balloon-deflate "MemTotal back to $(meminfo MemTotal) kB"
        else
            fail balloon-deflate "MemTotal is $(meminfo MemTotal) kB after 120 s, expected about $t0"
        fi
        # the pages given back are usable again
        got2=$(fill_memory "$fill")
        if [ "$got2" -ge $((fill - 8)) ]; then pass balloon-reuse "$got2 MiB"; else fail balloon-reuse "only $got2 of $fill MiB"; fi
        ;;
    balloon-report)
        # Free page reporting: memory the guest frees goes back to the host
        # with no target. The host measures the VMM's RSS between "report
        # filled" (the memory is in use) and "report freed", then watches it
        # fall, and stops the VM.
        balloon_bound
        fill=$(($(meminfo MemAvailable) / 1024 - 48))
        mkdir -p /mnt/fill
        mount -t tmpfs -o "size=${fill}m" tmpfs /mnt/fill
        dd if=/dev/zero of=/mnt/fill/x bs=1M count="$fill" 2>/dev/null
        say "VMMTEST: report filled $(($(stat -c %s /mnt/fill/x) >> 20))"
        sleep 3
        rm -f /mnt/fill/x
        umount /mnt/fill
        say "VMMTEST: report freed"
        sleep "$hold_s"
        fail balloon-report "the host did not stop the VM within $hold_s s"
        ;;
    root)
        check_root
        check_irq
        ;;
    intx)
        check_root
        check_irq
        # more I/O than the root check: read the whole root device back
        if dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null; then pass read-vda; else fail read-vda "dd failed"; fi
        ;;
    integrity)
        out=$(blkbench pattern-write /dev/vdb "$seed_w" "$count" 2>&1) && pass pattern-write "$out" ||
            fail pattern-write "$out"
        sync
        ro=$(cat /sys/block/vdc/ro 2>/dev/null)
        [ "$ro" = 1 ] && pass vdc-ro "sysfs ro=1" || fail vdc-ro "/sys/block/vdc/ro is '$ro', expected 1"
        out=$(blkbench pattern-verify /dev/vdc "$seed_r" "$count" 2>&1) && pass pattern-verify "$out" ||
            fail pattern-verify "$out"
        out=$(blkbench trywrite /dev/vdc 2>&1) && pass vdc-write-refused "$out" || fail vdc-write-refused "$out"
        # the kernel honours ro=1 itself; also check the device refuses a write
        # when the guest overrides that (the VMM must fail it, not apply it)
        if blockdev --setrw /dev/vdc 2>/dev/null; then
            if dd if=/dev/zero of=/dev/vdc bs=4096 count=1 oflag=direct conv=fsync 2>/dev/null; then
                fail vdc-device-ro "after blockdev --setrw a direct write to vdc succeeded"
            else
                pass vdc-device-ro "a forced write to vdc failed"
            fi
            blockdev --setro /dev/vdc 2>/dev/null
        fi
        ;;
    images)
        out=$(blkbench pattern-verify /dev/vdb "$seed_r" "$count" 2>&1) && pass img-overlay-read "$out" ||
            fail img-overlay-read "$out"
        out=$(blkbench pattern-write /dev/vdb "$seed_w" "$count" 2>&1) && pass img-overlay-write "$out" ||
            fail img-overlay-write "$out"
        out=$(blkbench pattern-verify /dev/vdc "$seed_r" "$count" 2>&1) && pass img-compressed-read "$out" ||
            fail img-compressed-read "$out"
        out=$(blkbench pattern-verify /dev/vde "$seed_r" "$count" 2>&1) && pass img-zstd-read "$out" ||
            fail img-zstd-read "$out"
        out=$(blkbench pattern-write /dev/vdd "$seed_w" "$count" 2>&1) &&
            out=$(blkbench pattern-verify /dev/vdd "$seed_w" "$count" 2>&1) && pass img-snapshot "$out" ||
            fail img-snapshot "$out"
        sync
        ;;
    discard)
        dmax=$(cat /sys/block/vdb/queue/discard_max_bytes 2>/dev/null || echo 0)
        if [ "${dmax:-0}" -gt 0 ]; then
            pass discard-advertised "discard_max_bytes=$dmax"
            if blkdiscard -o 0 -l $((discard_mib * 1048576)) /dev/vdb; then
                pass blkdiscard "${discard_mib} MiB"
            else
                fail blkdiscard "blkdiscard -o 0 -l ${discard_mib}MiB /dev/vdb failed"
            fi
            sync
        else
            fail discard-advertised "/sys/block/vdb/queue/discard_max_bytes is '$dmax'"
        fi
        ;;
    mq)
        for d in vda vdb; do
            n=$(ls -d /sys/block/$d/mq/[0-9]* 2>/dev/null | wc -l)
            if [ -n "$queues" ] && [ "$n" = "$queues" ]; then
                pass mq-$d "$n hardware queues"
            else
                fail mq-$d "/sys/block/$d/mq has $n queues, expected '$queues'"
            fi
            info "mq $d: $(for q in /sys/block/$d/mq/[0-9]*; do printf '%s:cpus=%s ' "${q##*/}" "$(cat "$q/cpu_list")"; done)"
        done
        nproc_=$(grep -c '^processor' /proc/cpuinfo)
        info "cpus $nproc_"
        out=$(blkbench bench /dev/vdb 8 2 2>&1) && pass mq-io "$(echo "$out" | grep -E 'qd32|seqread' | tr '\n' ' ')" ||
            fail mq-io "$out"
        check_irq
        ;;
    console)
        if [ -c /dev/hvc0 ]; then
            pass hvc0-present
            echo "VMMTEST: hvc0 $token" >/dev/hvc0
            if [ -n "$hvc_in" ]; then
                line=$(timeout 60 head -n 1 /dev/hvc0 2>/dev/null | tr -d '\r')
                if [ "$line" = "$hvc_in" ]; then
                    pass hvc0-input "$line"
                else
                    fail hvc0-input "read '$line' from hvc0, expected '$hvc_in'"
                fi
            fi
        else
            fail hvc0-present "/dev/hvc0 missing"
        fi
        ;;
    rng)
        # virtio-rng: hw_random picks it (the only source) and /dev/hwrng reads
        cur=$(cat /sys/devices/virtual/misc/hw_random/rng_current 2>/dev/null)
        case $cur in
            virtio_rng.*) pass rng-current "$cur" ;;
            *) fail rng-current "hw_random's rng_current is '$cur', expected virtio_rng.N" ;;
        esac
        n=$(dd if=/dev/hwrng bs=64 count=16 2>/dev/null | wc -c)
        if [ "$n" = 1024 ]; then pass rng-read "$n bytes"; else fail rng-read "read $n bytes from /dev/hwrng, expected 1024"; fi
        a=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
        b=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
        if [ ${#a} = 64 ] && [ "$a" != "$b" ] && [ -n "$(echo "$a" | tr -d 0)" ]; then
            pass rng-random "$a"
        else
            fail rng-random "two 32-byte reads gave '$a' and '$b'"
        fi
        ;;
    scsi)
        wait_scsi 60
        n=$(scsi_count)
        [ "$n" = "$scsi_luns" ] && pass scsi-luns "$n LUNs: $(ls /sys/bus/scsi/devices | tr '\n' ' ')" ||
            fail scsi-luns "$n SCSI devices on target 0, expected $scsi_luns: $(ls /sys/bus/scsi/devices | tr '\n' ' ')"
        d0=$(scsi_blk 0) d1=$(scsi_blk 1) d2=$(scsi_blk 2) d3=$(scsi_blk 3) d5=$(scsi_blk 5)
        info "scsi LUN devices: 0=$d0 1=$d1 2=$d2 3=$d3 5=$d5"
        t0=$(cat /sys/bus/scsi/devices/*:0:0:0/type 2>/dev/null) t3=$(cat /sys/bus/scsi/devices/*:0:0:3/type 2>/dev/null)
        [ "$t0" = 0 ] && [ "$t3" = 5 ] && pass scsi-types "LUN 0 type $t0, LUN 3 type $t3" ||
            fail scsi-types "LUN 0 type '$t0' (expected 0), LUN 3 type '$t3' (expected 5)"
        out=$(blkbench pattern-write "/dev/$d0" "$seed_w" "$count" 2>&1) && pass scsi-write-0 "$d0: $out" ||
            fail scsi-write-0 "$d0: $out"
        out=$(blkbench pattern-write "/dev/$d1" $((seed_w + 1)) "$count" 2>&1) && pass scsi-write-1 "$d1: $out" ||
            fail scsi-write-1 "$d1: $out"
        sync
        ro=$(cat "/sys/block/$d2/ro" 2>/dev/null)
        [ "$ro" = 1 ] && pass scsi-ro "$d2 sysfs ro=1" || fail scsi-ro "/sys/block/$d2/ro is '$ro', expected 1"
        out=$(blkbench pattern-verify "/dev/$d2" "$seed_r" "$count" 2>&1) && pass scsi-verify "$d2: $out" ||
            fail scsi-verify "$d2: $out"
        out=$(blkbench trywrite "/dev/$d2" 2>&1) && pass scsi-write-refused "$out" || fail scsi-write-refused "$out"
        if blockdev --setrw "/dev/$d2" 2>/dev/null; then
            if dd if=/dev/zero of="/dev/$d2" bs=4096 count=1 oflag=direct conv=fsync 2>/dev/null; then
                fail scsi-device-ro "after blockdev --setrw a direct write to $d2 succeeded"
            else
                pass scsi-device-ro "a forced write to $d2 failed (DATA PROTECT)"
            fi
            blockdev --setro "/dev/$d2" 2>/dev/null
        fi
        dmax=$(cat "/sys/block/$d5/queue/discard_max_bytes" 2>/dev/null || echo 0)
        if [ "${dmax:-0}" -gt 0 ] && blkdiscard -o 0 -l $((discard_mib * 1048576)) "/dev/$d5"; then
            pass scsi-discard "$d5: discard_max_bytes=$dmax, ${discard_mib} MiB discarded"
        else
            fail scsi-discard "$d5: discard_max_bytes='$dmax' or blkdiscard failed"
        fi
        sync
        if [ "$d3" = sr0 ] && mount -t iso9660 -o ro /dev/sr0 /mnt; then
            got=$(cat /mnt/vmmtest.txt 2>/dev/null)
            [ "$got" = "$token" ] && pass scsi-cdrom "sr0 iso9660 /vmmtest.txt = $got" ||
                fail scsi-cdrom "/mnt/vmmtest.txt holds '$got', expected '$token'"
            umount /mnt
        else
            fail scsi-cdrom "LUN 3 is '$d3' (expected sr0) or mount -t iso9660 /dev/sr0 failed"
        fi
        ;;
    durable)
        # Flushed data survives a SIGKILL of the VMM: for each disk in
        # vmmtest.durable (vdX, or lunN of the SCSI target), O_DIRECT writes
        # of seed_w+index's pattern and an fsync (FLUSH or SYNCHRONIZE
        # CACHE: the device must be in write-back mode, or no flush is sent),
        # then one line and a wait: the host kills the VMM and checks the
        # images.
        [ "$scsi_luns" -gt 0 ] && wait_scsi 60
        i=0
        for d in $(echo "$durable" | tr , ' '); do
            case $d in
                lun*) dev=$(scsi_blk "${d#lun}") ;;
                *) dev=$d ;;
            esac
            wc=$(cat "/sys/block/$dev/queue/write_cache" 2>/dev/null)
            if [ "$wc" != "write back" ]; then
                fail "durable-$d" "/dev/$dev: write_cache is '$wc', expected 'write back' (no flush would be sent)"
            elif out=$(blkbench pattern-write "/dev/$dev" $((seed_w + i)) "$count" 2>&1); then
                pass "durable-$d" "/dev/$dev: $out"
            else
                fail "durable-$d" "/dev/$dev: $out"
            fi
            i=$((i + 1))
        done
        say "VMMTEST: flushed"
        sleep 600
        ;;
    net-ping)
        check_root
        net_up
        ;;
    hostile)
        # The attack (hostile.c): ports, then each virtio device but the
        # root disk's. Its report lines go to the console as info.
        wait_scsi 60
        root_bdf=$(basename "$(dirname "$(readlink -f /sys/block/vda/device)")")
        targets=""
        for d in /sys/bus/pci/devices/*; do
            [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "${d##*/}" != "$root_bdf" ] && targets="$targets ${d##*/}"
        done
        info "hostile: root disk at $root_bdf, targets$targets"
        if out=$(vmmhostile ports "$seed_w" 2>&1); then pass hostile-ports "$out"; else fail hostile-ports "$out"; fi
        # shellcheck disable=SC2086
        out=$(vmmhostile pci "$seed_w" "$rounds" $targets 2>&1)
        rc=$?
        echo "$out" | while read -r l; do info "$l"; done
        n=$(echo "$out" | grep -c '^HOSTILE device .* rounds=')
        if [ $rc = 0 ] && [ -n "$targets" ]; then pass hostile-pci "$n devices"; else fail hostile-pci "exit $rc, $n devices"; fi
        # The drivers have the devices back: do they work?
        ro=""
        i=0
        while [ $i -lt 300 ] && [ -z "$ro" ]; do
            for b in /sys/block/vd*; do
                [ "$(cat "$b/serial" 2>/dev/null)" = vmmtest-ro ] && ro=${b##*/}
            done
            [ -z "$ro" ] && sleep 0.1
            i=$((i + 1))
        done
        out=$(blkbench pattern-verify "/dev/$ro" "$seed_r" "$count" 2>&1) && pass hostile-after-blk "$ro: $out" ||
            fail hostile-after-blk "read-only disk '$ro': $out"
        wait_scsi 60
        s0=$(scsi_blk 0)
        out=$(blkbench pattern-verify "/dev/$s0" $((seed_r + 1)) "$count" 2>&1) && pass hostile-after-scsi "$s0: $out" ||
            fail hostile-after-scsi "LUN 0 '$s0': $out"
        n=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | wc -c)
        [ "$n" = 32 ] && pass hostile-after-rng || fail hostile-after-rng "read $n bytes from /dev/hwrng, expected 32"
        check_root
        # The host now loads the control API; the guest shows it is not held up.
        say "VMMTEST: hostile checked"
        i=0
        while [ $i -lt "$hold_s" ]; do
            say "VMMTEST: tick $i"
            sleep 1
            i=$((i + 1))
        done
        ;;
    enospc)
        # vdb and SCSI LUN 0 are images on a host file system smaller than
        # they are: filling vdb must end in an I/O error (not a hang, not a
        # dead VMM); the SCSI disk's write on the now full file system fails
        # too (CHECK CONDITION); both disks still read afterwards.
        wait_scsi 60
        s0=$(scsi_blk 0)
        if out=$(blkbench fill /dev/vdb "$fill_mib" 2>&1); then
            fail enospc-blk "filling $fill_mib MiB of vdb succeeded: $out"
        else
            pass enospc-blk "$(echo "$out" | tail -n 1)"
        fi
        if out=$(blkbench fill "/dev/$s0" "$fill_mib" 2>&1); then
            fail enospc-scsi "filling $fill_mib MiB of $s0 succeeded: $out"
        else
            pass enospc-scsi "$s0: $(echo "$out" | tail -n 1)"
        fi
        for d in vdb "$s0"; do
            if dd if="/dev/$d" of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null; then
                pass "enospc-read-$d"
            else
                fail "enospc-read-$d" "reading 4 MiB of /dev/$d failed after the write errors"
            fi
        done
        ;;
    cidata)
        ud_md5="" nc_md5="" uuid=""
        for w in $(cat /proc/cmdline); do
            case $w in
                vmmtest.ud_md5=*) ud_md5=${w#vmmtest.ud_md5=} ;;
                vmmtest.nc_md5=*) nc_md5=${w#vmmtest.nc_md5=} ;;
                vmmtest.uuid=*) uuid=${w#vmmtest.uuid=} ;;
            esac
        done
        wait_scsi 60
        dev=$(scsi_blk 0)
        # The primary volume descriptor (sector 16): "CD001" at byte 1, the
        # volume identifier at bytes 40..71 (busybox's blkid knows no iso9660).
        pvd() { dd if="/dev/$dev" bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip="$1" count="$2" 2>/dev/null; }
        sig=$(pvd 1 5) label=$(pvd 40 32 | tr -d ' ')
        [ "$sig" = CD001 ] && [ "$label" = cidata ] && pass cidata-label "$dev: ISO 9660 volume '$label'" ||
            fail cidata-label "LUN 0 is '$dev': signature '$sig', volume identifier '$label'"
        if mount -t iso9660 -o ro "/dev/$dev" /mnt; then
            info "cidata files: $(ls /mnt | tr '\n' ' ')"
            got=$(md5sum /mnt/user-data 2>&1 | cut -d' ' -f1)
            [ "$got" = "$ud_md5" ] && pass cidata-user-data "md5 $got" ||
                fail cidata-user-data "user-data md5 '$got', expected $ud_md5"
            got=$(md5sum /mnt/network-config 2>&1 | cut -d' ' -f1)
            [ "$got" = "$nc_md5" ] && pass cidata-network-config "md5 $got" ||
                fail cidata-network-config "network-config md5 '$got', expected $nc_md5"
            if grep -qx "instance-id: iid-$uuid" /mnt/meta-data && grep -qx "local-hostname: vmm" /mnt/meta-data; then
                pass cidata-meta-data "instance-id iid-$uuid, local-hostname vmm"
            else
                fail cidata-meta-data "meta-data is '$(cat /mnt/meta-data 2>&1 | tr '\n' ' ')'"
            fi
            umount /mnt
        else
            fail cidata-user-data "mount -t iso9660 /dev/$dev failed"
        fi
        ;;
    scsi-many)
        wait_scsi 240
        n=$(scsi_count)
        sd=$(ls -d /sys/block/sd* 2>/dev/null | wc -l)
        [ "$n" = "$scsi_luns" ] && [ "$sd" = "$scsi_luns" ] && pass scsi-many "$n LUNs, $sd sd disks" ||
            fail scsi-many "$n SCSI devices and $sd sd disks, expected $scsi_luns"
        last=$(scsi_blk $((scsi_luns - 1)))
        if [ -n "$last" ] && dd if="/dev/$last" of=/dev/null bs=64k count=16 2>/dev/null; then
            pass scsi-many-read "LUN $((scsi_luns - 1)) is $last and reads"
        else
            fail scsi-many-read "LUN $((scsi_luns - 1)) ('$last') does not read"
        fi
        ;;
    serial)
        # Named virtio-serial ports (the host's serial-ports case): the
        # ports vmmtest.ser_names (comma-separated) are found through sysfs
        # (devtmpfs gives /dev/vportXpY; /dev/virtio-ports/NAME needs udev,
        # which this guest has not); debugfs shows the host's open state.
        ser_names="" ser_one="" ser_two=""
        for w in $(cat /proc/cmdline); do
            case $w in
                vmmtest.ser_names=*) ser_names=${w#vmmtest.ser_names=} ;;
                vmmtest.ser_one=*) ser_one=${w#vmmtest.ser_one=} ;;
                vmmtest.ser_two=*) ser_two=${w#vmmtest.ser_two=} ;;
            esac
        done
        mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
        dbg() { # VPORT FIELD: a field of the driver's debugfs file, "" without debugfs
            sed -n "s/^$2: //p" "/sys/kernel/debug/virtio-ports/$1" 2>/dev/null
        }
        vport_of() { # NAME -> vportXpY
            for n in /sys/class/virtio-ports/vport*/name; do
                [ "$(cat "$n" 2>/dev/null)" = "$1" ] && { basename "$(dirname "$n")"; return; }
            done
        }
        # the driver names the ports asynchronously after probing: give it 10 s
        i=0
        while [ $i -lt 100 ] && [ -z "$(vport_of "${ser_names##*,}")" ]; do sleep 0.1; i=$((i + 1)); done
        found="" missing=""
        for n in $(echo "$ser_names" | tr , ' '); do
            v=$(vport_of "$n")
            if [ -n "$v" ] && [ -c "/dev/$v" ]; then found="$found $n=$v"; else missing="$missing $n"; fi
        done
        if [ -n "$ser_names" ] && [ -z "$missing" ]; then pass serial-names "$found"; else fail serial-names "missing:$missing (found:$found)"; fi
        if [ -d /dev/virtio-ports ]; then info "serial: /dev/virtio-ports exists"; else info "serial: no /dev/virtio-ports (no udev); using /dev/vportXpY"; fi
        for f in /sys/kernel/debug/virtio-ports/*; do [ -f "$f" ] && info "serial: debugfs ${f##*/}: $(tr '\n' ' ' <"$f")"; done
        one=$(vport_of "$(echo "$ser_names" | cut -d, -f1)")
        two=$(vport_of "$(echo "$ser_names" | cut -d, -f2)")
        if [ -n "$one" ] && [ -n "$two" ]; then
            # wait_host VPORT 0|1: until debugfs shows that host state (30 s)
            wait_host() {
                i=0
                while [ -n "$(dbg "$1" host_connected)" ] && [ "$(dbg "$1" host_connected)" != "$2" ] && [ $i -lt 300 ]; do
                    sleep 0.1; i=$((i + 1))
                done
                [ "$(dbg "$1" host_connected)" = "$2" ]
            }
            # port one: a line each way; then the guest closes it (the host's
            # client must see EOF). A write blocks until a host client is there.
            wait_host "$one" 1 && pass serial-host-open "$one host_connected=1" ||
                info "serial: $one host_connected is '$(dbg "$one" host_connected)'"
            exec 3<>"/dev/$one"
            echo "VMMTEST-SERIAL one $token" >&3
            line=$(timeout 30 head -n 1 <&3 | tr -d '\r')
            if [ -n "$ser_one" ] && [ "$line" = "$ser_one" ]; then
                pass serial-host-to-guest "$line"
            else
                fail serial-host-to-guest "read '$line' from $one, expected '$ser_one'"
            fi
            exec 3>&-
            info "serial: closed $one"
            # port two: the host's client sends a line and disconnects: the
            # guest reads the line, then EOF (read returns 0).
            exec 4<>"/dev/$two"
            echo "VMMTEST-SERIAL two $token" >&4
            out=$(timeout 30 cat <&4 | tr -d '\r'); st=$?
            if [ "$out" = "$ser_two" ]; then
                pass serial-host-eof "read '$out' then EOF from $two"
            else
                fail serial-host-eof "read '$out' from $two (cat status $st), expected '$ser_two' then EOF"
            fi
            if wait_host "$two" 0; then pass serial-host-closed "$two host_connected=0"; else
                [ -z "$(dbg "$two" host_connected)" ] && skip serial-host-closed "no debugfs" ||
                    fail serial-host-closed "$two host_connected is '$(dbg "$two" host_connected)'"
            fi
            exec 4>&-
        fi
        ;;
    rtc)
        # The CMOS RTC's interrupts (rtctest.c): did rtc_cmos bind with an IRQ?
        dmesg | grep -i 'rtc_cmos\|rtc0' | while read -r l; do info "rtc-dmesg $l"; done
        out=$(vmmrtc /dev/rtc0 2>&1)
        rc=$?
        echo "$out" | while read -r l; do info "$l"; done
        if [ $rc = 0 ]; then pass rtc "$(echo "$out" | grep -c '^RTC ') lines"; else fail rtc "vmmrtc exit $rc"; fi
        ;;
    bench)
        blkbench bench /dev/vdb "$bench_mib" "$bench_s" 2>&1 | while read -r l; do say "$l"; done
        ;;
    *)
        fail blk "unknown vmmtest.blk=$blk"
        ;;
esac

printf '\002' | dd of=/dev/port bs=1 seek=1088 count=1 conv=notrunc 2>/dev/null
sync
say "VMMTEST: done"
poweroff -f
sleep 5
EOF
    chmod 755 "$root/sbin/vmmtest-blk"
    mkdir -p "$(dirname "$out")"
    rm -f "$out"
    # -E root_owner: files owned by root without running as root.
    mke2fs -q -F -t ext4 -L vmmroot -E root_owner=0:0 -d "$root" "$out" "${size_mib}M" ||
        die "mke2fs -d failed"
    echo "$PROG: wrote $out (${size_mib} MiB ext4)" >&2
}

case $what in
    initramfs) build_initramfs ;;
    rootfs) build_rootfs ;;
esac
