#!/usr/bin/env bash
# make-guest-initramfs.sh OUT.cpio.gz [--mode shell|test] [--kver VERSION]
#
# Builds a busybox-static initramfs (gzip'd newc cpio) for a Linux guest run
# by the VMM.  Debian's kernel needs no modules for it: the 8250 serial
# console, ACPI, devtmpfs, /dev/port (CONFIG_DEVPORT) and gzip initramfs
# support are all built in (checked against /boot/config-*).  The test mode
# also carries the few modules its end modes load on demand (see below).
#
# --mode shell (default): an interactive guest.  /init mounts proc, sys,
#   devtmpfs and devpts, prints a banner and runs a job-control shell on the
#   console (setsid cttyhack sh).  When the shell exits the guest powers off.
#
# --mode test: an automated self-check guest.  /init
#   1. prints "VMMTEST: init started" (its very first action),
#   2. writes byte 0x01 to the boot-progress port 0x440 (via /dev/port),
#   3. checks the values the harness put on the kernel command line and
#      prints "VMMTEST: PASS <check> ..." or "VMMTEST: FAIL <check> <details>":
#        port        the 0x01 write to /dev/port succeeded
#        cpus        vmmtest.cpus=N: N CPUs online (/sys/devices/system/cpu/online)
#                    and N processors in /proc/cpuinfo
#        mem         vmmtest.mem_mb=M: MemTotal is in the window
#                    [M - 64 - M/16 MiB, M MiB].  The kernel image, the
#                    firmware/E820 holes and the memmap are not in MemTotal;
#                    under QEMU -M pc Debian's 6.1 kernel shows MemTotal =
#                    M - 51 / 56 / 82 MiB for M = 256 / 512 / 2048 (measured),
#                    so the floor leaves 13..30 MiB of margin and still
#                    catches a missing memory bank or a wrong size.
#        token       vmmtest.token=STR: printed back as "PASS token STR"; the
#                    harness compares it (and puts it last on the command line,
#                    so a truncated command line fails)
#        interrupts  every online CPU has a column in /proc/interrupts and has
#                    taken local timer interrupts (LOC > 0)
#        acpi        dmesg has no ACPI Error/Warning/Exception line (always run)
#      A check whose parameter is absent prints "VMMTEST: SKIP <check>".
#   4. prints "VMMTEST: info <line>" for dmesg lines matching acpi|smp|apic,
#   5. writes 0x02 to port 0x440, prints "VMMTEST: done",
#   6. does what vmmtest.end= says: poweroff (default, `poweroff -f`),
#      reboot (`reboot -f`), panic (`echo c > /proc/sysrq-trigger`), hang
#      (sleep forever; for signal, timeout and API stop tests) or
#      wait-power (wait for the ACPI power button, then `poweroff -f`).
#      Before "VMMTEST: done" the end modes that need drivers load them
#      (insmod of the copies in /lib/modules, "VMMTEST: FAIL insmod <m>" if
#      one is missing or fails):
#        panic       pvpanic.ko + pvpanic-mmio.ko (the ACPI QEMU0001 device
#                    at port 0x505); "PASS pvpanic <dev>" when a device is
#                    bound to pvpanic-mmio, "FAIL pvpanic ..." otherwise.  A
#                    VMM with pvpanic then sees the panic event; use panic=0
#                    on the command line so nothing else can end the guest.
#        wait-power  button.ko + evdev.ko; "PASS power-button <event dev>"
#                    when an input device named "Power Button" exists, then
#                    "VMMTEST: waiting for the power button"; on a KEY_POWER
#                    press (read from its /dev/input/eventN) it prints
#                    "VMMTEST: power button pressed" and powers off.
#      vmmtest.efivar=VALUE (UEFI guests, VALUE alphanumeric): loads
#      efivarfs, prints "VMMTEST: info efivar found OLD" for each test
#      variable an earlier boot stored, stores VALUE in a new one and prints
#      "PASS efivar stored VALUE" once it reads back; a VMM that keeps the
#      variable store shows VALUE as found in the next boot.
#      vmmtest.dmi=1 prints the SMBIOS tables Linux found, for the harness
#      to decode with the host's dmidecode (tests/guest/dmi.py):
#      "VMMTEST: dmi-entry HEX" (/sys/firmware/dmi/tables/smbios_entry_point),
#      "VMMTEST: dmi-table HEX" (.../DMI) and "VMMTEST: dmi KEY=VALUE" for a
#      few /sys/class/dmi/id files; "FAIL dmi" when there are no tables.
#      vmmtest.tick=1 adds a background loop printing "VMMTEST: tick N"
#      once a second from then on (the harness watches it stop while the VM
#      is paused).
#
# The archive also carries a hand-made /dev/console node (a tiny newc archive
# appended to the main one) so the kernel can open the console before /init
# runs even when this script is not run as root.
set -euo pipefail
PROG=make-guest-initramfs.sh
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
    echo "usage: $0 OUT.cpio.gz [--mode shell|test] [--kver VERSION]" >&2
    exit 1
}

out="" mode=shell kver=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --mode) [[ $# -ge 2 ]] || usage; mode=$2; shift 2 ;;
        --kver) [[ $# -ge 2 ]] || usage; kver=$2; shift 2 ;;
        --mode=*) mode=${1#--mode=}; shift ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) [[ -z $out ]] || usage; out=$1; shift ;;
    esac
done
[[ -n $out ]] || usage
[[ $mode == shell || $mode == test ]] || die "--mode must be shell or test, not '$mode'"

busybox=$(find_busybox_static)
work=$(mktemp -d "${TMPDIR:-/tmp}/guest-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc,run}

# busybox plus one symlink per applet, at the path busybox itself reports
# (what `busybox --install -s` would do), as relative links.
cp "$busybox" "$root/bin/busybox"
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

# The test mode's on-demand modules (see the header), with their modules.dep
# dependencies, decompressed, as /lib/modules/NAME.ko; the init loads them by
# name in the order given there.  One that is built in or absent is left out
# (built in: nothing to load; absent: the init reports it when it needs it).
copy_test_modules() {
    [[ -n $kver ]] || kver=$(kernel_version "$(newest_kernel)")
    local mdir=/lib/modules/$kver m line path base
    if [[ ! -f $mdir/modules.dep ]]; then
        note "warning: $mdir/modules.dep not found: no modules in the test initramfs"
        return 0
    fi
    mkdir -p "$root/lib/modules"
    for m in pvpanic pvpanic-mmio button evdev efivarfs; do
        line=$(grep -E "/${m}\\.ko(\\.[a-z]+)?:" "$mdir/modules.dep" || true)
        [[ -n $line ]] || continue
        for path in ${line#*:} "${line%%:*}"; do
            base=$(basename "$path")
            case $base in
                *.ko.xz) xz -dc "$mdir/$path" >"$root/lib/modules/${base%.xz}" ;;
                *.ko.zst) zstd -qdc "$mdir/$path" >"$root/lib/modules/${base%.zst}" ;;
                *.ko.gz) gzip -dc "$mdir/$path" >"$root/lib/modules/${base%.gz}" ;;
                *) cp "$mdir/$path" "$root/lib/modules/$base" ;;
            esac
        done
    done
}
[[ $mode == test ]] && copy_test_modules

# ---------------------------------------------------------------- /init ----
if [[ $mode == shell ]]; then
cat >"$root/init" <<'EOF'
#!/bin/sh
# Interactive guest: shell on the console, power off when it exits.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=${TERM:-linux}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
hostname guest
ncpu=$(grep -c '^processor' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)
echo
echo "guest: Linux $(uname -r), $ncpu CPU(s), $mem RAM, busybox userland"
echo "guest: exit the shell (exit or Ctrl-D) to power off"
echo
export PS1='guest:\w# '
setsid cttyhack sh
echo "guest: shell exited, powering off"
poweroff -f
# only reached if poweroff failed: exiting init panics the kernel
EOF
else
cat >"$root/init" <<'EOF'
#!/bin/sh
# Automated self-check guest (see make-guest-initramfs.sh for the protocol).
echo "VMMTEST: init started"
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

pass() { echo "VMMTEST: PASS $*"; }
fail() { echo "VMMTEST: FAIL $*"; }
skip() { echo "VMMTEST: SKIP $*"; }

# Boot-progress port 0x440 (= 1088): one byte written through /dev/port.
progress() {
    printf "\\$1" | dd of=/dev/port bs=1 seek=1088 count=1 conv=notrunc 2>/dev/null
}
if progress 001; then
    pass port
else
    fail port "write to /dev/port offset 0x440 failed"
fi

# vmmtest.* parameters
cpus="" mem_mb="" token="" end=poweroff tick=0 efivar="" dmi=0
for w in $(cat /proc/cmdline); do
    case $w in
        vmmtest.tick=*) tick=${w#vmmtest.tick=} ;;
        vmmtest.cpus=*) cpus=${w#vmmtest.cpus=} ;;
        vmmtest.mem_mb=*) mem_mb=${w#vmmtest.mem_mb=} ;;
        vmmtest.token=*) token=${w#vmmtest.token=} ;;
        vmmtest.end=*) end=${w#vmmtest.end=} ;;
        vmmtest.efivar=*) efivar=${w#vmmtest.efivar=} ;;
        vmmtest.dmi=*) dmi=${w#vmmtest.dmi=} ;;
    esac
done

# "0-3,5" -> 5
count_list() {
    tr ',' '\n' | awk -F- 'NF == 1 && $1 != "" { n++ } NF == 2 { n += $2 - $1 + 1 } END { print n + 0 }'
}
online=$(count_list </sys/devices/system/cpu/online)
procs=$(grep -c '^processor' /proc/cpuinfo)

if [ -z "$cpus" ]; then
    skip cpus "(no vmmtest.cpus=)"
elif [ "$online" = "$cpus" ] && [ "$procs" = "$cpus" ]; then
    pass cpus "$cpus"
else
    fail cpus "expected $cpus, online=$online ($(cat /sys/devices/system/cpu/online)) cpuinfo=$procs"
fi

memtotal_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
memtotal_mb=$((memtotal_kb / 1024))
if [ -z "$mem_mb" ]; then
    skip mem "(no vmmtest.mem_mb=) MemTotal=${memtotal_mb} MiB"
else
    lo=$((mem_mb - 64 - mem_mb / 16))
    if [ "$memtotal_mb" -ge "$lo" ] && [ "$memtotal_mb" -le "$mem_mb" ]; then
        pass mem "MemTotal=${memtotal_mb} MiB (window ${lo}..${mem_mb})"
    else
        fail mem "MemTotal=${memtotal_mb} MiB outside window ${lo}..${mem_mb} MiB"
    fi
fi

if [ -z "$token" ]; then
    skip token "(no vmmtest.token=)"
elif grep -q -- "vmmtest.token=$token" /proc/cmdline; then
    pass token "$token"
else
    fail token "vmmtest.token=$token not in /proc/cmdline"
fi

# One CPUn column per online CPU; LOC (local APIC timer) > 0 on each.
cols=$(head -n 1 /proc/interrupts | wc -w)
loc=$(awk -v n="$cols" '$1 == "LOC:" { z = 0; for (i = 2; i <= n + 1; i++) if ($i + 0 == 0) z++; print z; exit }' /proc/interrupts)
if [ "$cols" != "$online" ]; then
    fail interrupts "/proc/interrupts has $cols CPU columns, $online CPUs online"
elif [ -z "$loc" ]; then
    fail interrupts "no LOC: line in /proc/interrupts"
elif [ "$loc" != 0 ]; then
    fail interrupts "$loc CPU(s) took no local timer interrupt: $(grep 'LOC:' /proc/interrupts)"
else
    pass interrupts "$cols CPU(s), all taking timer interrupts"
fi

# The kernel's verdict on our ACPI tables: no "ACPI Error", "ACPI Warning",
# "ACPI BIOS Error/Warning" or "ACPI Exception" line in the whole boot.
acpi_bad=$(dmesg | grep -E 'ACPI( BIOS)? (Error|Warning)|ACPI Exception' | head -n 3 | tr '\n' ';')
if [ -n "$acpi_bad" ]; then
    fail acpi "$acpi_bad"
else
    pass acpi "no ACPI errors or warnings from the kernel"
fi

echo "VMMTEST: info rtc $(cat /sys/class/rtc/rtc0/since_epoch 2>/dev/null)"
echo "VMMTEST: info acpi-processors $(ls -d /sys/bus/acpi/devices/ACPI0007:* 2>/dev/null | wc -l)"
dmesg | grep -i -E 'acpi|smp|apic|Memory:' | grep -v 'acpiphp: Slot' | sed 's/^/VMMTEST: info /'
echo "VMMTEST: info MemTotal=${memtotal_kb} kB online=$(cat /sys/devices/system/cpu/online)"

# load_mod NAME...: insmod /lib/modules/NAME.ko (copied at build time)
load_mod() {
    for m in "$@"; do
        if [ -d "/sys/module/$(echo "$m" | tr - _)" ]; then
            continue # built in or already loaded
        elif [ ! -f "/lib/modules/$m.ko" ]; then
            fail insmod "$m: not in the initramfs (not a module of this kernel?)"
        elif ! insmod "/lib/modules/$m.ko"; then
            fail insmod "$m: insmod failed"
        fi
    done
}

# UEFI variables VmmTest<VALUE>-<vendor GUID of our own>, one per
# vmmtest.efivar value (efivarfs files: 4 bytes of attributes, NV|BS|RT = 7,
# then the data). A new name each boot, because the kernel makes the files
# of variables that existed at boot immutable and busybox has no chattr.
if [ -n "$efivar" ]; then
    load_mod efivarfs
    vars=/sys/firmware/efi/efivars
    guid=6d6d7674-7665-4e61-8c72-766d6d746573
    if [ ! -d /sys/firmware/efi ]; then
        fail efivar "no /sys/firmware/efi: not booted through UEFI"
    elif ! mount -t efivarfs efivarfs $vars; then
        fail efivar "mounting efivarfs failed"
    else
        for f in "$vars"/VmmTest*-$guid; do
            [ -f "$f" ] && echo "VMMTEST: info efivar found $(dd if="$f" bs=1 skip=4 2>/dev/null)"
        done
        f=$vars/VmmTest$efivar-$guid
        printf '\007\000\000\000%s' "$efivar" >"$f"
        now=$(dd if="$f" bs=1 skip=4 2>/dev/null)
        if [ "$now" = "$efivar" ]; then
            pass efivar "stored $efivar"
        else
            fail efivar "wrote $efivar, read back '$now'"
        fi
    fi
fi

if [ "$dmi" = 1 ]; then
    t=/sys/firmware/dmi/tables
    if [ -r $t/smbios_entry_point ] && [ -r $t/DMI ]; then
        echo "VMMTEST: dmi-entry $(od -An -v -tx1 $t/smbios_entry_point | tr -d ' \n')"
        echo "VMMTEST: dmi-table $(od -An -v -tx1 $t/DMI | tr -d ' \n')"
        for k in sys_vendor product_name product_serial product_uuid bios_vendor chassis_asset_tag; do
            echo "VMMTEST: dmi $k=$(cat /sys/class/dmi/id/$k 2>/dev/null)"
        done
        pass dmi "$(stat -c %s $t/DMI) bytes"
    else
        fail dmi "no $t/smbios_entry_point or DMI: the kernel found no SMBIOS"
    fi
fi

# Drivers the end mode needs, checked before "done".
power_dev=""
case $end in
    panic)
        load_mod pvpanic pvpanic-mmio
        bound=""
        for d in /sys/bus/platform/drivers/pvpanic-mmio/*; do
            # bound devices are symlinks, as is "module"
            [ -L "$d" ] && [ "${d##*/}" != module ] && bound="$bound${d##*/} "
        done
        if [ -n "$bound" ]; then
            pass pvpanic "$bound"
        else
            fail pvpanic "no device bound to pvpanic-mmio (no ACPI QEMU0001 device?)"
        fi
        ;;
    wait-power)
        load_mod button evdev
        i=0
        while [ -z "$power_dev" ] && [ $i -lt 50 ]; do
            for d in /sys/class/input/event*; do
                [ -e "$d/device/name" ] || continue
                if [ "$(cat "$d/device/name")" = "Power Button" ] && [ -c "/dev/input/${d##*/}" ]; then
                    power_dev=/dev/input/${d##*/}
                fi
            done
            [ -n "$power_dev" ] || sleep 0.1
            i=$((i + 1))
        done
        if [ -n "$power_dev" ]; then
            pass power-button "$power_dev"
        else
            fail power-button "no input device named 'Power Button' (inputs: $(cat /sys/class/input/*/device/name 2>/dev/null | tr '\n' ';'))"
        fi
        ;;
esac

if [ "$tick" = 1 ]; then
    (n=0; while :; do n=$((n + 1)); echo "VMMTEST: tick $n"; sleep 1; done) &
fi

progress 002
echo "VMMTEST: done"
case $end in
    reboot) reboot -f ;;
    panic) echo 1 >/proc/sys/kernel/sysrq; echo c >/proc/sysrq-trigger ;;
    hang) while :; do sleep 3600; done ;;
    wait-power)
        [ -n "$power_dev" ] || { echo "VMMTEST: FAIL power-button: nothing to wait on"; while :; do sleep 3600; done; }
        echo "VMMTEST: waiting for the power button"
        # struct input_event on x86-64: 16 bytes of time, u16 type, u16 code, s32 value
        while :; do
            dd if="$power_dev" of=/tmp/ev bs=24 count=1 2>/dev/null || { sleep 1; continue; }
            # shellcheck disable=SC2046 # two numbers
            set -- $(od -An -tu2 -j16 -N4 /tmp/ev)
            [ "${1:-}" = 1 ] && [ "${2:-}" = 116 ] && break # EV_KEY, KEY_POWER
        done
        echo "VMMTEST: power button pressed"
        sync
        poweroff -f
        ;;
    *) poweroff -f ;;
esac
echo "VMMTEST: FAIL end '$end' action returned"
sleep 5
EOF
fi
chmod 755 "$root/init"

# ------------------------------------------------------------- archive ----
mkdir -p "$(dirname "$out")"
{
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible)
    # The kernel unpacks concatenated archives (zero padding between them is skipped).
    newc_dev_nodes
} | gzip -9 -n >"$out"
echo "$PROG: wrote $out ($mode mode, $(stat -c %s "$out") bytes)" >&2
