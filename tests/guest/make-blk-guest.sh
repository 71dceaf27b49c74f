#!/usr/bin/env bash
# make-blk-guest.sh --initramfs OUT.cpio.gz [--kver VERSION]
# make-blk-guest.sh --rootfs OUT.img --blkbench BIN [--size MIB]
#
# The two halves of the virtio block/console guest (run-guest-tests.sh's
# blk-* and console cases, tests/bench/blk-bench.sh).  Neither needs root.
#
# --initramfs: a busybox initramfs carrying the modules Debian's kernel has
#   as modules (virtio, virtio_ring, virtio_pci_{legacy,modern}_dev,
#   virtio_pci, virtio_blk, virtio_console, virtio-rng, crc16, mbcache, jbd2, ext4 and the
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
#   SIZE MiB (default 48) holding busybox, BIN as /bin/blkbench and the test
#   script /sbin/vmmtest-blk.  That script reports to the console and, once it
#   exists, /dev/hvc0 (virtio-console port 0), and runs what vmmtest.blk=
#   says (the host side of each case is in run-guest-tests.sh):
#     root       / is ext4 on /dev/vda, read-write (a file written, synced,
#                read back); virtio interrupts are PCI-MSI(-X) lines in
#                /proc/interrupts, or IO-APIC lines with vmmtest.irq=intx
#     integrity  blkbench pattern-write /dev/vdb SEED_W COUNT (vmmtest.seed_w,
#                vmmtest.count); /dev/vdc is read-only (sysfs ro=1), holds
#                the host's pattern (pattern-verify SEED_R COUNT) and a write
#                to it fails
#     discard    /dev/vdb advertises discard; blkdiscard of its first
#                vmmtest.discard_mib MiB
#     mq         /sys/block/vda/mq and vdb/mq have vmmtest.queues hardware
#                queues; blkbench (8 MiB, QD 1 and 32 reads) on /dev/vdb works
#     console    "VMMTEST: hvc0 <token>" written to /dev/hvc0; with
#                vmmtest.hvc_in=<token> a line is read from /dev/hvc0
#                and compared (60 s: the host reads the control API counters first)
#     serial     named virtio-serial ports vmmtest.ser_names=ONE,TWO: both in
#                /sys/class/virtio-ports; "VMMTEST-SERIAL one <token>" written to
#                ONE, a line read back and compared with vmmtest.ser_one, ONE
#                closed; "VMMTEST-SERIAL two <token>" written to TWO, which
#                must then yield vmmtest.ser_two and EOF (host disconnect)
#     bench      blkbench bench /dev/vdb vmmtest.bench_mib vmmtest.bench_s
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

what="" out="" kver="" blkbench="" size_mib=48
while [[ $# -gt 0 ]]; do
    case $1 in
        --initramfs|--rootfs) what=${1#--}; [[ $# -ge 2 ]] || usage; out=$2; shift 2 ;;
        --kver) [[ $# -ge 2 ]] || usage; kver=$2; shift 2 ;;
        --blkbench) [[ $# -ge 2 ]] || usage; blkbench=$2; shift 2 ;;
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
    local want=(virtio_pci virtio_blk virtio_console virtio-rng crc32c_generic crc32c-intel ext4)
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
bench_mib=256 bench_s=5
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

case $blk in
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
