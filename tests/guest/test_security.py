"""What the VMM guarantees when things go wrong, with real guests: data the
guest flushed is in the image even when the VMM is killed with SIGKILL right
after (virtio-blk and virtio-scsi, through the page cache and with
direct=on); a host file system that fills up mid-run gives the guest I/O
errors while the VMM runs on; after set-up no thread holds a capability;
and the VMM runs as an ordinary user with access to /dev/kvm and a tap made
for it beforehand (docs/security.md)."""
import grp
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import tempfile
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
