#!/usr/bin/python3
"""firmware-bench.py [--build DIR] [--runs N] [--firmware FILE]

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

Serial output is read from the VMM's stdout pipe as it comes; the process
is killed once the marker is seen. Prints the median and range of each
figure and the median of the per-run ratios ours / QEMU (below 1: we are
faster)."""
import argparse
import os
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


def run_once(cmd, timeout=60):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, t_banner, t_boot = b"", None, None
    fd = p.stdout.fileno()
    os.set_blocking(fd, True)
    try:
        while time.monotonic() - t0 < timeout:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
            now = time.monotonic() - t0
            if t_banner is None and BANNER in seen:
                t_banner = now
            if MARKER in seen:
                t_boot = now
                break
    finally:
        p.kill()
        p.wait()
    if t_banner is None or t_boot is None:
        raise SystemExit(f"firmware-bench: no boot marker from {cmd[0]} (output: {seen[-300:]!r})")
    return t_banner, t_boot


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(HERE.parent.parent / "build"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--firmware", default="/usr/share/seabios/bios-256k.bin")
    a = ap.parse_args()
    vmm = Path(a.build) / "vmm"
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
            results["qemu"].append(run_once(qemu))
            results["vmm"].append(run_once(ours))
    print(f"firmware {a.firmware}, {a.runs} runs each, alternating; seconds: median (min-max)")
    for i, name in enumerate(["firmware", "boot"]):
        row = []
        for who in ["qemu", "vmm"]:
            xs = [r[i] for r in results[who]]
            row.append(f"{who} {statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})")
        ratios = [v[i] / q[i] for v, q in zip(results["vmm"], results["qemu"])]
        print(f"  {name:8s}  " + "   ".join(row) +
              f"   ours/QEMU median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
