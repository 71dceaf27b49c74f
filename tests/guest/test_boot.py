"""Direct kernel boot: Debian's bzImage and the vmlinux ELF extracted from it
(PVH entry) with the test-mode initramfs (make-guest-initramfs.sh --mode
test), whose init checks the CPU count, memory size, command line token and
interrupts and prints VMMTEST lines; reboot, SIGTERM and a bad kernel."""
import os
import re
import signal
import subprocess
import time

import pytest

import dmi
import harness


def test_kvm_tests(suite, case):
    """build/kvm_tests (Catch2: tiny guests on KVM directly) exits 0."""
    binary = suite.build / "kvm_tests"
    if not binary.is_file():
        pytest.skip(f"{binary} not built")
    try:
        with open(case.path("console"), "wb") as out, open(case.path("stderr"), "wb") as err:
            st = subprocess.run([str(binary)], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                timeout=suite.case_timeout).returncode
    except subprocess.TimeoutExpired:
        st = None
    if st is None:
        case.fail(f"timed out after {suite.case_timeout} s")
    elif st != 0:
        case.fail(f"exit status {st}")
    case.finish()


# (kernel kind, vCPUs, how the guest ends, the VMM's exit status)
GUESTS = {
    "bzimage-1cpu": ("bzimage", 1, "poweroff", 0),
    "bzimage-4cpu": ("bzimage", 4, "poweroff", 0),
    "pvh-1cpu": ("pvh", 1, "poweroff", 0),
    "pvh-4cpu": ("pvh", 4, "poweroff", 0),
    "reboot": ("bzimage", 1, "reboot", 2),
}


@pytest.mark.parametrize("kind,cpus,end,expect", GUESTS.values(), ids=GUESTS.keys())
def test_guest(suite, case, kind, cpus, end, expect):
    """The guest boots, passes its checks and ends (poweroff: exit 0;
    reboot without --reboot: exit 2); --boot-report prints the first
    KVM_RUN and the guest's progress marks 0x1 (init) and 0x2 (checks done)."""
    case.require_vmm()
    tok = harness.token()
    kernel = suite.kernel if kind == "bzimage" else suite.vmlinux
    st = case.run("--kernel", kernel, "--initramfs", suite.initrd, "--cpus", cpus, "--memory", "512M",
                  "--cmdline", case.cmdline(cpus, 512, end, f"vmmtest.token={tok}"), "--boot-report",
                  stderr=case.path("stderr"))
    case.check_status(st, expect)
    case.check_console(["port", f"cpus {cpus}", "mem", f"token {tok}", "interrupts", "acpi"])
    # Our SPCR names COM1 and Linux reads it the same way (QEMU's -M pc has none).
    # Each vCPU's ACPI0007 processor device is in the kernel's ACPI namespace.
    if not suite.qemu_mode:
        case.check(case.console.has(r"ACPI: SPCR: console: uart,io,0x3f8,115200"),
                   "no 'ACPI: SPCR: console: uart,io,0x3f8,115200' from the kernel")
        case.check(case.console.has(rf"^VMMTEST: info acpi-processors {cpus}$"),
                   f"not {cpus} ACPI0007 devices in /sys/bus/acpi/devices: "
                   f"{case.console.find(r'^VMMTEST: info (acpi-processors .*)$')}")
    if not suite.qemu_mode:
        err = case.path("stderr").read_text(errors="replace")
        case.check(re.search(r"^vmm: boot: first KVM_RUN at [0-9.]+ ms", err, re.M),
                   "no 'vmm: boot: first KVM_RUN at <ms> ms' on stderr")
        case.check(re.search(r"^vmm: boot: progress 0x0*1 at [0-9.]+ ms", err, re.M),
                   "no 'vmm: boot: progress 0x1' (init started) on stderr")
        case.check(re.search(r"^vmm: boot: progress 0x0*2 at [0-9.]+ ms", err, re.M),
                   "no 'vmm: boot: progress 0x2' (checks done) on stderr")
    case.finish()


def test_smbios(suite, case, tmp_path):
    """SMBIOS as the guest sees it: Linux finds the tables (the 3.0 entry
    point in the F segment), /sys/class/dmi/id shows --uuid and the --smbios
    strings, and the host's dmidecode decodes the guest's copy of the tables
    without complaint, with one processor per vCPU and the RAM size."""
    case.require_vmm("--smbios")
    case.require_qemu_has("--smbios")
    uuid = "6d6d7674-0001-4e61-8c72-766d6d746573"
    serial = f"ds=nocloud;i={harness.token()}"
    st = case.run("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 2, "--memory", "512M",
                  "--uuid", uuid, "--smbios", f"type=1,serial={serial},manufacturer=Example Corp",
                  "--smbios", "type=3,asset=rack 4",
                  "--cmdline", case.cmdline(2, 512, extra="vmmtest.dmi=1"), stderr=case.path("stderr"))
    case.check_status(st, 0)
    case.check_console(["cpus 2", "dmi"])
    got = dmi.from_console(case.console.text())
    if case.check(got, "the guest printed no SMBIOS tables (vmmtest.dmi=1)"):
        entry, table, fields = got
        case.check(entry[:5] == b"_SM3_", f"entry point {entry[:5]!r}, expected the 3.0 one (_SM3_)")
        want = {"product_uuid": uuid, "product_serial": serial, "sys_vendor": "Example Corp",
                "chassis_asset_tag": "rack 4", "bios_vendor": "vmm"}
        for k, v in want.items():
            case.check(fields.get(k) == v, f"/sys/class/dmi/id/{k} is {fields.get(k)!r}, expected {v!r}")
        text = dmi.decode(entry, table, tmp_path)
        if text is None:
            case.note("SKIP: dmidecode is not installed; the tables were not decoded")
        else:
            (case.path("dmidecode")).write_text(text)
            for p in dmi.problems(text, ["SMBIOS 3.0.0 present.", f"UUID: {uuid}", f"Serial Number: {serial}",
                                         "Socket Designation: CPU 0", "Socket Designation: CPU 1",
                                         "Size: 512 MB", "Asset Tag: rack 4", "System Boot Information"]):
                case.fail(f"dmidecode: {p}")
    case.finish()


def test_rtc_localtime(suite, case):
    """--rtc base=localtime: the guest's RTC (/sys/class/rtc/rtc0, read by
    the test init) runs at the host's local time. The VMM runs with
    TZ=XYZ-02:30, so its RTC must be 2.5 h (9000 s) ahead of UTC."""
    case.require_vmm("--rtc")
    case.require_qemu_has("--rtc")
    old = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ-02:30"
    try:
        t0 = time.time()
        st = case.run("--kernel", suite.kernel, "--initramfs", suite.initrd, "--rtc", "base=localtime",
                      "--cmdline", case.cmdline(), stderr=case.path("stderr"))
        t1 = time.time()
    finally:
        if old is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = old
    case.check_status(st, 0)
    case.check_console(["acpi"])
    rtc = case.console.find(r"^VMMTEST: info rtc ([0-9]+)$")
    if case.check(rtc, "no 'VMMTEST: info rtc N' (/sys/class/rtc/rtc0/since_epoch) on the console"):
        ahead = int(rtc) - 9000
        case.check(t0 - 2 <= ahead <= t1 + 2,
                   f"RTC {rtc} is {int(rtc) - t1:.0f}..{int(rtc) - t0:.0f} s from host UTC, expected 9000")
    case.finish()


def test_sigterm(suite, case):
    """A guest that stays up after its checks gets SIGTERM: the VMM exits
    within 30 s with status 143 (128 + SIGTERM)."""
    case.require_vmm()
    vm = case.start("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 1, "--memory", "512M",
                    "--cmdline", "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.mem_mb=512 vmmtest.end=hang")
    if vm.wait_console(r"^VMMTEST: done", suite.case_timeout):
        time.sleep(1)  # let init reach its sleep
        vm.signal(signal.SIGTERM)
        st = vm.wait_exit(30)
        if st is None:
            case.fail("still running 30 s after SIGTERM")
        elif st != 143:
            case.fail(f"exit status {st} after SIGTERM, expected 143")
    elif not vm.running():
        case.fail(f"the VMM exited (status {vm.wait_exit(1)}) before the guest was up")
    else:
        vm.kill()
        case.fail(f"no 'VMMTEST: done' within {suite.case_timeout} s")
    case.finish()


def test_bad_kernel(suite, case):
    """--kernel of a missing file: exit status 1 and a 'vmm: error:' line."""
    case.require_vmm()
    st = case.run("--kernel", suite.logdir / "no-such-kernel", "--cpus", 1, "--memory", "64M", timeout=60)
    case.check(st == 1, f"exit status {st}, expected 1")
    case.check(re.search(r"^vmm: error:", case.path("stderr").read_text(errors="replace"), re.M),
               "no 'vmm: error:' line on stderr")
    case.finish()
