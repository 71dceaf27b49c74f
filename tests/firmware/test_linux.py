"""Debian's kernel booted the way users boot images: SeaBIOS loads GRUB
from a bootable image (one grub-mkrescue image, usable as a disk and as a
CD), GRUB loads the kernel and the test-mode initramfs
(tests/guest/make-guest-initramfs.sh --mode test), whose init checks the
CPU count, memory size and command line and prints VMMTEST lines.

These need a /dev/kvm that runs Linux: run-firmware-tests.sh runs them
directly where tests/guest/kvm-usable.sh says so, otherwise inside the
software-emulated test host (tests/guest/testhost.sh)."""
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.linux

MEM_MB = 512
CPUS = 2


@pytest.fixture(scope="module")
def grub_image(tmp_path_factory):
    """(image path, token): a hybrid GRUB image whose menu boots the kernel
    and test initramfs with a fresh vmmtest.token."""
    kernel = os.environ.get("VMM_FW_KERNEL")
    initramfs = os.environ.get("VMM_FW_INITRAMFS")
    if not kernel or not initramfs:
        pytest.skip("SKIP: VMM_FW_KERNEL / VMM_FW_INITRAMFS not set (run through tests/firmware/run-firmware-tests.sh)")
    if not shutil.which("grub-mkrescue"):
        pytest.skip("SKIP: grub-mkrescue is not installed (grub-common, grub-pc-bin)")
    token = secrets.token_hex(6)
    d = tmp_path_factory.mktemp("grub")
    root = d / "root"
    (root / "boot" / "grub").mkdir(parents=True)
    shutil.copy(kernel, root / "vmlinuz")
    shutil.copy(initramfs, root / "initrd.img")
    cmdline = f"console=ttyS0 panic=1 vmmtest.cpus={CPUS} vmmtest.mem_mb={MEM_MB} vmmtest.token={token}"
    (root / "boot" / "grub" / "grub.cfg").write_text(
        "set timeout=0\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial\n"
        "terminal_output serial\n"
        "menuentry linux {\n"
        '  echo "GRUB: loading the kernel"\n'
        f"  linux /vmlinuz {cmdline}\n"
        "  initrd /initrd.img\n"
        "}\n")
    image = d / "boot.iso"
    subprocess.run(["grub-mkrescue", "-o", str(image), str(root)], check=True, capture_output=True)
    return image, token


def check_linux_booted(run, token):
    console = run.serial.decode(errors="replace")
    assert run.status == 0, f"exit status {run.status}\n{run.stderr[-2000:]}\n{console[-3000:]}"
    for marker in ["SeaBIOS (version", "GRUB: loading the kernel", "VMMTEST: init started",
                   "VMMTEST: PASS cpus", "VMMTEST: PASS mem", f"VMMTEST: PASS token {token}", "VMMTEST: done"]:
        assert marker in console, f"missing {marker!r}\n{console[-3000:]}"
    assert "VMMTEST: FAIL" not in console, console[-3000:]
    # Firmware, bootloader and kernel ran in this order.
    assert console.index("SeaBIOS (version") < console.index("GRUB: loading") < console.index("VMMTEST: init")


@pytest.mark.parametrize("attach", ["--disk", "--scsi-disk", "--cdrom"])
def test_seabios_grub_linux(run_vm, seabios, grub_image, attach):
    image, token = grub_image
    spec = f"path={image}" + ("" if attach == "--cdrom" else ",readonly=on")
    r = run_vm(["--firmware", "bios", "--memory", f"{MEM_MB}M", "--cpus", str(CPUS), attach, spec], timeout=600)
    check_linux_booted(r, token)
