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
        # The PCI root's _OSC hands the OS the PCIe features it asks for
        # (LTR, bit 5, is not ours to give).
        case.check(case.console.has(r"_OSC: OS now controls \[PCIeHotplug SHPCHotplug PME AER PCIeCapability\]"),
                   "no '_OSC: OS now controls [PCIeHotplug SHPCHotplug PME AER PCIeCapability]' from the kernel: "
                   f"{case.console.find(r'(_OSC: .*)$')}")
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


def rtc_fields(line):
    """'RTC alarm ahead=3 s=2.412 flags=0xa0' -> {'ahead': '3', ...}."""
    return dict(w.split("=", 1) for w in (line or "").split() if "=" in w)


def test_rtc_irq(suite, case):
    """The CMOS RTC's interrupts through Linux's rtc-cmos (rtctest.c in the
    blk guest): rtc_cmos binds PNP0B00 with IRQ 8 and alarms; /dev/rtc0 gives
    64 periodic interrupts in about 1 s, an alarm 3 s ahead in 1.5-6 s with
    RTC_AF, 3 update interrupts in about 3 s with RTC_UF; RTC_SET_TIME reads
    back. Linux runs the periodic and update interrupts of /dev/rtc0 on an
    hrtimer and the RTC's alarm, so the chip's own periodic interrupt is
    checked too: 64 Hz and PIE set directly give IRQ 8 about 64 times in 1 s.
    Wide bounds: the test host is a software emulator."""
    case.blk_prepare()
    st = case.blk_boot(1, "vmmtest.blk=rtc")
    case.blk_common(st, "rtc")
    rtc = r"^VMMTEST: info RTC "
    dmesg = case.console.find(r"^VMMTEST: info rtc-dmesg (.*rtc_cmos.*alarms.*)$")
    case.check(dmesg and "no alarms" not in dmesg,
               f"rtc_cmos did not bind with an IRQ and alarms: {dmesg!r}")
    case.check(not case.console.has(rtc + "FAIL"), f"rtctest failed: {case.console.find(rtc + '(FAIL .*)$')}")
    pie = rtc_fields(case.console.find(rtc + r"(pie .*)$"))
    alarm = rtc_fields(case.console.find(rtc + r"(alarm .*)$"))
    uie = rtc_fields(case.console.find(rtc + r"(uie .*)$"))
    settime = rtc_fields(case.console.find(rtc + r"(settime .*)$"))
    hwpie = rtc_fields(case.console.find(rtc + r"(hwpie .*)$"))
    note = f"  {case.name}: pie {pie.get('n')} in {pie.get('s')} s, alarm {alarm.get('ahead')} s ahead after " \
           f"{alarm.get('s')} s, uie {uie.get('n')} in {uie.get('s')} s, settime diff {settime.get('diff')}, " \
           f"hwpie {hwpie.get('irqs')} IRQ 8 in {hwpie.get('s')} s; {case.console.find(rtc + r'(irq8 .*)$')}"
    case.note(note)
    try:
        case.check(int(pie["n"]) >= 64 and 0.5 <= float(pie["s"]) <= 3.0,
                   f"64 Hz periodic: {pie.get('n')} interrupts in {pie.get('s')} s, expected 64 in 0.5-3 s")
        case.check(1.5 <= float(alarm["s"]) <= 6.0 and int(alarm["flags"], 16) & 0x20,
                   f"alarm 3 s ahead came after {alarm.get('s')} s with flags {alarm.get('flags')}")
        case.check(int(uie["n"]) >= 3 and 2.0 <= float(uie["s"]) <= 5.0 and int(uie["flags"], 16) & 0x10,
                   f"update interrupts: {uie.get('n')} in {uie.get('s')} s, flags {uie.get('flags')}")
        case.check(settime.get("got", "").startswith("2031-05-17T12:34:5") and 0 <= int(settime["diff"]) <= 2,
                   f"RTC_SET_TIME 2031-05-17T12:34:56, read back {settime.get('got')}")
        if not suite.qemu_mode:  # QEMU's -M pc routes IRQ 8 from its HPET instead
            case.check(32 <= int(hwpie["irqs"]) <= 2 * 64 * float(hwpie["s"]),
                       f"the chip's 64 Hz periodic interrupt: {hwpie.get('irqs')} IRQ 8 in {hwpie.get('s')} s")
    except (KeyError, ValueError) as e:
        case.fail(f"rtctest's lines are missing or malformed ({e!r})")
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
