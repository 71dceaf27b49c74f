"""SeaBIOS boots boot sectors from every kind of disk the VMM offers.

Each image carries a 16-bit boot sector that prints "BOOT-OK tag=TAG
drive=" and the BIOS drive number (one raw byte) on COM1 and then powers
the VM off through the ACPI PM1a control register, so a passing test shows
that the firmware ran, found the device through its own virtio driver,
loaded sector 0 (or the El Torito image) and jumped to it."""
import os
import shutil
import struct
import subprocess

import pytest

from bootsector import boot_sector, setup_probe_bzimage
from conftest import write_image


def booted(run, tag):
    """The drive number the boot sector reported, or None."""
    marker = f"BOOT-OK tag={tag} drive=".encode()
    at = run.serial.find(marker)
    if at < 0 or at + len(marker) >= len(run.serial):
        return None
    return run.serial[at + len(marker)]


def test_boots_virtio_blk_disk(run_vm, seabios, tmp_path):
    disk = write_image(tmp_path / "disk.img", boot_sector("blk"))
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}"])
    assert r.status == 0, r.stderr
    assert booted(r, "blk") == 0x80, r.serial
    # SeaBIOS's own text reaches COM1 (its serial console), before the boot.
    assert b"SeaBIOS (version" in r.serial
    assert r.serial.index(b"SeaBIOS (version") < r.serial.index(b"BOOT-OK")


def test_boots_virtio_scsi_disk(run_vm, seabios, tmp_path):
    disk = write_image(tmp_path / "disk.img", boot_sector("scsi"))
    r = run_vm(["--firmware", "bios", "--scsi-disk", f"path={disk}"])
    assert r.status == 0, r.stderr
    assert booted(r, "scsi") == 0x80, r.serial


def el_torito_iso(tmp_path, tag):
    """An ISO image whose El Torito (no emulation) boot image is boot_sector(tag)."""
    if not shutil.which("xorriso"):
        pytest.skip("SKIP: xorriso is not installed")
    root = tmp_path / f"cd-{tag}"
    root.mkdir()
    (root / "boot.bin").write_bytes(boot_sector(tag) + bytes(1536))
    iso = tmp_path / f"{tag}.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-b", "boot.bin", "-no-emul-boot", "-boot-load-size", "4",
                    "-o", str(iso), str(root)], check=True)
    return iso


def test_boots_cdrom_el_torito(run_vm, seabios, tmp_path):
    iso = el_torito_iso(tmp_path, "cd")
    r = run_vm(["--firmware", "bios", "--cdrom", iso])
    assert r.status == 0, r.stderr
    drive = booted(r, "cd")
    assert drive is not None and drive >= 0xe0, r.serial  # SeaBIOS numbers CD-ROMs from 0xe0


def test_boot_order(run_vm, seabios, tmp_path):
    # Without bootindex the first disk boots; a lower bootindex wins, across
    # device kinds too (SeaBIOS reads our `bootorder` file).
    first = write_image(tmp_path / "a.img", boot_sector("first"))
    second = write_image(tmp_path / "b.img", boot_sector("second"))
    scsi = write_image(tmp_path / "s.img", boot_sector("scsi"))
    r = run_vm(["--firmware", "bios", "--disk", f"path={first}", "--disk", f"path={second}"])
    assert r.status == 0, r.stderr
    assert booted(r, "first") == 0x80, r.serial
    assert booted(r, "second") is None
    r = run_vm(["--firmware", "bios", "--disk", f"path={first},bootindex=2", "--disk", f"path={second},bootindex=1",
                "--log-level", "debug"])
    assert r.status == 0, r.stderr
    assert booted(r, "second") == 0x80, r.serial
    assert "firmware: Searching bootorder for: /pci@i0cf8/*@2" in r.stderr
    r = run_vm(["--firmware", "bios", "--disk", f"path={first},bootindex=1", "--scsi-disk", f"path={scsi},bootindex=0"])
    assert r.status == 0, r.stderr
    assert booted(r, "scsi") == 0x80, r.serial
    assert booted(r, "first") is None


@pytest.mark.parametrize("order,winner", [("cdrom,disk", "cd"), ("disk,cdrom", "first"), ("disk", "first")])
def test_boot_order_shorthand(run_vm, seabios, tmp_path, order, winner):
    # --boot order=KINDS gives the devices of each kind boot indexes in that
    # order; without it SeaBIOS would try the virtio-blk disk first.
    disk = write_image(tmp_path / "a.img", boot_sector("first"))
    iso = el_torito_iso(tmp_path, "cd")
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}", "--cdrom", iso, "--boot", f"order={order}"])
    assert r.status == 0, r.stderr
    for tag in ("first", "cd"):
        assert (booted(r, tag) is not None) == (tag == winner), r.serial


def test_network_boot_rom(run_vm, seabios, tap, tmp_path):
    # virtio-net carries iPXE's ROM (Debian's ipxe-qemu) in its expansion ROM
    # BAR: SeaBIOS copies it, runs its init (iPXE prints its banner with the
    # device's PCI address) and adds a network boot entry. Without a
    # bootindex on the NIC the disk still boots first. (iPXE's own network
    # boot runs in 32-bit ring 0, which a nested /dev/kvm cannot run: the
    # PXE test in test_linux.py runs it in the test host.)
    rom = "/usr/lib/ipxe/qemu/efi-virtio.rom"
    if not os.access(rom, os.R_OK):
        pytest.skip(f"SKIP: {rom} is missing (Debian package ipxe-qemu)")
    name, _ = tap()
    disk = write_image(tmp_path / "disk.img", boot_sector("disk"))
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}", "--net", f"tap={name}", "--log-level", "debug"])
    assert r.status == 0, r.stderr
    assert booted(r, "disk") == 0x80, r.serial
    assert b"iPXE (http://ipxe.org) 00:02.0" in r.serial, r.serial
    assert f"option ROM {rom}" in r.stderr
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}", "--net", f"tap={name},rom=off"])
    assert r.status == 0, r.stderr
    assert booted(r, "disk") == 0x80 and b"iPXE" not in r.serial, r.serial
    # A file that is not a PCI expansion ROM is refused before the VM runs.
    bogus = tmp_path / "bogus.rom"
    bogus.write_bytes(b"\x55\xaa" + bytes(4094))
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}", "--net", f"tap={name},rom={bogus}"])
    assert r.status == 1 and "not a PCI expansion ROM" in r.stderr, r.stderr


def test_smp_and_ram_above_4g(run_vm, seabios, tmp_path):
    # SeaBIOS counts the APs it woke against CMOS 0x5f and fw_cfg; with 3 GiB
    # low RAM ends at 2 GiB (Q35) and the rest is above 4 GiB.
    disk = write_image(tmp_path / "disk.img", boot_sector("smp"))
    r = run_vm(["--firmware", "bios", "--cpus", "4", "--memory", "3G", "--disk", f"path={disk}",
                "--log-level", "debug"])
    assert r.status == 0, r.stderr
    assert booted(r, "smp") == 0x80
    assert "Found 4 cpu(s)" in r.stderr
    # SeaBIOS's copy of our etc/e820: the 1 GiB above 4 GiB is RAM.
    assert "0000000100000000 - 0000000140000000 = 1 RAM" in r.stderr


def test_debug_log_and_acpi_tables(run_vm, seabios, tmp_path):
    # --log-level debug shows the firmware's debug port. SeaBIOS moves the PM
    # block to 0x600 only when it has etc/table-loader, and then finds the
    # FADT ("FACP") through the XSDT of the tables it installed from ours.
    disk = write_image(tmp_path / "disk.img", boot_sector("dbg"))
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}", "--log-level", "debug"])
    assert r.status == 0, r.stderr
    assert "firmware: SeaBIOS (version" in r.stderr
    assert "firmware: Moving pm_base to 0x600" in r.stderr
    assert "firmware: table(50434146)=" in r.stderr and "(via xsdt)" in r.stderr
    assert "pci: ECAM at 0xb0000000" in r.stderr


def test_guest_reset_restarts_the_firmware(run_vm, seabios, tmp_path):
    # A reset ends the VM with status 2; with --reboot the VM starts again
    # from the firmware (a fresh copy of the image) and boots again.
    disk = write_image(tmp_path / "disk.img", boot_sector("reset", reset=True))
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}"])
    assert r.status == 2, r.stderr
    assert booted(r, "reset") == 0x80
    r = run_vm(["--firmware", "bios", "--disk", f"path={disk}", "--reboot"], timeout=15)
    assert r.status == 5, r.stderr  # --timeout ends the reboot loop
    assert r.serial.count(b"SeaBIOS (version") >= 2, r.serial
    assert r.serial.count(b"BOOT-OK tag=reset drive=\x80") >= 2, r.serial


def test_kernel_through_the_firmware(run_vm, seabios, tmp_path):
    # --firmware with --kernel: SeaBIOS runs linuxboot_dma.bin, which loads
    # setup, kernel, initramfs and command line over fw_cfg DMA, patches the
    # setup header and enters the setup code; it boots before a bootable disk.
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(setup_probe_bzimage())
    initrd = tmp_path / "initrd"
    initrd.write_bytes(bytes(range(256)) * 40 + b"tail")
    disk = write_image(tmp_path / "disk.img", boot_sector("disk"))
    cmdline = "console=ttyS0 vmmtest.token=linuxboot-7f3a"
    r = run_vm(["--firmware", "bios", "--kernel", kernel, "--initramfs", initrd, "--cmdline", cmdline,
                "--disk", f"path={disk}"])
    assert r.status == 0, r.stderr
    expect = b"R" + struct.pack("<I", initrd.stat().st_size) + b"C" + cmdline.encode() + b"\n"
    assert expect in r.serial, r.serial
    assert booted(r, "disk") is None


def test_no_bootable_device(run_vm, seabios, tmp_path):
    blank = write_image(tmp_path / "blank.img", bytes(512))
    r = run_vm(["--firmware", "bios", "--disk", f"path={blank}"])
    assert r.status == 7, r.stderr
    assert "no bootable device" in r.stderr
    assert b"No bootable device" in r.serial


def test_bad_firmware_images(run_vm, tmp_path):
    r = run_vm(["--firmware", tmp_path / "missing.bin"])
    assert r.status == 1
    assert "--firmware" in r.stderr and "No such file" in r.stderr
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x90" * 5000)
    r = run_vm(["--firmware", odd])
    assert r.status == 1
    assert "whole number of 4 KiB pages" in r.stderr
    r = run_vm(["--firmware", "bios,vars=" + str(tmp_path / "v.fd")])
    assert r.status == 1 and "only UEFI firmware keeps variables" in r.stderr


def test_uefi_vars_file_made_from_the_template(run_vm, tmp_path):
    # --firmware uefi,vars=PATH creates PATH from Debian's OVMF_VARS_4M.fd
    # when missing, before the firmware runs (OVMF itself needs a /dev/kvm
    # that runs 64-bit ring 0: on a nested one it stops with status 4).
    template = "/usr/share/OVMF/OVMF_VARS_4M.fd"
    if not os.access(template, os.R_OK):
        pytest.skip("SKIP: Debian's ovmf package is not installed")
    vars_file = tmp_path / "vm.vars"
    r = run_vm(["--firmware", f"uefi,vars={vars_file}", "--log-level", "info"], timeout=5)
    assert r.status in (0, 4, 5), r.stderr
    assert vars_file.read_bytes() == open(template, "rb").read()
    assert (vars_file.stat().st_mode & 0o777) == 0o600
    # Right below the 3.5 MiB code image that ends at 4 GiB.
    assert "UEFI variable store: 540672 at 0xffc00000" in r.stderr, r.stderr
