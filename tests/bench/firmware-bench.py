#!/usr/bin/python3
"""firmware-bench.py [--build DIR] [--runs N] [--firmware FILE] [--linux KERNEL,INITRAMFS [--bios-only|--uefi-only]]

Firmware boot benchmark: the same SeaBIOS image and the same disk (a boot
sector from tests/firmware/bootsector.py on a virtio-blk disk, modern
virtio only) under QEMU -M q35 and under build/vmm --firmware, alternating
in one run on this machine's /dev/kvm (firmware runs in real and 32-bit
mode, which even a nested /dev/kvm handles). For each contender and run:

  firmware  wall time from starting the VMM process until SeaBIOS's banner
            ("SeaBIOS (version") comes out of its serial port
  boot      wall time until the boot sector's "BOOT-OK" line: the firmware
            found the disk, read sector 0 and jumped to it (where a
            bootloader would print its first line)

--linux KERNEL,INITRAMFS boots Linux instead: a GRUB image (grub-mkrescue,
BIOS and EFI GRUB) on virtio-blk whose menu loads KERNEL and INITRAMFS
(the test initramfs of tests/guest/make-guest-initramfs.sh --mode test),
under SeaBIOS and then under OVMF (--uefi-only / --bios-only pick one),
with 1 vCPU and 512 MiB in both. The figures are then

  firmware  the firmware's first line (SeaBIOS's banner; for OVMF, its
            "BdsDxe: loading" line, which it prints when it picks the disk)
  loader    GRUB's "GRUB: loading the kernel" line
  init      the test init's first line, "VMMTEST: init started"

It needs a /dev/kvm that runs Linux: on a nested one run it in the test
host (tests/guest/testhost.sh -- tests/bench/firmware-bench.py --linux ...).

Serial output is read from the VMM's stdout pipe as it comes; the process
is killed once the last marker is seen. Prints the median and range of each
figure and the median of the per-run ratios ours / QEMU (below 1: we are
faster)."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "firmware"))
from bootsector import boot_sector  # noqa: E402

BANNER = b"SeaBIOS (version"
MARKER = b"BOOT-OK tag=bench"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"


def run_once(cmd, markers, timeout=60, before=None):
    """Seconds from the start of `cmd` until each of `markers` appeared on
    its stdout, in order; `before()` runs first (untimed)."""
    if before:
        before()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, times = b"", []
    fd = p.stdout.fileno()
    os.set_blocking(fd, True)
    try:
        while time.monotonic() - t0 < timeout and len(times) < len(markers):
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
            now = time.monotonic() - t0
            while len(times) < len(markers) and markers[len(times)] in seen:
                times.append(now)
    finally:
        p.kill()
        p.wait()
    if len(times) < len(markers):
        raise SystemExit(f"firmware-bench: no {markers[len(times)]!r} from {cmd[0]} (output: {seen[-300:]!r})")
    return times


def grub_image(d, kernel, initramfs, extra):
    root = d / f"root{len(extra)}"
    (root / "boot" / "grub").mkdir(parents=True)
    shutil.copy(kernel, root / "vmlinuz")
    shutil.copy(initramfs, root / "initrd.img")
    (root / "boot" / "grub" / "grub.cfg").write_text(
        "set timeout=0\nserial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n"
        'menuentry linux {\n  echo "GRUB: loading the kernel"\n'
        f"  linux /vmlinuz console=ttyS0 panic=1 {extra}\n  initrd /initrd.img\n}}\n")
    image = d / f"boot{len(extra)}.iso"
    subprocess.run(["grub-mkrescue", "-o", str(image), str(root)], check=True, capture_output=True)
    return image


def report(title, names, results, runs):
    print(f"{title}, {runs} runs each, alternating; seconds: median (min-max)")
    for i, name in enumerate(names):
        row = []
        for who in ["qemu", "vmm"]:
            xs = [r[i] for r in results[who]]
            row.append(f"{who} {statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})")
        ratios = [v[i] / q[i] for v, q in zip(results["vmm"], results["qemu"])]
        print(f"  {name:8s}  " + "   ".join(row) +
              f"   ours/QEMU median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    sys.stdout.flush()


def linux(a, vmm, d):
    kernel, initramfs = a.linux.split(",", 1)
    common_q = ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", "512",
                "-nodefaults", "-nographic", "-serial", "stdio", "-monitor", "none"]
    common_v = [str(vmm), "--cpus", "1", "--memory", "512M", "--serial", "tty"]
    init = b"VMMTEST: init started"
    loader = b"GRUB: loading the kernel"
    if not a.uefi_only:
        image = grub_image(d, kernel, initramfs, "")
        disk_q = ["-drive", f"if=none,id=d0,file={image},format=raw,readonly=on",
                  "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]
        ours = common_v + ["--firmware", a.firmware, "--disk", f"path={image},readonly=on"]
        qemu = common_q + ["-bios", a.firmware] + disk_q
        results = {"vmm": [], "qemu": []}
        for _ in range(a.runs):
            results["qemu"].append(run_once(qemu, [BANNER, loader, init], timeout=600))
            results["vmm"].append(run_once(ours, [BANNER, loader, init], timeout=600))
        report(f"Linux through SeaBIOS ({a.firmware}) and GRUB", ["firmware", "loader", "init"], results, a.runs)
    if not a.bios_only:
        # lapic=notscdeadline: see docs/firmware.md, "Known problems".
        image = grub_image(d, kernel, initramfs, "lapic=notscdeadline")
        vars_q, vars_v = d / "q.vars", d / "v.vars"

        def fresh_vars():
            shutil.copy(OVMF_VARS, vars_q)
            shutil.copy(OVMF_VARS, vars_v)

        disk_q = ["-drive", f"if=none,id=d0,file={image},format=raw,readonly=on",
                  "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]
        ours = common_v + ["--firmware", f"uefi,vars={vars_v}", "--disk", f"path={image},readonly=on"]
        qemu = common_q + ["-drive", f"if=pflash,format=raw,unit=0,file={OVMF_CODE},readonly=on",
                           "-drive", f"if=pflash,format=raw,unit=1,file={vars_q}"] + disk_q
        marks = [b"BdsDxe: loading", loader, init]
        results = {"vmm": [], "qemu": []}
        for _ in range(a.runs):
            results["qemu"].append(run_once(qemu, marks, timeout=600, before=fresh_vars))
            results["vmm"].append(run_once(ours, marks, timeout=600, before=fresh_vars))
        report("Linux through OVMF and GRUB (fresh variable store each run)", ["firmware", "loader", "init"], results,
               a.runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(HERE.parent.parent / "build"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--firmware", default="/usr/share/seabios/bios-256k.bin")
    ap.add_argument("--linux", metavar="KERNEL,INITRAMFS")
    ap.add_argument("--bios-only", action="store_true")
    ap.add_argument("--uefi-only", action="store_true")
    a = ap.parse_args()
    vmm = Path(a.build) / "vmm"
    if a.linux:
        with tempfile.TemporaryDirectory() as d:
            linux(a, vmm, Path(d))
        return
    with tempfile.TemporaryDirectory() as d:
        disk = Path(d) / "disk.img"
        with open(disk, "wb") as f:
            f.write(boot_sector("bench"))
            f.truncate(1 << 20)
        ours = [str(vmm), "--firmware", a.firmware, "--memory", "512M", "--serial", "tty",
                "--disk", f"path={disk}"]
        qemu = ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "512", "-nodefaults", "-nographic",
                "-bios", a.firmware, "-serial", "stdio", "-monitor", "none",
                "-drive", f"if=none,id=d0,file={disk},format=raw",
                "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]
        results = {"vmm": [], "qemu": []}
        for _ in range(a.runs):
            results["qemu"].append(run_once(qemu, [BANNER, MARKER]))
            results["vmm"].append(run_once(ours, [BANNER, MARKER]))
    report(f"firmware {a.firmware}", ["firmware", "boot"], results, a.runs)


if __name__ == "__main__":
    main()
