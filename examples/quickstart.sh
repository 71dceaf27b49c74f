#!/usr/bin/env bash
# The main job: install dependencies, build build/vmm, generate a busybox
# initramfs and boot Debian's installed kernel with it. You end up at the
# guest's shell on the serial console; `poweroff` (or exiting the shell)
# ends the VM, Ctrl-A x quits the VMM.
#
# Where this machine's /dev/kvm cannot run a Linux guest (missing, or a
# nested host without hardware virtualization underneath: see
# tests/guest/kvm-usable.sh), the same command runs inside the
# software-emulated test host (QEMU TCG with SVM), which is slower but real.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/tests/install-deps.sh"
"$ROOT/tests/build.sh"

CACHE="${VMM_TEST_CACHE:-$ROOT/build/test-cache}"
mkdir -p "$CACHE"
INITRD="$CACHE/shell-initramfs.cpio.gz"
if [ ! -s "$INITRD" ] || [ "$ROOT/tests/guest/make-guest-initramfs.sh" -nt "$INITRD" ]; then
  "$ROOT/tests/guest/make-guest-initramfs.sh" "$INITRD" --mode shell
fi
KERNEL="${KERNEL:-$(find /boot -maxdepth 1 -name 'vmlinuz-*' -type f | sort -V | tail -n 1)}"
[ -n "$KERNEL" ] || { echo "quickstart: no /boot/vmlinuz-* (install linux-image-amd64)" >&2; exit 1; }

CMD=("$ROOT/build/vmm" --kernel "$KERNEL" --initramfs "$INITRD" --cpus "${CPUS:-2}" --memory "${MEMORY:-512M}"
     --cmdline "console=ttyS0 panic=1 quiet")
if "$ROOT/tests/guest/kvm-usable.sh" >/dev/null 2>&1; then
  exec "${CMD[@]}"
fi
echo "quickstart: this machine's /dev/kvm cannot run Linux guests; booting inside the software-emulated test host (slower)" >&2
exec "$ROOT/tests/guest/testhost.sh" -- "${CMD[@]}"
