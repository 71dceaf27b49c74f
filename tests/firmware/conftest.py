"""Fixtures for the firmware tests: the vmm binary, the firmware images,
and a runner that boots one VM and returns its exit status and output.

These tests run on this machine's /dev/kvm directly: firmware and boot
sectors run in real mode, which even a nested /dev/kvm without hardware
virtualization underneath emulates (tests/guest/README.md)."""
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SEABIOS = ["/usr/share/seabios/bios-256k.bin", "/usr/share/seabios/bios.bin"]


def pytest_addoption(parser):
    parser.addoption("--vmm", default=os.environ.get("VMM_BINARY", "build/vmm"), help="the vmm binary under test")


@pytest.fixture(scope="session")
def vmm_binary(pytestconfig):
    path = Path(pytestconfig.getoption("--vmm")).resolve()
    if not path.is_file():
        pytest.fail(f"vmm binary {path} not found (build first, or pass --vmm)")
    return path


@pytest.fixture(scope="session")
def kvm():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        pytest.skip(f"SKIP: /dev/kvm cannot be opened ({e.strerror})")
    os.close(fd)


@pytest.fixture(scope="session")
def seabios():
    for p in SEABIOS:
        if os.access(p, os.R_OK):
            return p
    pytest.skip("SKIP: SeaBIOS is not installed (Debian package seabios)")


@dataclass
class Run:
    status: int
    serial: bytes
    stderr: str


@pytest.fixture
def run_vm(vmm_binary, kvm, tmp_path, request):
    """run_vm(args, timeout=60) -> Run: boots build/vmm with `args` plus a
    serial file, waits for it to end and returns status and output. With
    VMM_FW_LOGDIR set, the serial output and stderr stay there as
    TEST-N.serial / TEST-N.stderr (they are written while the VM runs)."""
    logdir = Path(os.environ.get("VMM_FW_LOGDIR") or tmp_path)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    count = 0

    def run(args, timeout=60):
        nonlocal count
        count += 1
        serial = logdir / f"{name}-{count}.serial"
        errlog = logdir / f"{name}-{count}.stderr"
        cmd = [str(vmm_binary), "--serial", f"file={serial}", "--timeout", str(timeout), *map(str, args)]
        with open(errlog, "wb") as err:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                               timeout=timeout + 30)
        out = serial.read_bytes() if serial.exists() else b""
        return Run(p.returncode, out, errlog.read_text(errors="replace"))

    return run


def write_image(path: Path, boot_sector: bytes, size: int = 1 << 20) -> Path:
    """A raw disk image of `size` bytes with `boot_sector` at its start."""
    with open(path, "wb") as f:
        f.write(boot_sector)
        f.truncate(size)
    return path


@pytest.fixture
def tap():
    """tap() -> (name, host address): a fresh tap device with 10.0.99.1/24
    on the host side, removed after the test. SKIP where taps cannot be
    made (not root, no /dev/net/tun, no `ip`)."""
    made = []

    def make(name="vmmfwtap0", address="10.0.99.1/24"):
        if os.geteuid() != 0 or not os.access("/dev/net/tun", os.R_OK | os.W_OK) or not shutil.which("ip"):
            pytest.skip("SKIP: making a tap device needs root, /dev/net/tun and iproute2")
        subprocess.run(["ip", "link", "delete", name], capture_output=True)
        for cmd in (["tuntap", "add", "dev", name, "mode", "tap"], ["addr", "add", address, "dev", name],
                    ["link", "set", name, "up"]):
            subprocess.run(["ip", *cmd], check=True, capture_output=True)
        made.append(name)
        return name, address.split("/")[0]

    yield make
    for name in made:
        subprocess.run(["ip", "link", "delete", name], capture_output=True)


def _record(name, nodeid, mode):
    logdir = os.environ.get("VMM_FW_LOGDIR")
    if not logdir:
        return
    with open(Path(logdir) / name, mode) as f:
        f.write(nodeid + "\n")
        f.flush()
        os.fsync(f.fileno())


def pytest_runtest_logstart(nodeid, location):
    """Names the test that is starting in VMM_FW_LOGDIR/running, so that
    when the emulated test host dies, run-firmware-tests.sh knows which test
    it died in."""
    _record("running", nodeid, "w")


def pytest_runtest_logreport(report):
    """Appends each test that passed or was skipped to VMM_FW_LOGDIR/done as
    it finishes, so that when the emulated test host dies mid-run
    (run-firmware-tests.sh), the next attempt runs only the others."""
    finished = (report.when == "call" and (report.passed or report.skipped)) or \
        (report.when == "setup" and report.skipped)
    if finished:
        _record("done", report.nodeid, "a")


def pytest_sessionfinish(session):
    """Inside the test host: keeps its kernel log (KVM's complaints, the
    seccomp audit lines of a VMM run with --seccomp log) in VMM_FW_LOGDIR."""
    logdir = os.environ.get("VMM_FW_LOGDIR")
    if logdir and os.environ.get("TESTHOST_SCRATCH"):
        with open(Path(logdir) / f"testhost-dmesg-{time.time_ns()}.txt", "wb") as f:
            subprocess.run(["dmesg"], stdout=f, stderr=subprocess.STDOUT)
