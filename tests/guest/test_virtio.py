"""The virtio devices with a real Linux driver: the virtio block guest
(make-blk-guest.sh) boots a module-carrying initramfs that switch_roots into
a private copy of an ext4 root image on /dev/vda, where /sbin/vmmtest-blk
runs the checks vmmtest.blk= names and prints VMMTEST lines. The host side
checks images byte for byte (blkbench), the control API's counters, the
VMM's RSS and its sockets. Disk images live in the suite's live directory (a
tmpfs in the test host, which also supports hole punching)."""
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import Background, Log


def seed():
    return random.randint(1, 1 << 30)


def truncate(path, size):
    with open(path, "ab") as f:
        f.truncate(size)


def blocks(path):
    """Allocated 512-byte blocks (stat's %b)."""
    return os.stat(path).st_blocks


def test_blk_root(suite, case):
    """The root file system on virtio-blk, the guest's reports also over
    virtio-console (hvc0), and the guest's write in the image."""
    case.blk_prepare()
    tok = harness.token()
    hvc = Log(case.path("hvc"))
    hvc.path.touch()
    st = case.blk_boot(1, f"console=hvc0 vmmtest.blk=root vmmtest.token={tok}", "--console", f"file={hvc.path}")
    case.blk_common(st, "rootfs", "rootfs-content", "rootfs-rw", "irq")
    for c in ("VMMTEST: PASS rootfs ", "VMMTEST: PASS rootfs-rw", "VMMTEST: PASS irq", "VMMTEST: done"):
        case.check(c in hvc.text(), f"no '{c}' in the --console file (hvc0)")
    # debugfs reads ext4 without mounting
    if shutil.which("debugfs"):
        got = subprocess.run(["debugfs", "-R", "cat /var/rw-test", str(case.root_img)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout.decode(errors="replace").strip()
        case.check(got == f"written {tok}", f"/var/rw-test in the root image holds '{got}', not 'written {tok}'")
    case.finish()


@pytest.mark.parametrize("ring", ["packed", "split"], ids=["blk-integrity", "blk-split"])
def test_blk_integrity(suite, case, ring):
    """The guest writes a pattern to vdb and reads ours from a read-only vdc
    (writes to it refused); both checked byte for byte here. blk-split: the
    same with packed=off on every disk, so the driver uses the split ring,
    which Linux otherwise never picks here; the VMM's "driver ready" lines
    name the ring layout."""
    case.blk_prepare()
    opt = ",packed=off" if ring == "split" else ""
    seed_w, seed_r, count = seed(), seed(), 128
    vdb, vdc = case.img / "vdb.img", case.img / "vdc.img"
    truncate(vdb, 64 << 20)
    truncate(vdc, 64 << 20)
    ok, out = case.blkbench_run("pattern-write", vdc, seed_r, count)
    if not ok:
        pytest.fail(f"host-side pattern-write to vdc.img failed: {out}", pytrace=False)
    log = [] if suite.qemu_mode else ["--log-level", "info"]
    st = case.blk_boot(1, f"vmmtest.blk=integrity vmmtest.seed_w={seed_w} vmmtest.seed_r={seed_r} vmmtest.count={count}",
                       "--disk", f"path={vdb},serial=vmmtest-rw{opt}",
                       "--disk", f"path={vdc},readonly=on,serial=vmmtest-ro{opt}", *log, root_opts=opt)
    case.blk_common(st, "pattern-write", "vdc-ro", "pattern-verify", "vdc-write-refused")
    if not suite.qemu_mode:
        n = Log(case.path("stderr")).count(rf"virtio-blk[0-9]+: driver ready: .* {ring} ring")
        case.check(n >= 3, f"stderr has {n} 'virtio-blkN: driver ready: ... {ring} ring' lines, expected 3 (vda, vdb, vdc)")
    ok, out = case.blkbench_run("pattern-verify", vdb, seed_w, count)
    case.check(ok, f"host check of vdb.img (guest-written pattern): {out}")
    ok, out = case.blkbench_run("pattern-verify", vdc, seed_r, count)
    case.check(ok, f"the read-only vdc.img changed: {out}")
    case.finish()


def qemu_img(case, *args):
    """Runs qemu-img; fails the case with its output if it fails."""
    p = subprocess.run(["qemu-img", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        pytest.fail(f"qemu-img {' '.join(map(str, args))}: {p.stdout.decode(errors='replace')}", pytrace=False)
    return p.stdout.decode(errors="replace")


def test_blk_images(suite, case):
    """qcow2 and throwaway overlays with Debian's qemu-img on the host side.
    First boot: the guest reads our pattern through a qcow2 overlay (-b a raw
    base) and writes its own, reads a zlib- and a zstd-compressed qcow2, and
    writes and reads back a snapshot=on disk. Afterwards qemu-img check finds
    the overlay clean, qemu-img compare finds exactly the guest's writes, and
    both bases are unchanged. Second boot: the guest writes and flushes a fresh qcow2
    and a snapshot=on disk, and the VMM is killed with SIGKILL: the qcow2
    holds the flushed pattern and passes qemu-img check, the snapshot's base
    is still zero, and no overlay file is left in TMPDIR."""
    case.blk_prepare()
    case.require_qemu_has("snapshot=on")
    if not shutil.which("qemu-img"):
        pytest.skip("qemu-img is missing (Debian package qemu-utils, tests/install-deps.sh)")
    img, size = case.img, 16 << 20
    seed_w, seed_r, count = seed(), seed(), 64
    base, zero = img / "base.raw", img / "zero.raw"
    truncate(base, size)
    truncate(zero, size)
    ok, out = case.blkbench_run("pattern-write", base, seed_r, count)
    if not ok:
        pytest.fail(f"host-side pattern-write to base.raw failed: {out}", pytrace=False)
    qemu_img(case, "create", "-q", "-f", "qcow2", "-b", base.name, "-F", "raw", img / "ov.qcow2")
    qemu_img(case, "convert", "-c", "-O", "qcow2", base, img / "comp.qcow2")
    qemu_img(case, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", base, img / "zstd.qcow2")
    # What the overlay must read as afterwards: the base plus the guest's slots.
    expect = img / "expect.raw"
    shutil.copy(base, expect)
    ok, out = case.blkbench_run("pattern-write", expect, seed_w, count)
    if not ok:
        pytest.fail(f"host-side pattern-write to expect.raw failed: {out}", pytrace=False)
    tmp = img / "tmp"
    tmp.mkdir(exist_ok=True)
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp)  # where snapshot=on puts its (unnamed) overlays
    try:
        st = case.blk_boot(1, f"vmmtest.blk=images vmmtest.seed_w={seed_w} vmmtest.seed_r={seed_r} "
                              f"vmmtest.count={count}",
                           "--disk", f"path={img / 'ov.qcow2'}", "--disk", f"path={img / 'comp.qcow2'},readonly=on",
                           "--disk", f"path={zero},snapshot=on", "--disk", f"path={img / 'zstd.qcow2'},readonly=on")
        case.blk_common(st, "img-overlay-read", "img-overlay-write", "img-compressed-read", "img-zstd-read",
                        "img-snapshot")
        out = qemu_img(case, "check", img / "ov.qcow2")
        case.check("No errors were found" in out and "leaked" not in out, f"qemu-img check ov.qcow2: {out}")
        out = qemu_img(case, "compare", "-f", "qcow2", "-F", "raw", img / "ov.qcow2", expect)
        case.check("Images are identical" in out, f"qemu-img compare ov.qcow2 expect.raw: {out}")
        ok, out = case.blkbench_run("pattern-verify", base, seed_r, count)
        case.check(ok, f"the overlay's base changed: {out}")
        ok, out = case.blkbench_run("pattern-verify", zero, seed_w, 0)
        case.check(ok, f"the snapshot=on image changed: {out}")
        case.check(not any(tmp.iterdir()), f"files left in TMPDIR: {list(tmp.iterdir())}")

        # SIGKILL after a flush: the "durable" guest mode on vdb and vdc.
        fresh = img / "fresh.qcow2"
        qemu_img(case, "create", "-q", "-f", "qcow2", fresh, str(size))
        vm = case.start(*case.blk_args(1, f"vmmtest.blk=durable vmmtest.durable=vdb,vdc vmmtest.seed_w={seed_w} "
                                          f"vmmtest.count={count}",
                                       "--disk", f"path={fresh}", "--disk", f"path={zero},snapshot=on"),
                        stdout=case.path("stdout"))
        if not vm.wait_console(r"^VMMTEST: flushed", suite.case_timeout):
            vm.kill()
            case.fail(f"no 'VMMTEST: flushed' within {suite.case_timeout} s")
            case.finish()
        vm.proc.send_signal(signal.SIGKILL)
        vm.wait_exit(30)
        for name in ("vdb", "vdc"):
            case.check(case.console.has(rf"^VMMTEST: PASS durable-{name} "), f"no 'VMMTEST: PASS durable-{name}'")
        out = qemu_img(case, "check", fresh)
        case.check("No errors were found" in out, f"qemu-img check after SIGKILL: {out}")
        qemu_img(case, "convert", "-O", "raw", fresh, img / "fresh.raw")
        ok, out = case.blkbench_run("pattern-verify", img / "fresh.raw", seed_w, count)
        case.check(ok, f"the flushed pattern is not in the qcow2 image after SIGKILL: {out}")
        ok, out = case.blkbench_run("pattern-verify", zero, seed_w, 0)
        case.check(ok, f"the snapshot=on image changed (SIGKILL): {out}")
        case.check(not any(tmp.iterdir()), f"files left in TMPDIR after SIGKILL: {list(tmp.iterdir())}")
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
    case.finish()


def test_blk_discard(suite, case):
    """blkdiscard in the guest punches holes in the image: at least half of
    the 16 MiB discarded range is freed."""
    case.blk_prepare()
    mib = 16
    vdb = case.img / "vdb.img"
    truncate(vdb, 64 << 20)
    ok, out = case.blkbench_run("fill", vdb, 32)
    if not ok:
        pytest.fail(f"host-side fill of vdb.img failed: {out}", pytrace=False)
    before = blocks(vdb)
    st = case.blk_boot(1, f"vmmtest.blk=discard vmmtest.discard_mib={mib}", "--disk", f"path={vdb}")
    case.blk_common(st, "discard-advertised", "blkdiscard")
    after = blocks(vdb)
    with open(case.path("host"), "a") as f:
        f.write(f"allocated 512-byte blocks: before {before}, after {after} (discarded {mib} MiB = {mib * 2048})\n")
    case.check(before - after >= mib * 1024, f"vdb.img allocation went from {before} to {after} blocks; expected a "
               f"drop of >= {mib * 1024} after discarding {mib} MiB")
    case.finish()


def test_blk_mq(suite, case):
    """4 vCPUs, 4 queues on both disks: the guest sees them and does I/O."""
    case.blk_prepare()
    vdb = case.img / "vdb.img"
    truncate(vdb, 64 << 20)
    st = case.blk_boot(4, "vmmtest.blk=mq vmmtest.queues=4", "--disk", f"path={vdb},num_queues=4",
                       root_opts=",num_queues=4")
    case.blk_common(st, "mq-vda", "mq-vdb", "mq-io", "irq")
    case.finish()


def test_blk_intx(suite, case):
    """pci=nomsi: the disk works on legacy INTx interrupts."""
    case.blk_prepare()
    tok = harness.token()
    st = case.blk_boot(1, f"pci=nomsi vmmtest.blk=intx vmmtest.irq=intx vmmtest.token={tok}")
    case.blk_common(st, "rootfs", "rootfs-rw", "irq", "read-vda")
    case.finish()


def counters_check(case):
    """The control API's counters of a running blk + console guest show
    traffic on the right queues: virtio-blk0's request queue and
    virtio-console0's transmit queue (1) carried chains, all returned, with
    interrupts; nothing malformed."""
    counters = case.counters()
    if counters is None:
        return
    for dev, key in (("virtio-blk0", "q0.chains"), ("virtio-blk0", "q0.used"), ("virtio-blk0", "q0.interrupts"),
                     ("virtio-blk0", "q0.notifications"), ("virtio-console0", "q1.chains"),
                     ("virtio-console0", "q1.used")):
        v = counters.get(dev, {}).get(key, "missing")
        case.check(isinstance(v, int) and v > 0, f"counters: {dev}:{key} is {v}, expected > 0")
    for dev, values in counters.items():
        for key, v in values.items():
            if re.fullmatch(r"q[0-9]+\.errors", key) and isinstance(v, int) and v > 0:
                case.fail(f"counters: a queue reports errors: {dev} {key}={v}")


def test_console(suite, case):
    """--console tty with stdin from a FIFO: the guest's line on hvc0
    reaches our stdout, and a line we send after it reaches the guest."""
    case.blk_prepare()
    tok = harness.token()
    text = f"hello-{harness.token()}"
    fifo = suite.live / "fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    hvc = Log(case.path("hvc"))
    api = [] if suite.qemu_mode else ["--api-socket", str(case.path("sock"))]
    case.ctl_sock = case.path("sock")
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY)  # held until the VMM exits
    os.set_blocking(rfd, True)
    try:
        vm = case.start("--kernel", suite.kernel, "--initramfs", case.blk_initrd, "--cmdline",
                        f"console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.blk=console vmmtest.token={tok} "
                        f"vmmtest.hvc_in={text}", "--cpus", 1, "--memory", "512M",
                        "--serial", f"file={case.path('console')}", "--disk", f"path={case.root_img}",
                        "--console", "tty", *api, stdin=rfd, stdout=hvc.path)
        os.close(rfd)
        want = f"VMMTEST: hvc0 {tok}"
        end = time.monotonic() + suite.case_timeout
        while want not in hvc.text() and vm.running() and time.monotonic() < end:
            time.sleep(0.2)
        if want in hvc.text():
            if not suite.qemu_mode:
                counters_check(case)
            time.sleep(1)  # the guest opens hvc0 for reading right after; input before that is buffered anyway
            os.write(wfd, (text + "\n").encode())
        else:
            case.fail(f"'{want}' never arrived on the VMM's stdout (virtio-console output)")
        st = vm.wait_exit(max(1, end - time.monotonic()))
    finally:
        os.close(wfd)
        fifo.unlink(missing_ok=True)
    case.blk_common(st, "hvc0-present", "hvc0-input")
    case.finish()


def test_rng(suite, case):
    """--rng: the guest's hw_random uses virtio_rng.N and /dev/hwrng gives
    random bytes."""
    case.blk_prepare()
    case.require_vmm("--rng")
    st = case.blk_boot(1, "vmmtest.blk=rng", "--rng")
    case.blk_common(st, "rng-current", "rng-read", "rng-random")
    case.finish()


def balloon_start(suite, case, extra, spec):
    """The blk guest (256 MiB) in the background with a control socket and
    --balloon SPEC."""
    case.blk_prepare()
    case.require_qemu_has("--balloon")
    case.require_vmm("--balloon")
    case.ctl_sock = case.path("sock")
    case.ctl_sock.unlink(missing_ok=True)
    case.path("ctl").touch()
    return case.start("--kernel", suite.kernel, "--initramfs", case.blk_initrd, "--cpus", 1, "--memory", "256M",
                      "--cmdline", f"console=ttyS0 panic=-1 vmmtest.cpus=1 {extra}", "--disk", f"path={case.root_img}",
                      "--api-socket", case.ctl_sock, "--balloon", spec)


def as_int(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return 0


def test_balloon(suite, case):
    """The guest (256 MiB) touches most of its memory and frees it; the host
    inflates the balloon by 128 MiB through the API and the VMM's RSS must
    fall by at least 3/4 of that; then it deflates, and the guest's MemTotal
    comes back and the memory is usable again. The stats queue reports the
    guest's memory figures, refreshed after the inflation."""
    mib = 128
    vm = balloon_start(suite, case, f"vmmtest.blk=balloon vmmtest.balloon_mib={mib}", "size=0,stats_interval=1")
    touched, rss1, rss2 = None, 0, 0
    if vm.wait_console(r"^VMMTEST: balloon touched", suite.case_timeout - 60):
        touched = case.console.find(r"^VMMTEST: balloon touched (.*)$")
        rss1 = harness.rss_mib(vm.pid)
        if case.ctl_ok("inflate", "balloon", f"{mib}M") is not None and \
                vm.wait_console(r"^VMMTEST: balloon inflated", 150):
            time.sleep(1)
            rss2 = harness.rss_mib(vm.pid)
            drop = rss1 - rss2
            case.check(drop >= mib * 3 // 4, f"the VMM's RSS fell by {drop} MiB ({rss1} -> {rss2}) for a {mib} MiB "
                       f"balloon, expected >= {mib * 3 // 4} MiB")
            counters = case.counters()
            if counters is not None:
                case.counter_checks(counters, "virtio-balloon0", ("actual_bytes", "==", mib << 20),
                                    ("target_bytes", "==", mib << 20), ("inflated_pages", ">=", mib * 256),
                                    ("discarded_bytes", ">=", (mib * 3 // 4) << 20), ("bad_pfns", "==", 0),
                                    ("errors", "==", 0), ("stats_updates", ">=", 2), ("guest_free_memory", ">", 0),
                                    ("guest_total_memory", "<", (256 - mib + 16) << 20))
            case.ctl_ok("deflate", "balloon", "0")
        else:
            case.fail("the guest never said 'balloon inflated'")
    else:
        case.fail("the guest never said 'balloon touched'")
    st = vm.wait_exit(suite.case_timeout)
    case.blk_common(st, "balloon-bound", "balloon-inflate", "balloon-deflate", "balloon-reuse")
    case.note(f"  {case.name}: guest touched {touched or '?'} MiB; VMM RSS {rss1} MiB before, {rss2} MiB with the "
              f"{mib} MiB balloon")
    case.finish()


def test_balloon_report(suite, case):
    """Free page reporting: the guest fills most of its memory, then frees
    it; with no balloon target the VMM's RSS must fall by at least half of
    what was filled within 30 s, and reported_bytes must account for it."""
    vm = balloon_start(suite, case, "vmmtest.blk=balloon-report vmmtest.hold_s=120", "size=0,free_page_reporting=on")
    filled, rss1, rss = None, 0, 0
    if vm.wait_console(r"^VMMTEST: report filled", suite.case_timeout - 60):
        filled = case.console.find(r"^VMMTEST: report filled (.*)$")
        half = as_int(filled) // 2
        rss1 = harness.rss_mib(vm.pid)
        case.check(vm.wait_console(r"^VMMTEST: report freed", 30), "the guest never said 'report freed'")
        for _ in range(60):
            rss = harness.rss_mib(vm.pid)
            if rss1 - rss >= half:
                break
            time.sleep(0.5)
        case.check(rss1 - rss >= half, f"the VMM's RSS went from {rss1} to {rss} MiB when the guest freed {filled} MiB, "
                   f"expected a drop >= {half} MiB")
        counters = case.counters()
        if counters is not None:
            case.counter_checks(counters, "virtio-balloon0", ("reported_bytes", ">=", half << 20),
                                ("discarded_bytes", ">=", half << 20), ("actual_bytes", "==", 0), ("errors", "==", 0))
        case.ctl_ok("stop", "stop")
    else:
        case.fail("the guest never said 'report filled'")
    st = vm.wait_exit(60)
    case.check(st == 6, f"exit status {'running' if st is None else st}, expected 6 (stopped through the API)")
    case.check(case.console.has(r"^VMMTEST: PASS balloon-bound"), "no 'VMMTEST: PASS balloon-bound' on the console")
    case.check_no_fail()
    case.note(f"  {case.name}: guest filled {filled or '?'} MiB; VMM RSS {rss1} MiB then, {rss} MiB after it freed it "
              "(reporting)")
    case.finish()


def ip(*args):
    return subprocess.run(["ip", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


# (vCPUs, queue pairs, MiB each way, --net options): net has the default
# (packed) ring, net-mq the split one
NETS = {
    "net": (1, 1, int(os.environ.get("VMM_NET_MIB", "64")), ""),
    "net-mq": (2, 2, 8, "packed=off"),
}


@pytest.mark.parametrize("cpus,queues,mib,opts", NETS.values(), ids=NETS.keys())
def test_net(suite, case, cpus, queues, mib, opts):
    """virtio-net on a tap the VMM creates inside the test host (its own
    machine: no route anywhere else), link-local addresses; ping, then MIB
    MiB each way over TCP checked by SHA-256. With QUEUES > 1 the tap is
    multi-queue and the guest must see that many queues. VMM_NET_OPTS (from
    net-bench --also) is appended to the --net spec."""
    extra = os.environ.get("VMM_NET_OPTS", "")
    opts = ",".join(o for o in (opts, extra) if o)
    tap, nbytes = "vmmtap0", mib << 20
    case.blk_prepare()
    case.require_vmm("--net")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK) or os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root, /dev/net/tun and ip (it runs inside the test host; on a KVM host run the suite as root)")
    if not os.environ.get("VMM_GUEST_ROUND") and os.environ.get("VMM_NET_TEST_ON_HOST", "0") != "1":
        pytest.skip(f"not inside the test host: it would create tap {tap} on this machine "
                    "(set VMM_NET_TEST_ON_HOST=1 to allow)")
    case.ctl_sock = case.path("sock")
    case.ctl_sock.unlink(missing_ok=True)
    case.path("ctl").touch()
    qopt = f",num_queues={queues}" if queues > 1 else ""
    qarg = f" vmmtest.queues={queues}" if queues > 1 else ""
    api = [] if suite.qemu_mode else ["--api-socket", case.ctl_sock]

    def hostlog(line):
        if line:
            with open(case.path("host"), "a") as f:
                f.write(line + "\n")

    vm = case.start("--kernel", suite.kernel, "--initramfs", case.blk_initrd, "--cpus", cpus, "--memory", "512M",
                    "--cmdline", f"console=ttyS0 panic=-1 vmmtest.cpus={cpus} vmmtest.blk=net vmmtest.net_mib={mib}{qarg}",
                    "--disk", f"path={case.root_img}", *api, "--net", f"tap={tap}{qopt}{',' + opts if opts else ''}")
    for _ in range(100):
        if Path(f"/sys/class/net/{tap}").exists() or not vm.running():
            break
        time.sleep(0.2)
    tx = rx = None
    if Path(f"/sys/class/net/{tap}").exists() and ip("addr", "add", "169.254.77.1/24", "dev", tap) and \
            ip("link", "set", tap, "up"):
        # Nested TCG moves about 0.5 MB/s: 64 MiB takes minutes each way.
        sink = Background(harness.tcp_sink, "169.254.77.1", 5001, nbytes, 900, hostlog)

        def sink_result():
            sink.join()
            if sink.error or sink.result[1] != nbytes:
                case.fail(f"receiving {mib} MiB from the guest failed: {sink.error or sink.result}")
            return sink.result

        if vm.wait_console(r"^VMMTEST: net listening", 900):
            # The guest's send returned with its last bytes still in its
            # socket buffer: tx_bytes is complete once the host has them all.
            tx = sink_result()
            sink = None
            # Counters now: the guest powers off soon after it has received.
            counters = None if suite.qemu_mode else case.counters()
            if counters is not None:
                case.counter_checks(counters, "virtio-net0", ("rx_packets", ">", 0), ("tx_packets", ">", 0),
                                    ("errors", "==", 0), ("tx_bytes", ">=", nbytes))
                # The driver has programmed its receive filter (promiscuous
                # off): frames to a MAC that is not the guest's are dropped
                # by the VMM and counted.
                filtered = counters.get("virtio-net0", {}).get("rx_filtered")
                now, sent = None, False
                if isinstance(filtered, int):
                    try:
                        harness.eth_send(tap, "02:00:00:00:00:01", 5)
                        sent = True
                    except OSError as e:
                        hostlog(f"eth-send: {e}")
                if sent:
                    for _ in range(20):
                        now = (case.counters(required=False) or {}).get("virtio-net0", {}).get("rx_filtered")
                        if isinstance(now, int) and now >= filtered + 5:
                            break
                        time.sleep(0.5)
                    case.check(isinstance(now, int) and now >= filtered + 5,
                               f"receive filter: rx_filtered went from {filtered} to {now} after 5 frames to another MAC")
                else:
                    case.fail(f"could not check the receive filter (rx_filtered: {filtered})")
            try:
                rx = harness.tcp_source("169.254.77.2", 5002, nbytes, 60, hostlog)
                # The guest has read everything and is hashing it: the VMM
                # usually still answers (if it has powered off already, the
                # checksum below still decides the case).
                if not suite.qemu_mode:
                    counters = case.counters(required=False)
                    if counters:
                        case.counter_checks(counters, "virtio-net0", ("rx_bytes", ">=", nbytes), ("errors", "==", 0))
            except OSError as e:
                case.fail(f"sending {mib} MiB to the guest failed: {e}")
        else:
            case.fail("the guest never said 'net listening'")
        if sink is not None:
            tx = sink_result()
        case.check(vm.wait_console(r"^VMMTEST: net rx-sha", 900), "the guest never reported what it received")
    else:
        case.fail(f"tap {tap} did not appear, or could not be configured")
    st = vm.wait_exit(120)
    if tx and tx[1]:
        case.check(case.console.has(rf"^VMMTEST: net tx-sha {tx[0]}$"),
                   f"guest -> host: the host got {tx[1]} bytes with SHA-256 {tx[0]}, not what the guest sent")
    else:
        case.fail("guest -> host: nothing received")
    if rx:
        case.check(case.console.has(rf"^VMMTEST: net rx-sha {rx[0]} {rx[1]}$"),
                   f"host -> guest: the guest did not report SHA-256 {rx[0]} for {rx[1]} bytes")
    checks = ["net-device", "net-ping", "net-tx"] + (["net-mq"] if queues > 1 else [])
    case.blk_common(st, *checks, timeout=120)
    case.note(f"  {case.name}: {mib} MiB guest->host in {f'{tx[2]:.2f}' if tx else '?'} s, "
              f"host->guest in {f'{rx[2]:.2f}' if rx else '?'} s")
    case.finish()


def test_scsi(suite, case):
    """One virtio-scsi controller: disks on LUNs 0 and 1 (the guest writes
    patterns, checked here byte for byte), 2 (read-only, holds our pattern),
    5 (lun=5; the guest discards, the image must shrink) and a CD-ROM (auto:
    LUN 3) with an ISO 9660 file system built here."""
    case.blk_prepare()
    case.require_vmm("--scsi-disk")
    if not shutil.which("xorriso"):
        pytest.skip("xorriso is missing (tests/install-deps.sh)")
    log = [] if suite.qemu_mode else ["--log-level", "info"]
    img = case.img
    seed_w, seed_r, count, mib = seed(), seed(), 128, 16
    for n in ("s0", "s1", "s2", "s5"):
        truncate(img / f"{n}.img", 64 << 20)
    for args in (("pattern-write", img / "s2.img", seed_r, count), ("fill", img / "s5.img", 32)):
        ok, out = case.blkbench_run(*args)
        if not ok:
            pytest.fail(f"host-side image setup failed: {out}", pytrace=False)
    tok = harness.token()
    (img / "iso").mkdir()
    (img / "iso" / "vmmtest.txt").write_text(tok + "\n")
    p = subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "VMMTEST", "-o", str(img / "cd.iso"),
                        str(img / "iso")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        pytest.fail(f"xorriso failed: {p.stdout.decode(errors='replace')}", pytrace=False)
    before = blocks(img / "s5.img")
    st = case.blk_boot(1, f"vmmtest.blk=scsi vmmtest.scsi_luns=5 vmmtest.seed_w={seed_w} vmmtest.seed_r={seed_r} "
                          f"vmmtest.count={count} vmmtest.token={tok} vmmtest.discard_mib={mib}",
                       "--scsi-disk", f"path={img / 's0.img'}", "--scsi-disk", f"path={img / 's1.img'}",
                       "--scsi-disk", f"path={img / 's2.img'},readonly=on", "--scsi-disk", f"path={img / 's5.img'},lun=5",
                       "--cdrom", img / "cd.iso", *log)
    case.blk_common(st, "scsi-luns", "scsi-types", "scsi-write-0", "scsi-write-1", "scsi-ro", "scsi-verify",
                    "scsi-write-refused", "scsi-discard", "scsi-cdrom")
    ok, out = case.blkbench_run("pattern-verify", img / "s0.img", seed_w, count)
    case.check(ok, f"host check of s0.img (LUN 0, guest-written pattern): {out}")
    ok, out = case.blkbench_run("pattern-verify", img / "s1.img", seed_w + 1, count)
    case.check(ok, f"host check of s1.img (LUN 1, guest-written pattern): {out}")
    ok, out = case.blkbench_run("pattern-verify", img / "s2.img", seed_r, count)
    case.check(ok, f"the read-only s2.img changed: {out}")
    after = blocks(img / "s5.img")
    with open(case.path("host"), "a") as f:
        f.write(f"s5 allocated 512-byte blocks: before {before}, after {after}\n")
    case.check(before - after >= mib * 1024,
               f"s5.img allocation went from {before} to {after} blocks after discarding {mib} MiB")
    if not suite.qemu_mode:
        # unsupported commands Linux probes with, and the forced write, got CHECK CONDITION
        found = re.findall(r"virtio-scsi0: [0-9]+ requests.* ([0-9]+) check conditions", Log(case.path("stderr")).text())
        case.check(found and int(found[-1]) > 0, "no 'virtio-scsi0: ... N check conditions' line with N > 0 in stderr")
    case.finish()


def test_cloud_init(suite, case):
    """--cloud-init: the seed is a read-only virtio-scsi CD-ROM labelled
    cidata; the guest mounts it and finds user-data and network-config
    byte-identical and the default meta-data derived from --uuid."""
    case.blk_prepare()
    case.require_vmm("--cloud-init")
    case.require_qemu_has("--cloud-init")
    seed = case.img / "seed"
    seed.mkdir(exist_ok=True)
    user = seed / "user-data.yaml"
    user.write_text(f"#cloud-config\n# {harness.token()}\nruncmd:\n  - [echo, hello]\n")
    net = seed / "network.yaml"
    net.write_text("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")
    uuid = "5e1f0c9a-7d2b-4c61-9a3e-0b8f6d4c2a11"
    md5 = lambda p: hashlib.md5(p.read_bytes()).hexdigest()  # noqa: E731
    st = case.blk_boot(1, f"vmmtest.blk=cidata vmmtest.scsi_luns=1 vmmtest.ud_md5={md5(user)} "
                          f"vmmtest.nc_md5={md5(net)} vmmtest.uuid={uuid}",
                       "--uuid", uuid, "--cloud-init", f"user-data={user},network-config={net}")
    case.blk_common(st, "cidata-label", "cidata-user-data", "cidata-network-config", "cidata-meta-data")
    case.finish()


def test_scsi_256(suite, case):
    """256 small sparse disks on one controller (LUNs 0..255 of target 0):
    the guest sees 256 sd disks."""
    case.blk_prepare()
    count = 256
    # probing 256 sd disks takes ~2-3 min at TCG speed: more than the default 240 s
    timeout = max(suite.case_timeout, 480)
    args = []
    for i in range(count):
        truncate(case.img / f"m{i}.img", 1 << 20)
        args += ["--scsi-disk", f"path={case.img / f'm{i}.img'}"]
    st = case.blk_boot(1, f"vmmtest.blk=scsi-many vmmtest.scsi_luns={count}", *args, timeout=timeout)
    case.blk_common(st, "scsi-many", "scsi-many-read")
    case.finish()


def test_serial_ports(suite, case):
    """Two named virtio-serial ports on UNIX sockets beside hvc0. The guest
    finds both names in /sys/class/virtio-ports, writes a line on port one,
    reads the client's reply and closes the port: the client must see EOF.
    On port two the client answers and disconnects: the guest must read the
    line, then EOF. The sockets are 0600 while the VM runs and gone after."""
    case.blk_prepare()
    case.require_vmm("--serial-port")
    n1, n2 = "org.vmmtest.one", "org.vmmtest.two"
    tok, one_in, two_in = harness.token(), f"host-one-{harness.token()}", f"host-two-{harness.token()}"
    s1, s2 = case.path("one.sock"), case.path("two.sock")
    for s in (s1, s2):
        s.unlink(missing_ok=True)
    hvc = Log(case.path("hvc"))
    hvc.path.touch()
    log = [] if suite.qemu_mode else ["--log-level", "info"]
    vm = case.start("--kernel", suite.kernel, "--initramfs", case.blk_initrd, "--cmdline",
                    f"console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.blk=serial vmmtest.token={tok} "
                    f"vmmtest.ser_names={n1},{n2} vmmtest.ser_one={one_in} vmmtest.ser_two={two_in}",
                    "--cpus", 1, "--memory", "512M", "--serial", f"file={case.path('console')}",
                    "--disk", f"path={case.root_img}", "--console", f"file={hvc.path}",
                    "--serial-port", f"name={n1},socket={s1}", "--serial-port", f"name={n2},socket={s2}", *log,
                    stdout=case.path("stdout"))
    c1 = Background(harness.serial_client, s1, f"^VMMTEST-SERIAL one {tok}$", one_in, "eof", suite.case_timeout, 60,
                    case.path("one"))
    c2 = Background(harness.serial_client, s2, f"^VMMTEST-SERIAL two {tok}$", two_in, "close", suite.case_timeout, 60,
                    case.path("two"))
    for _ in range(300):
        if s1.is_socket() or not vm.running():
            break
        time.sleep(0.1)
    if not suite.qemu_mode:
        mode = f"{os.stat(s1).st_mode & 0o777:o}" if s1.exists() else "missing"
        case.check(mode == "600", f"the serial port socket has mode {mode}, expected 600")
    st = vm.wait_exit(suite.case_timeout)
    c1.join()
    c2.join()
    case.blk_common(st, "serial-names", "serial-host-to-guest", "serial-host-eof")
    one, two = Log(case.path("one")).text(), Log(case.path("two")).text()
    case.check(c2.result == 0, f"client two: status {c2.result or c2.error}: {two[-200:]}")
    case.check(f"VMMTEST-SERIAL two {tok}" in two, f"client two never got the guest's line on {n2}")
    case.check(f"VMMTEST-SERIAL one {tok}" in one, f"client one never got the guest's line on {n1}")
    if not suite.qemu_mode:
        # the VMM closes the connection when the guest closes the port (QEMU does not)
        case.check(c1.result == 0 and "<EOF>" in one,
                   f"client one saw no EOF after the guest closed {n1} (status {c1.result or c1.error}: {one[-200:]})")
        case.check(f"serial port {n1}: the guest closed the port" in Log(case.path("stderr")).text(),
                   f"no 'serial port {n1}: the guest closed the port' in the VMM's log")
        case.check(not s1.exists() and not s2.exists(), "a serial port socket was left behind after exit")
    # hvc0 works beside the named ports: the guest's reports went there too
    case.check("VMMTEST: PASS serial-names" in hvc.text(), "no 'VMMTEST: PASS serial-names' in the --console file (hvc0)")
    case.finish()
