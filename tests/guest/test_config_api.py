"""JSON configs, the control API and the exit statuses: the test-mode guest
(make-guest-initramfs.sh --mode test) driven from the host through config
files, `vmm ctl`, raw API requests, signals and sockets."""
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import Log


def test_json_boot(suite, case):
    """A config file alone boots the guest (2 vCPUs, 512 MiB, serial to a
    file); --print-config of it is a fixed point, holds what the file says,
    and a command-line option overrides the file."""
    case.require_qemu_has("--config")
    case.require_vmm("--config")
    tok = harness.token()
    cfg = case.path("json")
    cmdline = f"console=ttyS0 panic=-1 vmmtest.cpus=2 vmmtest.mem_mb=512 vmmtest.end=poweroff vmmtest.token={tok}"
    cfg.write_text(json.dumps({
        "machine": {"cpus": 2, "memory": "512M"},
        "boot": {"kernel": str(suite.kernel), "initramfs": str(suite.initrd), "cmdline": cmdline},
        "serial": {"mode": "file", "path": str(case.path("console"))},
    }, indent=2))
    st = case.run("--config", cfg, stdout=case.path("stdout"))
    case.check_status(st, 0)
    case.check_console(["port", "cpus 2", "mem", f"token {tok}", "interrupts"], where="in the serial file")

    def print_config(*args):
        with open(case.path("stderr"), "ab") as err:
            p = subprocess.run([*suite.vmm, *map(str, args), "--print-config"], stdout=subprocess.PIPE, stderr=err,
                               stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout.decode(errors="replace")

    st, p1 = print_config("--config", cfg)
    if st != 0:
        case.fail(f"--config F --print-config: exit status {st}")
    else:
        printed = case.path("print1.json")
        printed.write_text(p1)
        st, p2 = print_config("--config", printed)
        if st != 0:
            case.fail(f"--print-config output does not load back with --config: exit status {st}")
        elif p1 != p2:
            case.fail("--print-config of the printed config differs")
        doc = harness.load_json(p1) or {}
        case.check(harness.json_find(doc, "cpus") == 2, "--print-config: machine.cpus is not 2")
        case.check(harness.json_find(doc, "kernel") == str(suite.kernel), f"--print-config: boot.kernel is not {suite.kernel}")
        case.check(str(harness.json_find(doc, "cmdline")).endswith(f"vmmtest.token={tok}"),
                   "--print-config: boot.cmdline is not ours")
        _, p3 = print_config("--config", cfg, "--cpus", 1)
        case.check(harness.json_find(harness.load_json(p3) or {}, "cpus") == 1,
                   "--config F --cpus 1 --print-config does not show cpus 1")
    case.finish()


EXAMPLES = sorted(p.stem for p in (harness.REPO_ROOT / "examples").glob("*.json"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example-{e}" for e in EXAMPLES])
def test_example(suite, case, example):
    """examples/NAME.json boots (the guest powers off, exit 0) with the
    kernel, initramfs, command line and serial (and the console, API socket
    and log file if the example has them) overridden on the command line, in
    a scratch dir that is the VMM's cwd; the disks are given again with
    --disk (which replaces the file's), same options, each a fresh 64 MiB
    sparse file; direct=on is dropped where the dir cannot do O_DIRECT
    (tmpfs in the test host)."""
    case.require_qemu_has("--config")
    case.require_vmm("--config")
    ex = harness.REPO_ROOT / "examples" / f"{example}.json"
    d = suite.live / f"ex-{example}"
    subprocess.run(["rm", "-rf", str(d)])
    d.mkdir()
    tok = harness.token()
    over = ["--kernel", str(suite.kernel), "--initramfs", str(suite.initrd), "--serial", f"file={d / 'serial.log'}"]
    p = subprocess.run([*suite.vmm, "--config", str(ex), *over, "--print-config"], cwd=d, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        case.path("stderr").write_bytes(p.stderr)
        pytest.fail(f"--print-config with overrides exited {p.returncode}: {p.stderr[:300].decode(errors='replace')}",
                    pytrace=False)
    eff = json.loads(p.stdout)
    machine = eff.get("machine", {})
    cpus, mem_mb = machine.get("cpus", 1), harness.mib_of(machine.get("memory", "512M"))
    console = (eff.get("console") or {}).get("mode", "off")
    api = (eff.get("api") or {}).get("socket", "")
    log = (eff.get("logging") or {}).get("file", "")
    over += ["--cmdline", f"console=ttyS0 panic=-1 vmmtest.cpus={cpus} vmmtest.mem_mb={mem_mb} vmmtest.end=poweroff "
             f"vmmtest.token={tok}"]
    if console != "off":
        over += ["--console", f"file={d / 'hvc.log'}"]
    if api:
        over += ["--api-socket", str(d / "api.sock")]
    if log and log.startswith("/"):
        over += ["--log-file", str(d / "vmm.log")]
    odirect = harness.direct_io_works(d)
    disks = []
    for n, disk in enumerate(eff.get("disks") or [], 1):
        opts = ""
        if disk.get("readonly"):
            opts += ",readonly=on"
        if disk.get("serial"):
            opts += ",serial=" + disk["serial"]
        if disk.get("num_queues", 1) != 1:
            opts += f",num_queues={disk['num_queues']}"
        if disk.get("direct") and odirect:
            opts += ",direct=on"
        if isinstance(disk.get("slot"), int):
            opts += f",slot={disk['slot']}"
        if disk.get("packed") is False:
            opts += ",packed=off"
        img = d / f"disk{n}-{Path(disk.get('path', '')).name}"
        with open(img, "ab") as f:
            f.truncate(64 << 20)
        over += ["--disk", f"path={img}{opts}"]
        disks.append(disk.get("path", ""))
    case.path("info").write_text(f"== {example}: cpus={cpus} mem={mem_mb}M console={console} api={api or 'none'} "
                                 f"disks={' '.join(disks) or 'none'}\n")
    st = case.run("--config", ex, *over, cwd=d, stdout=d / "stdout", console=d / "serial.log")
    if (d / "serial.log").exists():
        case.path("console").write_bytes((d / "serial.log").read_bytes())
    case.check_status(st, 0)
    for c in ("init started", f"PASS cpus {cpus}", "PASS mem", f"PASS token {tok}", "done"):
        case.check(case.console.has(rf"^VMMTEST: {c}( |$)"), f"no 'VMMTEST: {c}' on the serial console")
    case.check_no_fail()
    case.finish()


def api_start(suite, case, end, extra=""):
    case.require_qemu_has("--api-socket")
    case.require_vmm("--api-socket")
    case.ctl_sock = case.path("sock")
    case.ctl_sock.unlink(missing_ok=True)
    case.path("ctl").touch()
    return case.start("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 1, "--memory", "512M",
                      "--cmdline", case.cmdline(1, 512, end, extra), "--api-socket", case.ctl_sock)


def test_api(suite, case):
    """The control API against a guest that waits for the power button:
    a 0600 socket, ping/info, pause (the guest's once-a-second tick stops),
    a second pause refused, resume, counters, client- and server-side
    errors, structured errors for malformed raw requests, then the power
    button powers the guest off cleanly (exit 0) and the socket is removed."""
    vm = api_start(suite, case, "wait-power", "vmmtest.tick=1")
    sock = case.ctl_sock
    if not vm.wait_console(r"^VMMTEST: waiting for the power button", suite.case_timeout):
        case.fail("the guest never reached 'VMMTEST: waiting for the power button'")
        fails = case.console.fail_lines()
        if fails:
            case.fail("guest: " + ";".join(fails))
        vm.kill()
        case.finish()
        return
    if sock.is_socket():
        mode = f"{stat.S_IMODE(os.stat(sock).st_mode):o}"
        case.check(mode == "600", f"the API socket has mode {mode}, expected 600")
    else:
        case.fail(f"{sock} is not a socket")
    ticks = lambda: case.console.count(r"^VMMTEST: tick")  # noqa: E731
    case.ctl_ok("ping", "ping")
    out = case.ctl_ok("info", "info")
    if out is not None:
        doc = harness.load_json(out) or {}
        case.check(harness.json_find(doc, "state") == "running", f"info: state is not \"running\": {out}")
        case.check(harness.json_find(doc, "config") is not None, f"info: no \"config\" in {out}")
        case.check(harness.json_find(doc, "kernel") == str(suite.kernel), f"info: config.boot.kernel is not {suite.kernel}")

    def state():
        out = case.ctl_ok("info", "info")
        return harness.json_find(harness.load_json(out or "") or {}, "state"), out

    if case.ctl_ok("pause", "pause") is not None:
        s, out = state()
        case.check(s == "paused", f"info after pause: state is not \"paused\": {out}")
        time.sleep(1)
        n1 = ticks()
        time.sleep(4)
        n2 = ticks()
        case.check(n1 == n2, f"the guest's console kept advancing while paused (ticks {n1} -> {n2} in 4 s)")
        st, _ = case.ctl("pause")
        case.check(st == 1, f"a second pause: 'vmm ctl pause' exited {st}, expected 1 (error: already paused)")
        case.ctl_ok("resume", "resume")
        s, out = state()
        case.check(s == "running", f"info after resume: state is not \"running\": {out}")
        for _ in range(100):
            if ticks() > n2:
                break
            time.sleep(0.3)
        case.check(ticks() > n2, "no new tick on the console within 30 s of resume")
    out = case.ctl_ok("counters", "counters")
    if out is not None:
        case.check('"devices"' in out, f"counters: no \"devices\" in {out}")
    # errors: an unknown command (client side or server side), a bad socket path
    st, _ = case.ctl("no_such_command")
    case.check(st == 1, f"'vmm ctl no_such_command' exited {st}, expected 1")
    st, _ = case.ctl("ping", sock=suite.live / "no-such.sock")
    case.check(st == 2, f"'vmm ctl --socket <missing> ping' exited {st}, expected 2 (cannot connect)")
    # raw bad requests get structured errors and the VM keeps running
    with open(case.path("ctl"), "a") as log:
        for line in ("this is not json", '{"cmd": "no_such_command", "id": 7}', '{"cmd": 5}', "[1, 2]"):
            try:
                resp = harness.unix_request(sock, line)
            except OSError as e:
                resp = f"<{e}>"
            log.write(f"$ raw {line}\n{resp}\n")
            r = harness.load_json(resp)
            e = r.get("error") if isinstance(r, dict) else None
            if isinstance(r, dict) and r.get("ok") is False and isinstance(e, dict) and e.get("code") and "message" in e:
                log.write(f"(error code {e['code']})\n")
            else:
                case.fail(f"raw request '{line}' got no structured error: '{resp[:200]}'")
        try:
            resp = harness.unix_request(sock, '{"cmd": "ping", "id": "x1"}')
        except OSError as e:
            resp = f"<{e}>"
        log.write(f"$ raw ping\n{resp}\n")
    r = harness.load_json(resp)
    case.check(isinstance(r, dict) and r.get("id") == "x1" and r.get("ok") is True,
               f"raw ping with id x1: unexpected response '{resp}'")
    if vm.running():
        case.ctl_ok("ping after the bad requests", "ping")
        # the power button: the guest powers off cleanly -> exit 0
        case.ctl_ok("power_button", "power_button")
        st = vm.wait_exit(90)
        if st is None:
            case.fail("still running 90 s after power_button")
        case.check(st == 0, f"exit status {st} after power_button, expected 0")
        case.check(case.console.has(r"^VMMTEST: power button pressed"), "the guest saw no power button press")
        case.check(not sock.exists(), f"the API socket {sock} was left behind after exit")
    else:
        case.fail("the VMM exited during the API requests")
        vm.wait_exit(5)
    case.finish()


def test_stop(suite, case):
    """`vmm ctl stop` ends a running guest hard: exit status 6."""
    vm = api_start(suite, case, "hang")
    if not vm.wait_console(r"^VMMTEST: done", suite.case_timeout):
        case.fail(f"no 'VMMTEST: done' within {suite.case_timeout} s")
        vm.kill()
    else:
        case.ctl_ok("stop", "stop")
        st = vm.wait_exit(30)
        if st is None:
            case.fail("still running 30 s after 'ctl stop'")
        case.check(st == 6, f"exit status {'running' if st is None else st} after 'ctl stop', expected 6")
    case.finish()


def test_panic(suite, case):
    """pvpanic.ko + pvpanic-mmio.ko, then a sysrq crash with panic=0 (the
    kernel would wait forever): only pvpanic can end it, with exit status 3."""
    case.require_vmm("--timeout")
    vm = case.start("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 1, "--memory", "512M",
                    "--cmdline", "console=ttyS0 panic=0 vmmtest.cpus=1 vmmtest.mem_mb=512 vmmtest.end=panic")
    if not vm.wait_console(r"^VMMTEST: done", suite.case_timeout):
        case.fail(f"no 'VMMTEST: done' within {suite.case_timeout} s")
        vm.kill()
    else:
        st = vm.wait_exit(60)
        if st is None:
            case.fail("still running 60 s after the guest's panic (pvpanic event not seen?)")
        case.check(st == 3, f"exit status {'running' if st is None else st}, expected 3 (guest panic)")
        case.check(case.console.has(r"^VMMTEST: PASS pvpanic"),
                   "the guest has no pvpanic device: " + ";".join(case.console.fail_lines()))
        case.check(case.console.has("Kernel panic"), "no 'Kernel panic' on the console")
    case.finish()


def test_timeout(suite, case):
    """A guest that never ends, --timeout 20: exit status 5 after about 20 s
    from the VMM's start."""
    case.require_vmm("--timeout")
    vm = case.start("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 1, "--memory", "512M",
                    "--cmdline", case.cmdline(1, 512, "hang"), "--timeout", 20)
    st = vm.wait_exit(80)
    secs = vm.elapsed()
    if st is None:
        case.fail("still running 80 s after start with --timeout 20")
    case.check(st == 5, f"exit status {'running' if st is None else st}, expected 5 (timeout)")
    # 40 s leaves room for a loaded machine's process start-up
    case.check(19.5 <= secs <= 40, f"exited after {secs:.1f} s, expected about 20 s")
    case.finish()


def test_hugepages(suite, case):
    """--hugepages backs guest RAM with hugetlb pages. With none reserved the
    VMM refuses with a message naming nr_hugepages (exit 1); with enough
    reserved a 256 MiB guest boots and powers off (exit 0), and while it runs
    at least 128 of the host's 2 MiB huge pages are taken or reserved.
    Writes /proc/sys/vm/nr_hugepages (root; the test host's own kernel) and
    puts the old value back."""
    case.require_qemu_has("--hugepages")
    case.require_vmm("--hugepages")
    nr = Path("/proc/sys/vm/nr_hugepages")
    if not os.access(nr, os.W_OK):
        pytest.skip(f"cannot write {nr} (needs root)")
    old = nr.read_text().strip()
    try:
        nr.write_text("0\n")
        none = case.path("none")
        st = case.run("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 1, "--memory", "256M",
                      "--hugepages", stdout=none, stderr=none, timeout=60)
        case.check(st == 1, f"with no huge pages reserved: exit status {st}, expected 1")
        case.check("nr_hugepages" in Log(none).text(),
                   f"with no huge pages reserved: no hint about nr_hugepages in '{Log(none).text()[:200]}'")
        nr.write_text("160\n")
        got = int(nr.read_text())
        if got < 128:
            pytest.skip(f"only {got} huge pages could be reserved (fragmented memory), 128 needed")
        vm = case.start("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 1, "--memory", "256M",
                        "--hugepages", "--cmdline", "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.mem_mb=256 "
                        "vmmtest.end=poweroff")
        most = 0
        while vm.running() and vm.elapsed() < suite.case_timeout:
            # in use = total - free, plus reserved-but-not-yet-faulted
            m = {ln.split(":")[0]: ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()}
            used = int(m["HugePages_Total"]) - int(m["HugePages_Free"]) + int(m["HugePages_Rsvd"])
            most = max(most, used)
            time.sleep(0.5)
        st = vm.wait_exit(10)
        if st is None:
            case.fail(f"still running after {suite.case_timeout} s")
    finally:
        nr.write_text(old + "\n")
    case.check(st == 0, f"exit status {st}, expected 0")
    case.check(most >= 128, f"at most {most} huge pages were in use while the guest ran, expected >= 128")
    case.check(case.console.has(r"^VMMTEST: PASS mem"), "no 'VMMTEST: PASS mem' on the console")
    case.check(case.console.has(r"^VMMTEST: done"), "no 'VMMTEST: done' on the console")
    case.note(f"  hugepages: huge pages in use at most: {most}")
    case.finish()


def test_console_socket(suite, case):
    """--serial socket=PATH: a client that connects as soon as the socket
    exists reads the guest's console to the end of its checks."""
    case.require_vmm("socket=")
    sock = case.path("sock")
    sock.unlink(missing_ok=True)
    vm = case.start("--kernel", suite.kernel, "--initramfs", suite.initrd, "--cpus", 1, "--memory", "512M",
                    "--cmdline", case.cmdline(1, 512, "poweroff"), "--serial", f"socket={sock}",
                    stdout=case.path("stdout"))
    try:
        ok = harness.unix_read_until(sock, r"^VMMTEST: done", suite.case_timeout, 30, case.path("console"))
        case.check(ok, "the socket client saw no 'VMMTEST: done'")
    except OSError as e:
        case.fail(f"the socket client could not connect: {e}")
    case.check(case.console.has(r"^VMMTEST: init started"), "no 'VMMTEST: init started' through the socket")
    case.check(case.console.has(r"^VMMTEST: PASS cpus 1"), "no 'VMMTEST: PASS cpus 1' through the socket")
    st = vm.wait_exit(60)
    if st is None:
        case.fail("still running 60 s after the client read 'VMMTEST: done'")
    case.check(st == 0, f"exit status {st}, expected 0")
    case.finish()
