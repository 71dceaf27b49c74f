# shellcheck shell=bash
# Common helpers for the real-guest test scripts (sourced, never executed).
#
# Provides:
#   GUEST_DIR, REPO_ROOT       absolute paths of tests/guest and the repo
#   PROG                       name of the calling script (for messages)
#   die / note                 "PROG: error: ..." on stderr + exit 1 / "PROG: ..." on stderr
#   cache_dir                  VMM_TEST_CACHE or REPO_ROOT/build/test-cache
#   newest_kernel              newest /boot/vmlinuz-* (by version sort)
#   kernel_version PATH        "6.1.0-56-amd64" from /boot/vmlinuz-6.1.0-56-amd64
#   find_busybox_static        path of a statically linked busybox
#   stamp FILE...              cheap identity (path, size, mtime) of files
#   cached OUT KEY CMD...      run CMD... (which must write OUT) unless OUT exists
#                              and was built with the same KEY
#   guest_kernel / guest_test_initramfs / guest_pvh_vmlinux
#                              the cached guest artifacts shared by
#                              run-guest-tests.sh, boot-bench.sh and kvm-usable.sh
#   pvh_vmlinux_for BZIMAGE    the cached ELF vmlinux extracted from BZIMAGE

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$GUEST_DIR/../.." && pwd)
PROG=${PROG:-$(basename "$0")}

# Say where a script stopped when `set -e` ends it.
# shellcheck disable=SC2154 # st is assigned inside the trap string
trap 'st=$?; [[ $- == *e* ]] && echo "$PROG: error: command failed (status $st) at line $LINENO: $BASH_COMMAND" >&2' ERR

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

note() {
    echo "$PROG: $*" >&2
}

# Where built test artifacts (initramfs images, extracted vmlinux) live.
# VMM_TEST_CACHE overrides; the default is inside the repo's build dir.
cache_dir() {
    echo "${VMM_TEST_CACHE:-$REPO_ROOT/build/test-cache}"
}

# Newest installed Debian kernel image (bzImage).  VMM_TEST_KERNEL overrides.
newest_kernel() {
    if [[ -n ${VMM_TEST_KERNEL:-} ]]; then
        [[ -f $VMM_TEST_KERNEL ]] || die "VMM_TEST_KERNEL=$VMM_TEST_KERNEL does not exist"
        echo "$VMM_TEST_KERNEL"
        return
    fi
    local k
    k=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -type f 2>/dev/null | sort -V | tail -n 1)
    [[ -n $k ]] || die "no /boot/vmlinuz-* found (install the linux-image-amd64 package)"
    [[ -r $k ]] || die "$k is not readable"
    echo "$k"
}

kernel_version() {
    local b
    b=$(basename "$1")
    echo "${b#vmlinuz-}"
}

# busybox-static installs /bin/busybox; the dynamic "busybox" package installs
# the same path, so check that what we found really has no ELF interpreter.
find_busybox_static() {
    local c
    for c in /bin/busybox /usr/bin/busybox; do
        [[ -x $c ]] || continue
        local info
        info=$(LC_ALL=C ldd "$c" 2>&1 || true)
        if [[ $info == *"not a dynamic executable"* || $info == *"statically linked"* ]]; then
            echo "$c"
            return 0
        fi
    done
    die "no statically linked busybox found (install the busybox-static package)"
}

stamp() {
    stat -L -c '%n %s %Y' "$@"
}

# cached OUT KEY CMD...: (re)build OUT with CMD unless OUT.key holds KEY.
# CMD gets a temporary output path as its last argument; it is renamed to OUT
# on success so that concurrent or interrupted builds never leave a half file.
cached() {
    local out=$1 key=$2
    shift 2
    if [[ -f $out && -f $out.key ]] && [[ $(cat "$out.key") == "$key" ]]; then
        return 0
    fi
    mkdir -p "$(dirname "$out")" || die "cannot create $(dirname "$out")"
    local tmp="$out.tmp.$$"
    rm -f "$tmp"
    if ! "$@" "$tmp"; then
        rm -f "$tmp"
        die "building $out failed"
    fi
    mv -f "$tmp" "$out"
    printf '%s\n' "$key" >"$out.key"
}

# Cached guest artifacts.  All are derived from the newest kernel and the
# scripts in this directory; a change to either rebuilds them.
guest_kernel() {
    newest_kernel
}

guest_test_initramfs() {
    local out key kver dep
    kver=$(kernel_version "$(newest_kernel)")
    out="$(cache_dir)/guest-test.cpio.gz"
    key="$(cat "$GUEST_DIR/make-guest-initramfs.sh" "$GUEST_DIR/lib.sh" | sha256sum | cut -d' ' -f1) $(stamp "$(find_busybox_static)")"
    # it carries a few of this kernel's modules (pvpanic, button, evdev)
    dep=/lib/modules/$kver/modules.dep
    key+=" $kver $( [[ -f $dep ]] && sha256sum "$dep" | cut -d' ' -f1)"
    cached "$out" "$key" "$GUEST_DIR/make-guest-initramfs.sh" --mode test --kver "$kver" >&2
    echo "$out"
}

# pvh_vmlinux_for BZIMAGE: the ELF vmlinux inside BZIMAGE (cached).
pvh_vmlinux_for() {
    local k=$1 out key
    out="$(cache_dir)/vmlinux-$(kernel_version "$k")"
    key="$(sha256sum "$GUEST_DIR/extract-vmlinux.sh" | cut -d' ' -f1) $(stamp "$k")"
    cached "$out" "$key" "$GUEST_DIR/extract-vmlinux.sh" "$k" >&2
    echo "$out"
}

guest_pvh_vmlinux() {
    pvh_vmlinux_for "$(newest_kernel)"
}

# newc header for a character device node (no data), see
# Documentation/driver-api/early-userspace/buffer-format.rst in the kernel.
newc_chardev() { # NAME MAJOR MINOR INO
    local name=$1 major=$2 minor=$3 ino=$4
    local namesize=$((${#name} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$ino" $((8#020600)) 0 0 1 0 0 0 0 "$major" "$minor" "$namesize" 0
    printf '%s\0' "$name"
    # header (110 bytes) + name padded to a multiple of 4
    local pad=$(((4 - (110 + namesize) % 4) % 4))
    head -c "$pad" /dev/zero
}
newc_trailer() {
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 0 0 0 1 0 0 0 0 0 0 11 0
    printf 'TRAILER!!!\0'
    head -c 3 /dev/zero # 110 + 11 = 121 -> pad to 124
}

# A complete newc archive holding dev/console, dev/ttyS0 and dev/null, to be
# appended to an initramfs archive (the kernel unpacks concatenated archives
# and skips the zero padding between them).  Needs no root, unlike mknod.
newc_dev_nodes() {
    newc_chardev dev/console 5 1 900001
    newc_chardev dev/ttyS0 4 64 900002
    newc_chardev dev/null 1 3 900003
    newc_trailer
}

# Milliseconds since the epoch (bash 5 EPOCHREALTIME, no fork).
now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((t / 1000))
}

# watch_testhost PID SCRATCH WEDGE_S PATTERN: waits while the test host PID
# runs. The test host sometimes wedges (tests/guest/README.md); the runner
# inside then stops touching its heartbeat files. Once the newest file
# matching PATTERN (a glob, re-read every 5 s; none yet: not started) is
# older than WEDGE_S seconds, kills the test host (SCRATCH/.qemu.pid) and
# returns 1 with WEDGE_AGE set to that age; returns 0 when PID has ended.
watch_testhost() {
    local pid=$1 scratch=$2 wedge_s=$3 pattern=$4 hb
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        hb=$(compgen -G "$pattern" | while read -r f; do stat -c %Y "$f" 2>/dev/null; done | sort -n | tail -n 1) || true
        [[ -n $hb ]] || continue
        WEDGE_AGE=$(($(date +%s) - hb))
        if ((WEDGE_AGE > wedge_s)); then
            [[ -s $scratch/.qemu.pid ]] && kill -TERM "$(cat "$scratch/.qemu.pid")" 2>/dev/null
            return 1
        fi
    done
    return 0
}

# Cached artifacts of the virtio block/console cases (make-blk-guest.sh):
# the static blkbench, the module-carrying initramfs and the ext4 root image.
guest_blkbench() { static_program blkbench blkbench.c; }
# The hostile guest program (hostile.c).
guest_hostile() { static_program vmmhostile hostile.c; }
# The RTC interrupt test (rtctest.c).
guest_rtctest() { static_program vmmrtc rtctest.c; }

# static_program NAME SOURCE: tests/guest/SOURCE built with gcc -O2 -static
# into the cache as NAME (rebuilt when the source or gcc changes); prints
# its path.
static_program() {
    local out key
    out="$(cache_dir)/$1"
    key="$(sha256sum "$GUEST_DIR/$2" | cut -d' ' -f1) $(gcc -dumpfullversion 2>/dev/null || echo none)"
    cached "$out" "$key" build_static_program "$GUEST_DIR/$2" >&2
    echo "$out"
}
build_static_program() { # SOURCE OUT
    command -v gcc >/dev/null || die "gcc is missing ($(basename "$1") is built with gcc -static, packages gcc libc6-dev)"
    gcc -O2 -static -Wall -Wextra -o "$2" "$1"
}

guest_blk_initramfs() {
    local out key kver
    kver=$(kernel_version "$(newest_kernel)")
    out="$(cache_dir)/guest-blk-$kver.cpio.gz"
    key="$(cat "$GUEST_DIR/make-blk-guest.sh" "$GUEST_DIR/lib.sh" | sha256sum | cut -d' ' -f1)"
    key+=" $(stamp "$(find_busybox_static)") $(sha256sum "/lib/modules/$kver/modules.dep" | cut -d' ' -f1)"
    cached "$out" "$key" "$GUEST_DIR/make-blk-guest.sh" --kver "$kver" --initramfs >&2
    echo "$out"
}

guest_blk_rootfs() {
    local out key bb hp rt
    bb=$(guest_blkbench)
    hp=$(guest_hostile)
    rt=$(guest_rtctest)
    out="$(cache_dir)/guest-blk-root.img"
    key="$(cat "$GUEST_DIR/make-blk-guest.sh" "$GUEST_DIR/lib.sh" "$bb" "$hp" "$rt" | sha256sum | cut -d' ' -f1)"
    key+=" $(stamp "$(find_busybox_static)")"
    cached "$out" "$key" "$GUEST_DIR/make-blk-guest.sh" --blkbench "$bb" --hostile "$hp" --rtctest "$rt" --rootfs >&2
    echo "$out"
}
