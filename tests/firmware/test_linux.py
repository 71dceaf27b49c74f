"""Debian's kernel booted the way users boot images: SeaBIOS or OVMF loads
GRUB from a bootable image (one grub-mkrescue image with BIOS and EFI
GRUB, usable as a disk and as a CD), GRUB loads the kernel and the test-mode
initramfs
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


def check_linux_booted(run, token, bootloader="GRUB: loading the kernel", firmware_banner="SeaBIOS (version"):
    console = run.serial.decode(errors="replace")
    assert run.status == 0, f"exit status {run.status}\n{run.stderr[-2000:]}\n{console[-3000:]}"
    markers = ([firmware_banner] if firmware_banner else []) + ["VMMTEST: init started",
               "VMMTEST: PASS cpus", "VMMTEST: PASS mem", f"VMMTEST: PASS token {token}", "VMMTEST: done"]
    for marker in markers + ([bootloader] if bootloader else []):
        assert marker in console, f"missing {marker!r}\n{console[-3000:]}"
    assert "VMMTEST: FAIL" not in console, console[-3000:]
    # Firmware, bootloader and kernel ran in this order.
    order = [m for m in [firmware_banner, bootloader] if m] + ["VMMTEST: init"]
    at = [console.index(m) for m in order]
    assert at == sorted(at), order


def test_seabios_kernel_boot(run_vm, seabios):
    # --firmware bios --kernel: SeaBIOS, then QEMU's linuxboot_dma ROM loads
    # Debian's kernel and the test initramfs from fw_cfg.
    kernel = os.environ.get("VMM_FW_KERNEL")
    initramfs = os.environ.get("VMM_FW_INITRAMFS")
    if not kernel or not initramfs:
        pytest.skip("SKIP: VMM_FW_KERNEL / VMM_FW_INITRAMFS not set (run through tests/firmware/run-firmware-tests.sh)")
    token = secrets.token_hex(6)
    cmdline = f"console=ttyS0 panic=1 vmmtest.cpus={CPUS} vmmtest.mem_mb={MEM_MB} vmmtest.token={token}"
    r = run_vm(["--firmware", "bios", "--kernel", kernel, "--initramfs", initramfs, "--cmdline", cmdline,
                "--memory", f"{MEM_MB}M", "--cpus", str(CPUS)], timeout=300)
    check_linux_booted(r, token, bootloader=None)


@pytest.mark.parametrize("attach", ["--disk", "--scsi-disk", "--cdrom"])
def test_seabios_grub_linux(run_vm, seabios, grub_image, attach):
    image, token = grub_image
    spec = f"path={image}" + ("" if attach == "--cdrom" else ",readonly=on")
    r = run_vm(["--firmware", "bios", "--memory", f"{MEM_MB}M", "--cpus", str(CPUS), attach, spec], timeout=300)
    check_linux_booted(r, token)


@pytest.fixture(scope="session")
def ovmf():
    for p in ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"]:
        if not os.access(p, os.R_OK):
            pytest.skip(f"SKIP: {p} is missing (Debian package ovmf)")
    return "/usr/share/OVMF/OVMF_VARS_4M.fd"


@pytest.mark.parametrize("attach", ["--disk", "--cdrom"])
def test_ovmf_grub_linux(run_vm, ovmf, grub_image, tmp_path, attach):
    # --firmware uefi: OVMF finds the image's EFI system partition through its
    # virtio-blk / virtio-scsi driver, runs GRUB's EFI build, which starts the
    # kernel through its EFI stub. OVMF writes its boot options into the
    # variable store, so the vars file must differ from the template after
    # the boot (the flash writes reached the file).
    image, token = grub_image
    vars_file = tmp_path / "vm.vars"
    spec = f"path={image}" + ("" if attach == "--cdrom" else ",readonly=on")
    r = run_vm(["--firmware", f"uefi,vars={vars_file}", "--memory", f"{MEM_MB}M", "--cpus", str(CPUS), attach, spec],
               timeout=300)
    console = r.serial.decode(errors="replace")
    assert "efi: EFI v2" in console, console[-3000:]
    check_linux_booted(r, token, firmware_banner=None)
    assert vars_file.read_bytes() != open(ovmf, "rb").read(), "OVMF wrote nothing to its variable store"


def test_seabios_pxe_linux(run_vm, seabios, tap, tmp_path):
    # Network boot: SeaBIOS runs iPXE from virtio-net's expansion ROM BAR
    # (--net ...,bootindex=0); iPXE drives our virtio-net through its own
    # driver, gets an address and a boot file name from dnsmasq's DHCP on the
    # tap, fetches the script over TFTP and then the kernel and initramfs.
    kernel = os.environ.get("VMM_FW_KERNEL")
    initramfs = os.environ.get("VMM_FW_INITRAMFS")
    if not kernel or not initramfs:
        pytest.skip("SKIP: VMM_FW_KERNEL / VMM_FW_INITRAMFS not set (run through tests/firmware/run-firmware-tests.sh)")
    dnsmasq = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.access("/usr/sbin/dnsmasq", os.X_OK) else None)
    if not dnsmasq:
        pytest.skip("SKIP: dnsmasq is not installed (Debian package dnsmasq-base)")
    if not os.access("/usr/lib/ipxe/qemu/efi-virtio.rom", os.R_OK):
        pytest.skip("SKIP: iPXE's virtio-net ROM is missing (Debian package ipxe-qemu)")
    name, host = tap("vmmpxe0", "10.0.99.1/24")
    root = tmp_path / "tftp"
    root.mkdir()
    shutil.copy(kernel, root / "vmlinuz")
    shutil.copy(initramfs, root / "initrd.img")
    token = secrets.token_hex(6)
    cmdline = f"console=ttyS0 panic=1 vmmtest.cpus={CPUS} vmmtest.mem_mb={MEM_MB} vmmtest.token={token}"
    (root / "boot.ipxe").write_text("#!ipxe\n"
                                    "echo IPXE: loading the kernel\n"
                                    f"kernel tftp://{host}/vmlinuz {cmdline}\n"
                                    f"initrd tftp://{host}/initrd.img\n"
                                    "boot\n")
    server = subprocess.Popen([dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root",
                               f"--interface={name}", "--bind-interfaces", "--dhcp-range=10.0.99.10,10.0.99.50,1h",
                               f"--dhcp-leasefile={tmp_path / 'leases'}", "--pid-file=", "--enable-tftp",
                               f"--tftp-root={root}", "--dhcp-boot=boot.ipxe", "--log-dhcp",
                               f"--log-facility={tmp_path / 'dnsmasq.log'}"])
    try:
        r = run_vm(["--firmware", "bios", "--memory", f"{MEM_MB}M", "--cpus", str(CPUS),
                    "--net", f"tap={name},bootindex=0"], timeout=400)
    finally:
        server.terminate()
        server.wait(10)
    log = (tmp_path / "dnsmasq.log").read_text(errors="replace") if (tmp_path / "dnsmasq.log").exists() else ""
    assert "sent" in log and "boot.ipxe" in log, log[-3000:]
    check_linux_booted(r, token, bootloader="IPXE: loading the kernel")
    console = r.serial.decode(errors="replace")
    assert "iPXE" in console[:console.index("IPXE: loading the kernel")]
