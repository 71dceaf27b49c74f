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

Linux through the firmware is not compared here: QEMU with -accel kvm
inside the software-emulated test host printed nothing within 45 s, not
even SeaBIOS's banner (-M pc or q35, any kernel-irqchip mode), so there is
no QEMU to compare against on a nested build machine (docs/firmware.md).

Serial output is read from the VMM's stdout pipe as it comes; the process
is killed once the last marker is seen (or after a minute without it). Prints the median and range of each
figure and the median of the per-run ratios ours / QEMU (below 1: we are
faster)."""
import argparse
import os
import select
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


def run_once(cmd, markers, timeout=60):
    """Seconds from the start of `cmd` until each of `markers` appeared on
    its stdout, in order."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, times = b"", []
    fd = p.stdout.fileno()
    os.set_blocking(fd, True)
    try:
        while len(times) < len(markers):
            left = timeout - (time.monotonic() - t0)
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
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
    print(f"  {Path(cmd[0]).name}: " + " ".join(f"{t:.2f}" for t in times), flush=True)
    return times


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
            results["qemu"].append(run_once(qemu, [BANNER, MARKER]))
            results["vmm"].append(run_once(ours, [BANNER, MARKER]))
    report(f"firmware {a.firmware}", ["firmware", "boot"], results, a.runs)


if __name__ == "__main__":
    main()
