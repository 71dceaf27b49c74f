#!/usr/bin/env bash
# Installs every Debian package the project needs to build, run a default
# guest and run the whole test suite. Idempotent: does nothing when all are
# present. Used by examples/quickstart.sh, tests/run-all.sh and .ci/run.
set -euo pipefail

PACKAGES=(
  # build
  g++ cmake ninja-build ccache pkg-config
  linux-libc-dev libfmt-dev nlohmann-json3-dev catch2 libfdt-dev libcli11-dev liburing-dev libseccomp-dev zlib1g-dev
  # zstd-compressed clusters in qcow2 images (zlib1g-dev above for zlib ones)
  libzstd-dev
  # the qcow2 unit tests make and check images with qemu-img
  qemu-utils
  # guests and the software-emulated test host (see tests/guest/README.md)
  qemu-system-x86 linux-image-amd64 busybox-static cpio gzip e2fsprogs xz-utils zstd kmod
  # the virtio-scsi guest case's CD-ROM image (ISO 9660)
  xorriso
  # firmware boot (run time: --firmware bios|uefi, and QEMU's linuxboot ROM
  # for --firmware with --kernel) and its tests: GRUB images, pytest
  seabios ovmf qemu-system-data grub-common grub-pc-bin grub-efi-amd64-bin mtools python3-pytest python3-pytest-timeout
  # the classic MBR disk case: syslinux installed on a FAT partition through mtools
  syslinux syslinux-common dosfstools
  # network boot: iPXE's virtio-net ROM (run time) and the PXE test's DHCP/TFTP server
  ipxe-qemu dnsmasq-base
  # fuzzing (tests/fuzz): clang with libFuzzer, ASan and UBSan
  clang-16 libclang-rt-16-dev libfuzzer-16-dev
  # benchmarks
  strace time
  # the probe benchmark's plot (tests/bench/probe-bench.py)
  gnuplot-nox
  # guest tests that talk to the control API and console sockets; the net cases configure a tap
  python3 iproute2
  # the SMBIOS cases decode the guest's tables with dmidecode (unit and guest tests)
  dmidecode
  # the ACPI unit test runs ACPICA's disassembler and interpreter on our tables
  acpica-tools
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
