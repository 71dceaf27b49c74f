#!/usr/bin/env python3
"""Probe-guest benchmark: our VMM against QEMU on the same guest work,
directly on /dev/kvm (docs/benchmarks.md).

The probe (firmware/probe, built as BUILD/probe.elf) is a PVH ELF whose
measured loop runs in guest ring 3, so on a nested KVM that emulates guest
ring 0 it still runs at native speed. It drives a virtio-blk disk with a
polled virtio 1.x driver, times each request with the TSC and prints one
"PROBE result" line. Each workload is booted under both VMMs in alternating
order, --rounds times:

  vmm   BUILD/vmm --kernel probe.elf --disk path=IMG,direct=on
  qemu  qemu-system-x86_64 -accel kvm -M q35 -kernel probe.elf
        -object iothread,id=io0
        -drive if=none,id=d0,file=IMG,format=raw,aio=io_uring,cache=none
        -device virtio-blk-pci,drive=d0,iothread=io0,num-queues=1

Both get 1 vCPU, 256 MiB, the same command line and the same image (filled
with random data once, so that reads hit allocated blocks). Reported per
workload: medians of each VMM, the ratio of medians (ours / QEMU), the
spread of the round-by-round ratios, and host CPU time per operation (utime
+ stime of the VMM process, all threads, sampled from /proc at the probe's
"phase begin" and "result" lines).

For the virtio-net workloads (tx-*, rx-*) both attach to the tap probetap0
(created if missing, which needs CAP_NET_ADMIN; without it they are left
out): QEMU as -netdev tap,vhost=off -device virtio-net-pci. The probe's
transmitted frames are dropped by the host; for rx-* build/tapblast sends
broadcast frames into the tap while the probe counts what arrives.

  --smoke   functional check for ctest: the verify workload and one short
            round of each workload, no timing claims; exits 77 (SKIP) when
            /dev/kvm is missing.
"""
import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")

# name -> (probe arguments, primary metric); the order is the default order
WORKLOADS = {
    "randread-qd1": ("probe.workload=randread probe.qd=1", "iops"),
    "randread-qd32": ("probe.workload=randread probe.qd=32", "iops"),
    "randread-qd1-noevidx": ("probe.workload=randread probe.qd=1 probe.event_idx=0", "iops"),
    # packed virtqueues (QEMU's virtio-blk-pci then gets packed=on; ours offers them by default)
    "randread-qd1-packed": ("probe.workload=randread probe.qd=1 probe.packed=1", "iops"),
    "randread-qd32-packed": ("probe.workload=randread probe.qd=32 probe.packed=1", "iops"),
    "seqread-1m": ("probe.workload=seqread probe.qd=1", "mbps"),
    "seqwrite-1m": ("probe.workload=seqwrite probe.qd=1", "mbps"),
    "flush": ("probe.workload=flush", "lat_p50_ns"),
    "boot": ("probe.workload=boot", "start_ms"),
    # virtio-net on the tap TAP: transmit (the host drops the frames), and
    # receive what build/tapblast sends into the tap
    "tx-64": ("probe.workload=tx probe.frame=64", "pps"),
    "tx-1514": ("probe.workload=tx probe.frame=1514", "mbps"),
    "rx-64": ("probe.workload=rx", "pps"),
    "rx-1514": ("probe.workload=rx", "mbps"),
}
RATES = ("iops", "pps", "mbps")  # the metrics where higher is better
NET_FRAME = {"rx-64": 64, "rx-1514": 1514}
TAP = "probetap0"
DEFAULT = ",".join(WORKLOADS)


def is_net(name):
    return name.startswith(("tx-", "rx-"))


def setup_tap():
    """The tap both VMMs attach to in turn; None if it cannot be made."""
    if subprocess.run(["ip", "link", "show", TAP], capture_output=True).returncode != 0:
        r = subprocess.run(["ip", "tuntap", "add", "dev", TAP, "mode", "tap"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"cannot create tap {TAP} ({r.stderr.strip()}; needs CAP_NET_ADMIN)"
    subprocess.run(["ip", "link", "set", TAP, "up"], check=True)
    return None


def die(msg):
    print(f"probe-bench: {msg}", file=sys.stderr)
    sys.exit(1)


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


# Our configurations: extra --disk options.
VMMS = {"vmm": "", "vmm-poll0": ",poll_us=0"}


# --format: the image both contenders get, and how each opens it.
#   raw         the raw image, O_DIRECT (ours direct=on, QEMU cache=none)
#   raw-cached  the raw image through the host page cache (QEMU cache=writeback)
#   qcow2       a fully allocated qcow2 copy of it (qemu-img convert), page cache
#   overlay     a fresh qcow2 overlay on the raw image before every run (so
#               writes are first writes that allocate), page cache
FORMATS = {"raw": ("raw", ",direct=on", "none"), "raw-cached": ("raw", "", "writeback"),
           "qcow2": ("qcow2", ",format=qcow2", "writeback"), "overlay": ("qcow2", ",format=qcow2", "writeback")}


def command(vmm, build, image, cmdline, net, memory_mib=256, fmt_name="raw"):
    packed = ",packed=on" if "probe.packed=1" in cmdline else ""
    probe = os.path.join(build, "probe.elf")
    qemu_format, ours, cache = FORMATS[fmt_name]
    if vmm in VMMS:
        dev = ["--net", f"tap={TAP}"] if net else ["--disk", f"path={image}{ours}{VMMS[vmm]}"]
        return [os.path.join(build, "vmm"), "--kernel", probe, "--memory", f"{memory_mib}M", "--cpus", "1",
                "--serial", "tty", "--cmdline", cmdline] + dev
    if net:
        dev = ["-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost=off",
               "-device", f"virtio-net-pci,netdev=n0{packed}"]
    else:
        dev = ["-object", "iothread,id=io0",
               "-drive", f"if=none,id=d0,file={image},format={qemu_format},aio=io_uring,cache={cache}",
               "-device", f"virtio-blk-pci,drive=d0,iothread=io0,num-queues=1{packed}"]
    return ["qemu-system-x86_64", "-accel", "kvm", "-M", "q35", "-m", str(memory_mib), "-smp", "1",
            "-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-name", "probe,debug-threads=on",  # thread names, for pin_threads()
            "-kernel", probe, "-append", cmdline] + dev


def pin_threads(pid, extra_pids=()):
    """With 2 or more CPUs: the vCPU thread (ours "vcpu0", QEMU's "CPU 0/KVM")
    alone on the last CPU, every other thread of the VMM (I/O threads,
    QEMU's main loop) and `extra_pids` on the others. The probe's vCPU
    spins for the whole run, so where the scheduler put the I/O thread
    otherwise decided the result: sharing the vCPU's core roughly doubled
    QD1 latency, under both VMMs, from one round to the next."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    vcpu, rest = {cpus[-1]}, set(cpus[:-1])
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            os.sched_setaffinity(int(tid), vcpu if name in ("vcpu0", "CPU 0/KVM") else rest)
        for p in extra_pids:
            os.sched_setaffinity(p, rest)
    except (OSError, ValueError):
        pass  # a thread that ended meanwhile


def parse_kv(line):
    out = {}
    for word in line.split():
        if "=" in word:
            k, v = word.split("=", 1)
            out[k] = int(v) if v.isdigit() else v
    return out


def disk_image(fmt_name, raw, out_dir):
    """The image file --format names, made from the raw image as needed."""
    if fmt_name.startswith("raw"):
        return raw
    path = os.path.join(out_dir, f"disk-{fmt_name}.qcow2")
    if fmt_name == "qcow2" and not (os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(raw)):
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, path], check=True)
    return path


def run_once(vmm, build, image, cmdline, timeout, name="", fmt_name="raw", raw=None):
    """Boots the probe once; returns a dict of measurements or raises."""
    if fmt_name == "overlay" and not is_net(name):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", raw, "-F", "raw", image], check=True)
    argv = command(vmm, build, image, cmdline, is_net(name), fmt_name=fmt_name)
    blaster = None
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace")
    res, log = {}, []
    cpu_begin = None
    try:
        deadline = t0 + timeout
        for line in p.stdout:
            now = time.monotonic()
            log.append(line.rstrip())
            if now > deadline:
                break
            if "PROBE start" in line:
                res["start_ms"] = (now - t0) * 1000
            elif "PROBE phase begin" in line:
                if name in NET_FRAME:
                    blaster = subprocess.Popen([os.path.join(build, "tapblast"), TAP, str(NET_FRAME[name]),
                                                str(timeout)], stdout=subprocess.DEVNULL)
                pin_threads(p.pid, [blaster.pid] if blaster else [])
                cpu_begin = cpu_ticks(p.pid)
            elif "PROBE result" in line:
                cpu_end = cpu_ticks(p.pid)
                res.update(parse_kv(line.split("PROBE result", 1)[1]))
                if cpu_begin is not None and cpu_end is not None and res.get("ops"):
                    res["cpu_us_per_op"] = (cpu_end - cpu_begin) / HZ * 1e6 / res["ops"]
            elif "PROBE error" in line:
                res["error"] = line.strip()
        rc = p.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise RuntimeError(f"{vmm}: timed out after {timeout} s\n" + "\n".join(log[-20:]))
    finally:
        if blaster:
            blaster.terminate()
            blaster.wait()
    res["exit_ms"] = (time.monotonic() - t0) * 1000
    if rc != 0 or "error" in res or "start_ms" not in res:
        raise RuntimeError(f"{vmm}: exit status {rc}\n  {' '.join(argv)}\n" + "\n".join(log[-20:]))
    return res


def make_image(path, mib):
    if os.path.exists(path) and os.path.getsize(path) == mib << 20:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())


def smoke(args, image, tap_ok):
    """Each workload once, 1 s, under our VMM (and QEMU when present):
    checks that the probe boots, the data path is right and results parse."""
    vmms = ["vmm"] + (["qemu"] if shutil.which("qemu-system-x86_64") else [])
    failures = 0
    for vmm in vmms:
        cases = [("verify", "probe.workload=verify probe.region_mib=16 probe.bs=65536")]
        cases += [(n, WORKLOADS[n][0] + " probe.seconds=1") for n in DEFAULT.split(",")
                  if not is_net(n) or tap_ok is None]
        for name, cmdline in cases:
            try:
                r = run_once(vmm, args.build, image, cmdline, args.timeout, name)
                ok = name == "boot" or (r.get("ops", 0) > 0 or r.get("mismatches") == 0)
                ok = ok and (name != "verify" or r.get("mismatches") == 0 and r.get("bytes") == 16 << 20)
                print(f"{'PASS' if ok else 'FAIL'} {vmm} {name}: "
                      + " ".join(f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
                failures += not ok
            except RuntimeError as e:
                print(f"FAIL {vmm} {name}: {e}")
                failures += 1
    if len(vmms) == 1:
        print("SKIP qemu: qemu-system-x86_64 not installed (the comparison rounds need it)")
    if tap_ok is not None:
        print(f"SKIP virtio-net workloads: {tap_ok}")
    return 1 if failures else 0


def plot(summary, png, out_dir):
    """Clustered bars per workload: speed and CPU per operation, both as
    'how many times better than QEMU' (> 1: ours is better), whiskers the
    per-round range. The boot workload is left out (its ratio is off any
    common scale here; see the table)."""
    if not shutil.which("gnuplot"):
        print("no gnuplot: no plot")
        return
    def better(s):
        r, lo, hi = float(s["ratio"]), float(s["pair_min"]), float(s["pair_max"])
        if s["metric"] in RATES:
            return r, lo, hi
        return 1 / r, 1 / hi, 1 / lo
    rows = {}
    for s in summary:
        if s["vmm"] != "vmm" or s["workload"] == "boot":
            continue
        if str(s["primary"]) in ("True", "1", "true"):
            rows.setdefault(s["workload"], {})["speed"] = better(s)
        elif s["metric"] == "cpu_us_per_op":
            rows.setdefault(s["workload"], {})["cpu"] = better(s)
    dat = os.path.join(out_dir, "probe-bench-plot.dat")
    with open(dat, "w") as f:
        for name, v in rows.items():
            sp, cpu = v.get("speed", (0, 0, 0)), v.get("cpu", (0, 0, 0))
            f.write(f'"{name}" ' + " ".join(f"{x:.4f}" for x in sp + cpu) + "\n")
    script = f"""
set terminal pngcairo size 1100,480 font ",10"
set output "{png}"
set termoption noenhanced
set title "Probe guest on /dev/kvm: build/vmm against QEMU (above 1: vmm better; whiskers: per-round range)"
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set yrange [0:2]
set grid ytics
set xtics rotate by -25
set key top right
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot "{dat}" using 2:3:4:xtic(1) title "speed (IOPS, MB/s, packets/s; flush: 1/latency)", \\
     "" using 5:6:7 title "1 / host CPU per operation"
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    print(f"plot: {png}")


def fmt(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--workloads", default=DEFAULT)
    ap.add_argument("--vmms", default="vmm,qemu",
                    help="what runs, compared with qemu: vmm (defaults), vmm-poll0 (poll_us=0), qemu")
    ap.add_argument("--image-mib", type=int, default=256)
    ap.add_argument("--format", default="raw", choices=list(FORMATS),
                    help="the disk image both VMMs get: raw (O_DIRECT), raw-cached, qcow2 (fully allocated copy), "
                         "overlay (a fresh qcow2 overlay on the raw image for every run)")
    ap.add_argument("--dir", help="where the image and results go (default BUILD/probe-bench)")
    ap.add_argument("--plot", help="PNG to draw (gnuplot); default DIR/probe-bench.png")
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--replot", metavar="DIR", help="only redraw the plot from DIR/probe-bench.csv")
    args = ap.parse_args()
    if args.replot:
        with open(os.path.join(args.replot, "probe-bench.csv")) as f:
            plot(list(csv.DictReader(f)), args.plot or os.path.join(args.replot, "probe-bench.png"), args.replot)
        return

    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm is missing or not accessible")
        sys.exit(77)
    for f in ("vmm", "probe.elf", "tapblast"):
        if not os.path.exists(os.path.join(args.build, f)):
            die(f"{args.build}/{f} is missing: build first (tests/build.sh)")
    out_dir = args.dir or os.path.join(args.build, "probe-bench")
    image = os.path.join(out_dir, "disk.img")
    make_image(image, args.image_mib)
    tap_ok = setup_tap()
    if args.smoke:
        sys.exit(smoke(args, image, tap_ok))
    if not shutil.which("qemu-system-x86_64"):
        die("qemu-system-x86_64 is needed as the reference (apt install qemu-system-x86)")
    if args.format != "raw" and not shutil.which("qemu-img"):
        die(f"--format {args.format} needs qemu-img (apt install qemu-utils)")
    disk = disk_image(args.format, image, out_dir)
    names = args.workloads.split(",")
    vmms = args.vmms.split(",")
    if "qemu" not in vmms or any(v not in VMMS and v != "qemu" for v in vmms):
        die(f"--vmms: a list of {', '.join(VMMS)} and qemu (which is required)")
    for n in names:
        if n not in WORKLOADS:
            die(f"unknown workload {n}; known: {', '.join(WORKLOADS)}")
    if tap_ok is not None and any(is_net(n) for n in names):
        print(f"probe-bench: leaving out the virtio-net workloads: {tap_ok}", file=sys.stderr)
        names = [n for n in names if not is_net(n)]

    rows = []  # (round, workload, vmm, result dict)
    for rnd in range(args.rounds):
        for name in names:
            order = vmms[rnd % len(vmms):] + vmms[:rnd % len(vmms)]  # who goes first rotates
            for vmm in order:
                if is_net(name) and vmm == "vmm-poll0":
                    continue  # poll_us is a disk option
                cmdline = f"{WORKLOADS[name][0]} probe.seconds={args.seconds} probe.region_mib={args.image_mib}"
                r = run_once(vmm, args.build, disk, cmdline, args.timeout, name, args.format, image)
                rows.append((rnd, name, vmm, r))
                metric = WORKLOADS[name][1]
                print(f"round {rnd + 1}/{args.rounds} {name:22} {vmm:9} {metric}={fmt(r.get(metric))}", flush=True)

    raw_csv = os.path.join(out_dir, "probe-bench-raw.csv")
    keys = ["start_ms", "exit_ms", "ops", "iops", "pps", "mbps", "lat_avg_ns", "lat_p50_ns", "lat_p99_ns",
            "lat_max_ns", "notifies", "cpu_us_per_op"]
    with open(raw_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["round", "workload", "vmm"] + keys)
        for rnd, name, vmm, r in rows:
            w.writerow([rnd + 1, name, vmm] + [r.get(k, "") for k in keys])

    summary = []
    metrics = ["iops", "pps", "mbps", "lat_p50_ns", "lat_p99_ns", "cpu_us_per_op", "start_ms", "exit_ms"]
    for name in names:
        for ours_name in [v for v in vmms if v != "qemu"]:
            for m in metrics:
                if m in ("start_ms", "exit_ms") and name != "boot":
                    continue
                ours = {rnd: r[m] for rnd, n, v, r in rows if n == name and v == ours_name and m in r}
                ref = {rnd: r[m] for rnd, n, v, r in rows if n == name and v == "qemu" and m in r}
                if not ours or not ref or (m in RATES and not any(ours.values())):
                    continue
                pair = [ours[k] / ref[k] for k in ours if k in ref and ref[k]]
                mo, mq = statistics.median(ours.values()), statistics.median(ref.values())
                summary.append({"workload": name, "vmm": ours_name, "metric": m, "vmm_median": mo,
                                "qemu_median": mq, "ratio": mo / mq if mq else None,
                                "pair_min": min(pair) if pair else None, "pair_max": max(pair) if pair else None,
                                "rounds": len(pair), "primary": m == WORKLOADS[name][1]})
    sum_csv = os.path.join(out_dir, "probe-bench.csv")
    with open(sum_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
        w.writeheader()
        w.writerows(summary)

    print("\n| workload | metric | ours | median | QEMU median | ours / QEMU | per-round ratios |")
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['workload']} | {s['metric']} | {s['vmm']} | {fmt(s['vmm_median'])} | {fmt(s['qemu_median'])} | "
              f"{fmt(s['ratio'])} | {fmt(s['pair_min'])}–{fmt(s['pair_max'])} |")
    print(f"\nraw: {raw_csv}\nsummary: {sum_csv}")

    plot(summary, args.plot or os.path.join(out_dir, "probe-bench.png"), out_dir)


if __name__ == "__main__":
    main()
