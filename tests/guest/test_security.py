"""What the VMM guarantees when things go wrong, with real guests: data the
guest flushed is in the image even when the VMM is killed with SIGKILL right
after (virtio-blk and virtio-scsi, through the page cache and with
direct=on); a host file system that fills up mid-run gives the guest I/O
errors while the VMM runs on; after set-up no thread holds a capability;
and the VMM runs as an ordinary user with access to /dev/kvm and a tap made
for it beforehand (docs/security.md)."""
import grp
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import Log


def fresh_image(path, size):
    Path(path).unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def check_no_capabilities(case, pid):
    """Every thread of the running VMM PID has empty capability sets,
    bounding set included (the VMM runs as root here)."""
    caps = harness.thread_capabilities(pid)
    with open(case.path("host"), "a") as f:
        for t, c in sorted(caps.items()):
            f.write(f"{t}: " + " ".join(f"{k}={v:x}" for k, v in sorted(c.items())) + "\n")
    case.check(len(caps) >= 3, f"/proc/{pid}/task lists {len(caps)} threads, expected main, vCPU and I/O threads")
    bad = {t: {k: f"{v:x}" for k, v in c.items() if v} for t, c in caps.items() if any(c.values())}
    case.check(not bad, f"threads holding capabilities after set-up: {bad}")


def test_durable(suite, case):
    """The guest writes a pattern to four disks (virtio-blk and virtio-scsi,
    each once through the host page cache and once with direct=on) with
    O_DIRECT, fsyncs each (FLUSH / SYNCHRONIZE CACHE), says so and waits;
    the VMM is killed with SIGKILL at once, and each image must hold its
    pattern byte for byte (every other byte zero). While it waits, before
    the kill, every VMM thread must hold no capability. direct=on images
    live where O_DIRECT works (the 9p log export in the test host; tmpfs
    cannot)."""
    case.blk_prepare()
    ddir = next((d for d in (case.img, suite.logdir) if harness.direct_io_works(d)), None)
    if ddir is None:
        pytest.skip(f"neither {case.img} nor {suite.logdir} supports O_DIRECT, which direct=on needs")
    seed_w, count, size = random.randint(1, 1 << 30), 32, 16 << 20
    disks = [  # (guest name, image, option, extra)
        ("vdb", case.img / "blk.img", "--disk", ""),
        ("vdc", ddir / f"{case.name}-blk-direct.img", "--disk", ",direct=on"),
        ("lun0", case.img / "scsi.img", "--scsi-disk", ""),
        ("lun1", ddir / f"{case.name}-scsi-direct.img", "--scsi-disk", ",direct=on"),
    ]
    args = []
    for _, img, opt, extra in disks:
        fresh_image(img, size)
        args += [opt, f"path={img}{extra}"]
    names = ",".join(d[0] for d in disks)
    try:
        vm = case.start(*case.blk_args(1, f"vmmtest.blk=durable vmmtest.durable={names} vmmtest.seed_w={seed_w} "
                                          f"vmmtest.count={count} vmmtest.scsi_luns=2", *args),
                        stdout=case.path("stdout"))
        if not vm.wait_console(r"^VMMTEST: flushed", suite.case_timeout):
            vm.kill()
            case.fail(f"no 'VMMTEST: flushed' within {suite.case_timeout} s")
            case.finish()
        if not suite.qemu_mode:
            check_no_capabilities(case, vm.pid)
        vm.proc.send_signal(signal.SIGKILL)
        st = vm.wait_exit(30)
        case.check(st == 128 + signal.SIGKILL, f"exit status {st} after SIGKILL, expected {128 + signal.SIGKILL}")
        case.check_no_fail()
        for name, _, _, _ in disks:
            case.check(case.console.has(rf"^VMMTEST: PASS durable-{name} "), f"no 'VMMTEST: PASS durable-{name}'")
        for i, (name, img, _, extra) in enumerate(disks):
            ok, out = case.blkbench_run("pattern-verify", img, seed_w + i, count)
            case.check(ok, f"{name} ({img.name}{extra}): the flushed pattern is not in the image after SIGKILL: {out}")
    finally:
        for _, img, _, _ in disks:
            img.unlink(missing_ok=True)
    case.finish()


def test_enospc(suite, case):
    """vdb (virtio-blk) and SCSI LUN 0 are 64 MiB sparse images on a 12 MiB
    tmpfs: the guest's writes past that fail with an I/O error on both, the
    VMM logs the host error and counts it, and keeps running: the guest
    reads both disks afterwards and powers off (exit 0)."""
    case.blk_prepare()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the test host runs the suite as root)")
    small = case.img / "small"
    small.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "tmpfs", str(small)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed: {p.stdout.decode(errors='replace').strip()}")
    try:
        vdb, s0 = small / "vdb.img", small / "s0.img"
        fresh_image(vdb, 64 << 20)
        fresh_image(s0, 64 << 20)
        log = [] if suite.qemu_mode else ["--log-level", "info"]
        st = case.blk_boot(1, "vmmtest.blk=enospc vmmtest.fill_mib=32 vmmtest.scsi_luns=1", "--disk", f"path={vdb}",
                           "--scsi-disk", f"path={s0}", *log)
    finally:
        subprocess.run(["umount", "-l", str(small)])
    case.blk_common(st, "enospc-blk", "enospc-scsi", "enospc-read-vdb")
    case.check(case.console.has(r"^VMMTEST: PASS enospc-read-sd[a-z]+"), "no 'VMMTEST: PASS enospc-read-sdX'")
    if not suite.qemu_mode:
        err = Log(case.path("stderr"))
        case.check(err.has(r"virtio-blk1: q[0-9]+: request type 1 failed: No space left on device"),
                   "no 'virtio-blk1: ... request type 1 failed: No space left on device' line on stderr")
        case.check(err.has(r"virtio-scsi0: q[0-9]+: host I/O on .*s0.img failed: No space left on device"),
                   "no 'virtio-scsi0: ... host I/O on s0.img failed: No space left on device' line on stderr")
        blk = err.find(r"virtio-blk1: [0-9]+ requests .* ([0-9]+) errors")
        case.check(blk is not None and int(blk) > 0, f"virtio-blk1's error count at exit is {blk}, expected > 0")
        scsi = err.find(r"virtio-scsi0: [0-9]+ requests, .* ([0-9]+) check conditions")
        case.check(scsi is not None and int(scsi) > 0, f"virtio-scsi0's check conditions at exit: {scsi}, expected > 0")
    case.finish()


NOBODY = 65534


def test_nonroot(suite, case):
    """The VMM as an ordinary user (uid/gid 65534, started through setpriv
    as in docs/security.md): /dev/kvm reachable through its group, a tap
    made beforehand for that user (`ip tuntap add ... user 65534`), the root
    image and outputs in a directory the user owns. The blk guest boots from
    its disk, pings the host over the tap and powers off (exit 0); the VMM
    ran as that uid and its API socket is the user's, mode 0600."""
    case.blk_prepare()
    if suite.qemu_mode:
        pytest.skip("runs the VMM itself as another user")
    if os.geteuid() != 0:
        pytest.skip("making the tap and switching users needs root (the test host runs the suite as root)")
    for tool in ("setpriv", "ip"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    if not os.environ.get("TESTHOST"):
        # /dev/kvm's group and mode change, and a tap is made: fine in the
        # throwaway test host, not on a developer's machine.
        pytest.skip("changes /dev/kvm's group and mode and makes a tap: runs only inside the test host")
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        kvm_gid = 36
    os.chown("/dev/kvm", 0, kvm_gid)
    os.chmod("/dev/kvm", 0o660)
    os.chmod("/dev/net/tun", 0o666)  # as udev leaves it on a normal system
    # What the user only reads must be readable by others along its path.
    for f in (suite.build / "vmm", suite.kernel, case.blk_initrd):
        for p in [Path(f), *Path(f).parents]:
            mode = p.stat().st_mode
            if not mode & (stat.S_IXOTH if p.is_dir() else stat.S_IROTH):
                pytest.skip(f"{p} is not readable by other users (mode {stat.filemode(mode)})")
    tap = f"vmmnr{os.getpid() % 10000}"
    home = Path(tempfile.mkdtemp(prefix="vmm-nonroot."))
    root_img = home / "root.img"
    shutil.move(str(case.root_img), root_img)
    for p in (home, root_img):
        os.chown(p, NOBODY, NOBODY)
    made = subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap", "user", str(NOBODY), "vnet_hdr"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if made.returncode != 0:
            pytest.skip(f"ip tuntap add failed: {made.stdout.decode(errors='replace').strip()}")
        case.check(ip("addr", "add", "169.254.77.1/24", "dev", tap) and ip("link", "set", tap, "up"),
                   f"could not configure tap {tap}")
        sock, console = home / "api.sock", home / "console"
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={kvm_gid}", "--inh-caps=-all", "--",
               suite.vmm[0], "--kernel", suite.kernel, "--initramfs", case.blk_initrd, "--cpus", "1", "--memory",
               "512M", "--cmdline", "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.blk=net-ping", "--serial",
               f"file={console}", "--disk", f"path={root_img}", "--net", f"tap={tap}", "--api-socket", sock]
        vm = harness.Vm(cmd, console, case.path("stdout"), case.path("stderr"), cwd=home)
        if vm.wait_console(r"^VMMTEST: stage2 started", suite.case_timeout):
            status = Path(f"/proc/{vm.pid}/status").read_text()
            uid = re.search(r"^Uid:\s*(.*)$", status, re.M).group(1).split()
            case.check(uid == [str(NOBODY)] * 4, f"the VMM's uids are {uid}, expected {NOBODY} (real, effective, "
                       "saved, file system)")
            if sock.exists():
                s = sock.stat()
                case.check(s.st_uid == NOBODY and stat.S_IMODE(s.st_mode) == 0o600,
                           f"the API socket is uid {s.st_uid}, mode {stat.S_IMODE(s.st_mode):o}; expected {NOBODY}, 600")
            else:
                case.fail(f"no API socket {sock}")
        st = vm.wait_exit(suite.case_timeout)
        if console.exists():
            shutil.copy(console, case.path("console"))
        case.blk_common(st, "rootfs", "rootfs-rw", "net-device", "net-ping")
    finally:
        ip("tuntap", "del", "dev", tap, "mode", "tap")
        shutil.rmtree(home, ignore_errors=True)
    case.finish()


def ip(*args):
    return subprocess.run(["ip", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def api_stress(case, sock, seconds):
    """Loads the API socket for SECONDS: 300 idle connections (more than
    the server's 256), half lines, 1 MiB lines, malformed and nested JSON,
    and slow clients sending a byte at a time, while `vmm ctl ping` must
    keep answering. Returns (pings answered, pings tried, slowest ping s)."""
    conns, stop = [], threading.Event()

    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(str(sock))
        conns.append(s)
        return s

    def slow(s):
        try:
            for b in b'{"cmd": "ping", "id": "slow"}\n':
                if stop.wait(0.3):
                    return
                s.send(bytes([b]))
        except OSError:
            pass

    threads = []
    for i in range(300):
        try:
            s = connect()
            kind = i % 6
            if kind == 1:
                s.send(b'{"cmd": "pi')  # half a line, never finished
            elif kind == 2:
                s.send(b"x" * (1 << 20) + b"\n")  # oversize
            elif kind == 3:
                s.send(b'{"cmd": ' + b"[" * 10000 + b"\n")  # malformed, deeply nested
            elif kind == 4:
                s.send(b'{"cmd":"ping","cmd":"stop"}\n\x00\xff\n')  # duplicate keys, binary junk
            elif kind == 5:
                t = threading.Thread(target=slow, args=(s,), daemon=True)
                t.start()
                threads.append(t)
        except OSError:
            pass  # the server may close the oversize ones before we finish sending
    ok = tried = 0
    slowest = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        st, _ = case.ctl("ping")
        slowest = max(slowest, time.monotonic() - t0)
        tried += 1
        ok += st == 0
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(5)
    for s in conns:
        s.close()
    return ok, tried, slowest, len(conns)


# Rounds of garbage per device (VMM_HOSTILE_ROUNDS for a longer attack).
HOSTILE_ROUNDS = int(os.environ.get("VMM_HOSTILE_ROUNDS", "20"))


def test_hostile(suite, case):
    """A guest that attacks the VMM (hostile.c): writes to every I/O port
    but the few that end the guest by design, then for every virtio device
    but the root disk (blk, scsi, net, console, balloon, rng) rounds of
    garbage: random status and feature sequences, rings at wild, misaligned
    and out-of-RAM addresses and full of garbage, bad queue sizes and
    vectors, notifies, device-config and MSI-X table writes, BARs moved over
    RAM, the APIC and each other. The VMM must stay up, the read-only images
    must be unchanged byte for byte, and once the guest's drivers have the
    devices back they work (the guest reads both read-only disks' patterns
    and the rng). Then the host loads the control API (300 connections,
    oversize and malformed lines, slow clients): `vmm ctl ping` keeps
    answering, the guest keeps ticking, and the VMM's descriptor count
    returns to where it was. `vmm ctl stop` ends it (exit 6)."""
    case.blk_prepare()
    if suite.qemu_mode:
        pytest.skip("attacks the VMM under test, not QEMU")
    seed_w, seed_r, count = random.randint(1, 1 << 30), random.randint(1, 1 << 30), 64
    ro_blk, ro_scsi = case.img / "ro-blk.img", case.img / "ro-scsi.img"
    for img, sd in ((ro_blk, seed_r), (ro_scsi, seed_r + 1)):
        fresh_image(img, 16 << 20)
        ok, out = case.blkbench_run("pattern-write", img, sd, count)
        if not ok:
            pytest.fail(f"host-side pattern-write to {img.name} failed: {out}", pytrace=False)
    sums = {img: hashlib.sha256(img.read_bytes()).hexdigest() for img in (ro_blk, ro_scsi)}
    net = []
    if os.geteuid() == 0 and os.environ.get("TESTHOST") and os.access("/dev/net/tun", os.W_OK):
        net = ["--net", "tap=vmmhostile0"]  # the VMM creates it; inside the test host only
    case.ctl_sock = case.path("sock")
    case.ctl_sock.unlink(missing_ok=True)
    case.path("ctl").touch()
    hvc = case.path("hvc")
    vm = case.start(*case.blk_args(1, f"vmmtest.blk=hostile vmmtest.seed_w={seed_w} vmmtest.seed_r={seed_r} "
                                      f"vmmtest.count={count} vmmtest.rounds={HOSTILE_ROUNDS} vmmtest.scsi_luns=1 "
                                      "vmmtest.hold_s=300"),
                    "--disk", f"path={ro_blk},readonly=on,serial=vmmtest-ro",
                    "--scsi-disk", f"path={ro_scsi},readonly=on", *net, "--console", f"file={hvc}",
                    "--balloon", "size=0", "--rng", "--api-socket", case.ctl_sock, stdout=case.path("stdout"))
    if not vm.wait_console(r"^VMMTEST: (hostile checked|done)", suite.case_timeout):
        case.fail(f"no 'VMMTEST: hostile checked' within {suite.case_timeout} s "
                  f"({'still running' if vm.running() else f'the VMM exited with status {vm.wait_exit(1)}'})")
        vm.kill()
        case.finish()
    ticks = lambda: case.console.count(r"^VMMTEST: tick")  # noqa: E731
    if not vm.running():
        case.fail(f"the VMM is gone after the attack (exit status {vm.wait_exit(1)})")
    else:
        time.sleep(1)
        before = fd_count(vm.pid)
        t0 = ticks()
        ok, tried, slowest, n = api_stress(case, case.ctl_sock, 12)
        t1 = ticks()
        case.note(f"  {case.name}: API under load ({n} connections): {ok}/{tried} pings answered, slowest "
                  f"{slowest:.1f} s; guest ticks {t0} -> {t1}")
        case.check(ok == tried and tried > 0, f"`vmm ctl ping` answered {ok} of {tried} times while the API was "
                   "loaded")
        case.check(t1 >= t0 + 5, f"the guest ticked {t1 - t0} times in 12 s of API load: the VM was held up")
        after = -1
        for _ in range(40):
            after = fd_count(vm.pid)
            if after <= before:
                break
            time.sleep(0.25)
        with open(case.path("host"), "a") as f:
            f.write(f"VMM descriptors: {before} before the API load, {after} after\n")
        case.check(after == before, f"the VMM had {before} descriptors before the API load and {after} after it")
        case.ctl_ok("stop", "stop")
        st = vm.wait_exit(60)
        case.check(st == 6, f"exit status {st} after `vmm ctl stop`, expected 6")
    case.check_no_fail()  # the guest is stopped during its ticks: no "VMMTEST: done"
    for c in ("hostile-ports", "hostile-pci", "hostile-after-blk", "hostile-after-scsi", "hostile-after-rng",
              "rootfs-rw"):
        case.check(case.console.has(rf"^VMMTEST: PASS {c}( |$)"), f"no 'VMMTEST: PASS {c}' on the serial console")
    for img, digest in sums.items():
        case.check(hashlib.sha256(img.read_bytes()).hexdigest() == digest,
                   f"the read-only image {img.name} changed during the attack")
    err = Log(case.path("stderr"))
    case.check(not err.has(r"(?i)assert|segmentation|sanitizer|terminate called"),
               "the VMM's stderr shows an assertion, crash or sanitizer report")
    case.finish()
