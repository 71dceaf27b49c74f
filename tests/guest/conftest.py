"""Fixtures of the real-guest suite (tests/guest/test_*.py).

`suite` (one per session) knows the VMM under test, the guest artifacts and
the per-case timeout; `case` (one per test) is where a test boots VMs,
collects the reasons it failed and reports them (harness.py). The suite is
normally run by runner.py (run-guest-tests.sh), which builds the artifacts,
decides where the guests can run and passes everything in VMM_GUEST_*
variables; run directly (`python3 -m pytest tests/guest`) on a machine whose
/dev/kvm runs Linux, the fixtures build what is missing themselves.

Environment (all optional):
  VMM_GUEST_BUILD          build directory (default: REPO/build)
  VMM_GUEST_LOGDIR         where each case's logs are kept (default: BUILD/guest-tests)
  VMM_GUEST_CASE_TIMEOUT   seconds a guest may take (default 240, TCG speed)
  VMM_GUEST_KERNEL, VMM_GUEST_INITRAMFS, VMM_GUEST_PVH, VMM_GUEST_BLK_ROOT,
  VMM_GUEST_BLK_INITRAMFS, VMM_GUEST_BLKBENCH
                           the guest artifacts (default: built through lib.sh)
  VMM_GUEST_ONLY           a regex: only the cases whose name it finds
  VMM_UNDER_TEST_QEMU=1    QEMU stands in for the VMM (qemu_adapter.py)
For the runner: the outcome of every case goes to LOGDIR/.results as
"PASS|FAIL|SKIP NAME SECONDS", the running case to LOGDIR/.current, and
inside the test host (TESTHOST_SCRATCH set) a heartbeat to LOGDIR/.heartbeat
every 5 s, so that a wedged test host can be told from a slow case."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import harness
from harness import Log, Vm, case_name

_config = None


def env_path(name, default):
    v = os.environ.get(name)
    return Path(v) if v else default


def lib_artifact(function):
    """A cached guest artifact from lib.sh (built if missing), or None."""
    p = subprocess.run(["bash", "-c", f'. "{harness.GUEST_DIR}/lib.sh" && {function}'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = p.stdout.strip().splitlines()
    return Path(out[-1]) if p.returncode == 0 and out else None


class Suite:
    def __init__(self):
        self.build = env_path("VMM_GUEST_BUILD", harness.REPO_ROOT / "build").resolve()
        os.environ.setdefault("VMM_TEST_CACHE", str(self.build / "test-cache"))
        self.logdir = env_path("VMM_GUEST_LOGDIR", self.build / "guest-tests")
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.case_timeout = int(os.environ.get("VMM_GUEST_CASE_TIMEOUT", "240"))
        self.qemu_mode = os.environ.get("VMM_UNDER_TEST_QEMU", "0") not in ("", "0")
        if self.qemu_mode:
            self.vmm = [sys.executable, str(harness.GUEST_DIR / "qemu_adapter.py")]
        else:
            self.vmm = [str(self.build / "vmm")]
        self.ctl_binary = self.build / "vmm"
        # Live logs go to a local directory (a tmpfs in the test host) and are
        # copied to the log directory after each case: there the log directory
        # is a 9p mount, and a VMM writing its console to it byte by byte
        # would stall its emulated UART (and the guest).
        self.live = Path(tempfile.mkdtemp(prefix="guest-tests."))
        self.kernel = env_path("VMM_GUEST_KERNEL", None) or lib_artifact("guest_kernel")
        self.initrd = env_path("VMM_GUEST_INITRAMFS", None) or lib_artifact("guest_test_initramfs")
        self.vmlinux = env_path("VMM_GUEST_PVH", None) or lib_artifact("guest_pvh_vmlinux")
        self._blk = None
        self._help = None

    def vmm_present(self):
        return self.qemu_mode or os.access(self.vmm[0], os.X_OK)

    def help_mentions(self, text):
        """True if the VMM's --help mentions TEXT (always, for QEMU)."""
        if self.qemu_mode:
            return True
        if self._help is None:
            p = subprocess.run([*self.vmm, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
            self._help = p.stdout.decode(errors="replace")
        return text in self._help

    def blk_guest(self):
        """(root image, initramfs, blkbench) of the virtio block guest
        (make-blk-guest.sh), or None if it could not be built."""
        if self._blk is None:
            root = env_path("VMM_GUEST_BLK_ROOT", None) or lib_artifact("guest_blk_rootfs")
            initrd = env_path("VMM_GUEST_BLK_INITRAMFS", None) or lib_artifact("guest_blk_initramfs")
            bench = env_path("VMM_GUEST_BLKBENCH", None) or lib_artifact("guest_blkbench")
            found = (root, initrd, bench)
            self._blk = found if all(p and p.exists() for p in found) else ()
        return self._blk or None


class Case:
    """One case: its logs (live/NAME.console, .stderr, ...), the reasons it
    failed, and the ways to boot the guests."""

    def __init__(self, suite, name):
        self.suite = suite
        self.name = name
        self.live = suite.live
        self.reasons = []
        self.t0 = time.monotonic()
        self.console = Log(self.path("console"))
        self.img = self.live / "img"
        self.ctl_sock = None

    # -- bookkeeping
    def path(self, suffix):
        return self.live / f"{self.name}.{suffix}"

    def fail(self, reason):
        self.reasons.append(reason)

    def check(self, ok, reason):
        if not ok:
            self.reasons.append(reason)
        return ok

    def note(self, line):
        """A line for the terminal and NAME.info (figures a benchmark reads)."""
        with open(self.path("info"), "a") as f:
            f.write(line + "\n")
        if _config is not None:
            _config.pluginmanager.get_plugin("terminalreporter").write_line(line)

    def require_vmm(self, option=None):
        """Fails the case if the VMM is missing, or OPTION is not in its
        --help (a feature not built in)."""
        if not self.suite.vmm_present():
            pytest.fail(f"{self.suite.vmm[0]} does not exist or is not executable", pytrace=False)
        if option and not self.suite.help_mentions(option):
            pytest.fail(f"{self.suite.vmm[0]} --help does not mention {option}", pytrace=False)

    def require_qemu_has(self, option):
        """SKIP under the QEMU adapter, which lacks OPTION."""
        if self.suite.qemu_mode:
            pytest.skip(f"the QEMU adapter has no {option}")

    def finish(self):
        """Fails the test with every reason collected, and the log tails."""
        if not self.reasons:
            return
        lines = [f"{self.name}: {len(self.reasons)} problem(s):"]
        lines += [f"  - {r}" for r in self.reasons]
        con = [ln for ln in self.console.text().splitlines() if "VMMTEST: info" not in ln]
        if con:
            lines.append(f"  --- tail of {self.name}.console")
            lines += [f"  | {ln}" for ln in con[-25:]]
        err = Log(self.path("stderr")).text().splitlines()
        if err:
            lines.append(f"  --- tail of {self.name}.stderr")
            lines += [f"  | {ln}" for ln in err[-15:]]
        pytest.fail("\n".join(lines), pytrace=False)

    # -- running the VMM
    def start(self, *args, stdout=None, stderr=None, stdin=subprocess.DEVNULL, console=None, cwd=None):
        """The VMM in the background: stdout to NAME.console unless STDOUT
        names another file; CONSOLE is the log wait_console() polls."""
        out = Path(stdout) if stdout else self.path("console")
        con = Path(console) if console else self.path("console")
        con.touch()
        return Vm([*self.suite.vmm, *args], con, out, stderr or self.path("stderr"), stdin=stdin, cwd=cwd)

    def run(self, *args, timeout=None, **kw):
        """Runs the VMM to its end; the exit status, or None after TIMEOUT
        (default: the case timeout) s, when it has been killed."""
        vm = self.start(*args, **kw)
        return vm.wait_exit(timeout or self.suite.case_timeout)

    def check_status(self, st, expect, timeout=None):
        if st is None:
            self.fail(f"timed out after {timeout or self.suite.case_timeout} s")
        elif st != expect:
            self.fail(f"exit status {st}, expected {expect}")

    def check_console(self, checks=(), log=None, stage2=False, where="on the console"):
        """The guest's reports: it started, (switched root,) finished, failed
        nothing, and passed each of CHECKS."""
        log = log or self.console
        self.check(log.has(r"^VMMTEST: init started"), f"no 'VMMTEST: init started' {where}")
        if stage2:
            self.check(log.has(r"^VMMTEST: stage2 started"),
                       "no 'VMMTEST: stage2 started': the initramfs did not switch_root into /dev/vda")
        self.check(log.has(r"^VMMTEST: done"), f"no 'VMMTEST: done' {where}")
        self.check_no_fail(log)
        for c in checks:
            self.check(log.has(rf"^VMMTEST: PASS {re.escape(c)}( |$)"), f"no 'VMMTEST: PASS {c}' {where}")

    def check_no_fail(self, log=None):
        fails = (log or self.console).fail_lines()
        self.check(not fails, "guest checks failed: " + ";".join(fails))

    def cmdline(self, cpus=1, mem=512, end=None, extra=""):
        s = f"console=ttyS0 panic=-1 vmmtest.cpus={cpus} vmmtest.mem_mb={mem}"
        if end:
            s += f" vmmtest.end={end}"
        return s + (f" {extra}" if extra else "")

    # -- the control API
    def ctl(self, *args, sock=None):
        """`vmm ctl --socket SOCK ARGS`: (exit status, output); logged to NAME.ctl."""
        sock = sock or self.ctl_sock
        try:
            p = subprocess.run([str(self.suite.ctl_binary), "ctl", "--socket", str(sock), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
                               stdin=subprocess.DEVNULL)
            st, out = p.returncode, p.stdout.decode(errors="replace").strip()
        except subprocess.TimeoutExpired:
            st, out = 124, "(timed out after 30 s)"
        with open(self.path("ctl"), "a") as f:
            f.write(f"$ vmm ctl {' '.join(args)} -> exit {st}\n{out}\n")
        return st, out

    def ctl_ok(self, what, *args):
        """The output of a `vmm ctl` that must succeed, or None (a reason)."""
        st, out = self.ctl(*args)
        if st != 0:
            self.fail(f"{what}: 'vmm ctl {' '.join(args)}' exited {st}: {out[:300]}")
            return None
        return out

    def counters(self, what="counters", required=True):
        """{device: {counter: value}} from `vmm ctl counters`, or None; a
        failure is a reason unless not REQUIRED (the VMM may be gone)."""
        if required:
            out = self.ctl_ok(what, "counters")
        else:
            st, out = self.ctl("counters")
            out = out if st == 0 else None
        doc = harness.load_json(out) if out is not None else None
        if required and out is not None and doc is None:
            self.fail(f"{what}: not JSON: {out[:300]}")
        return {d["device"]: d["values"] for d in doc["devices"]} if doc else None

    def counter_checks(self, counters, device, *exprs):
        """Each EXPR is (key, op, n) with op one of == != < <= > >=."""
        ops = {"==": int.__eq__, "!=": int.__ne__, "<": int.__lt__, "<=": int.__le__, ">": int.__gt__,
               ">=": int.__ge__}
        values = (counters or {}).get(device, {})
        for key, op, n in exprs:
            v = values.get(key)
            if not isinstance(v, int) or not ops[op](v, n):
                self.fail(f"counters: {device} {key} is {'missing' if v is None else v}, expected {op} {n}")

    # -- the virtio block guest (make-blk-guest.sh)
    def blk_prepare(self):
        """Skips without the blk guest; else a fresh image directory with a
        sparse copy of its root image (NAME-root.img)."""
        self.require_vmm()
        blk = self.suite.blk_guest()
        if not blk:
            pytest.skip("the virtio block guest was not built (needs gcc, libc6-dev, e2fsprogs; see the "
                        "runner's warnings)")
        self.blk_root, self.blk_initrd, self.blkbench = blk
        shutil.rmtree(self.img, ignore_errors=True)
        self.img.mkdir()
        self.root_img = self.img / f"{self.name}-root.img"
        subprocess.run(["cp", "--sparse=always", str(self.blk_root), str(self.root_img)], check=True)

    def blk_args(self, cpus, extra, *args, root_opts="", memory="512M"):
        return ["--kernel", self.suite.kernel, "--initramfs", self.blk_initrd,
                "--cmdline", f"console=ttyS0 panic=-1 vmmtest.cpus={cpus} {extra}", "--cpus", str(cpus),
                "--memory", memory, "--serial", f"file={self.path('console')}",
                "--disk", f"path={self.root_img}{root_opts}", *args]

    def blk_boot(self, cpus, extra, *args, root_opts="", timeout=None):
        """Boots the blk guest (root image as the first --disk, serial
        console to NAME.console) to its end: the exit status or None."""
        self.blk_timeout = timeout or self.suite.case_timeout
        return self.run(*self.blk_args(cpus, extra, *args, root_opts=root_opts), stdout=self.path("stdout"),
                        timeout=self.blk_timeout)

    def blk_common(self, st, *checks, timeout=None):
        """What every blk case checks: exit status 0, both stages ran,
        'VMMTEST: done', no FAIL, a PASS line for each of CHECKS."""
        self.check_status(st, 0, timeout or getattr(self, "blk_timeout", None))
        self.check_console(checks, stage2=True, where="on the serial console")

    def blkbench_run(self, *args):
        """blkbench ARGS on the host: (ok, output); output also to NAME.host."""
        p = subprocess.run([str(self.blkbench), *map(str, args)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        out = p.stdout.decode(errors="replace").strip()
        with open(self.path("host"), "a") as f:
            f.write(out + "\n")
        return p.returncode == 0, out


# ----------------------------------------------------------------- hooks ----
def pytest_configure(config):
    global _config
    _config = config


def pytest_collection_modifyitems(config, items):
    only = os.environ.get("VMM_GUEST_ONLY")
    if not only:
        return
    rx = re.compile(only)
    keep, drop = [], []
    for it in items:
        (keep if rx.search(case_name(it.nodeid)) else drop).append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _logdir():
    d = os.environ.get("VMM_GUEST_LOGDIR")
    return Path(d) if d else None


_heartbeat = None


def pytest_sessionstart(session):
    global _heartbeat
    d = _logdir()
    if d and os.environ.get("TESTHOST_SCRATCH"):
        d.mkdir(parents=True, exist_ok=True)
        # A test host whose emulated CPU stops taking interrupts also stops
        # this. A process of its own, so that nothing a case does in this
        # interpreter can hold it up.
        _heartbeat = subprocess.Popen(["sh", "-c", f'while :; do date +%s >"{d}/.heartbeat"; sleep 5; done'],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pytest_sessionfinish(session):
    if _heartbeat:
        _heartbeat.kill()
    d = _logdir()
    if d and os.environ.get("TESTHOST_SCRATCH"):
        # The test host's kernel log: KVM's complaints, and the seccomp
        # audit lines (type=1326) of a VMM run with --seccomp log.
        with open(d / f"testhost-dmesg-{time.time_ns()}.txt", "wb") as f:
            subprocess.run(["dmesg"], stdout=f, stderr=subprocess.STDOUT)


def pytest_runtest_logstart(nodeid, location):
    d = _logdir()
    if d:
        (d / ".current").write_text(case_name(nodeid) + "\n")


_started = {}


def pytest_runtest_logreport(report):
    d = _logdir()
    name = case_name(report.nodeid)
    if report.when == "setup":
        _started[name] = time.monotonic()
    verdict = None
    if report.when == "call" or (report.when == "setup" and not report.passed):
        verdict = "PASS" if report.passed else "SKIP" if report.skipped else "FAIL"
    elif report.when == "teardown" and report.failed:
        verdict = "FAIL"
    if verdict and d:
        secs = time.monotonic() - _started.get(name, time.monotonic())
        with open(d / ".results", "a") as f:
            f.write(f"{verdict} {name} {secs:.1f}\n")


@pytest.fixture(scope="session")
def suite():
    s = Suite()
    yield s
    shutil.rmtree(s.live, ignore_errors=True)


@pytest.fixture
def case(suite, request):
    c = Case(suite, case_name(request.node.nodeid))
    yield c
    # keep the logs (the live copies are on a local tmpfs)
    for f in suite.live.glob(f"{c.name}.*"):
        if f.is_file():
            shutil.copy(f, suite.logdir / f.name)
    shutil.rmtree(c.img, ignore_errors=True)
