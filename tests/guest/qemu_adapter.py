#!/usr/bin/python3
"""qemu_adapter.py VMM-OPTIONS...: behaves like build/vmm (the options the
real-guest suite uses, and the VMM's exit statuses) using QEMU -M pc. It
exists to check the suite and the guest side against the reference
implementation (run-guest-tests.sh --vmm qemu) and for benchmarks that run
the same case under both (tests/bench/net-bench.sh).

Exit statuses as the VMM's: 0 poweroff, 1 error, 2 guest reboot (-no-reboot),
3 guest panic (pvpanic, -action panic=exit-failure), 5 --timeout, 128+N
after signal N. VMM_QEMU_ACCEL=tcg runs without /dev/kvm."""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time


def die(msg):
    print(f"vmm: error: {msg} (QEMU adapter)", file=sys.stderr)
    sys.exit(1)


def items(spec, what):
    out = []
    for kv in spec.split(","):
        k, _, v = kv.partition("=")
        out.append((k, v, kv))
    return out


def main(argv):
    kernel = initrd = cmdline = ""
    cpus, memory, serial, console, timeout_s = "1", "512M", "tty", "off", 0
    dev_args, port_args, scsi = [], [], []
    ndisk = nnet = 0
    args = list(argv)
    while args:
        opt = args.pop(0)
        if opt in ("--boot-report",):
            continue
        if opt == "--rng":
            dev_args += ["-device", "virtio-rng-pci"]
            continue
        if not args:
            die(f"{opt} needs a value")
        val = args.pop(0)
        if opt == "--kernel":
            kernel = val
        elif opt == "--initramfs":
            initrd = val
        elif opt == "--cmdline":
            cmdline = val
        elif opt == "--cpus":
            cpus = val
        elif opt == "--memory":
            memory = val
        elif opt == "--serial":
            serial = val
        elif opt == "--console":
            console = val
        elif opt == "--timeout":
            timeout_s = float(val)
        elif opt in ("--log-file", "--log-level"):
            pass
        elif opt == "--disk":
            path, drive, dev = "", "", ""
            for k, v, kv in items(val, opt):
                if k == "path":
                    path = v
                elif kv == "readonly=on":
                    drive += ",readonly=on"
                elif kv == "direct=on":
                    drive += ",cache=none,aio=native"
                elif k == "serial":
                    dev += f",serial={v}"
                elif k == "num_queues":
                    dev += f",num-queues={v}"
                elif kv == "packed=off":
                    dev += ",packed=off"
                else:
                    die(f"bad --disk item '{kv}'")
            dev_args += ["-drive", f"if=none,id=d{ndisk},file={path},format=raw,discard=unmap{drive}",
                         "-device", f"virtio-blk-pci,drive=d{ndisk}{dev}"]
            ndisk += 1
        elif opt in ("--scsi-disk", "--cdrom"):
            kind = opt[2:]
            path, lun, ro, cache = "", -1, "off", ""
            if opt == "--cdrom" and not val.startswith("path="):
                path = val
            else:
                for k, v, kv in items(val, opt):
                    if k == "path":
                        path = v
                    elif k == "lun":
                        lun = int(v)
                    elif kv == "readonly=on":
                        ro = "on"
                    elif kv == "direct=on":
                        cache = ",cache=none,aio=native"
                    else:
                        die(f"bad {opt} item '{kv}'")
            scsi.append([kind, path, lun, ro, cache])
        elif opt == "--net":
            # QEMU's userspace virtio-net (no vhost) on the same tap
            tap, mac, nq, packed = "", "", 1, ""
            for k, v, kv in items(val, opt):
                if k == "tap":
                    tap = v
                elif k == "mac":
                    mac = f",mac={v}"
                elif k == "num_queues":
                    nq = int(v)
                elif kv in ("packed=on", "packed=off"):
                    packed = f",packed={v}"
                else:
                    die(f"bad --net item '{kv}'")
            q = f",queues={nq}" if nq > 1 else ""
            mq = f",mq=on,vectors={2 * nq + 2}" if nq > 1 else ""
            dev_args += ["-netdev", f"tap,id=n{nnet},ifname={tap},script=no,downscript=no,vhost=off{q}",
                         "-device", f"virtio-net-pci,netdev=n{nnet}{mac}{mq}{packed}"]
            nnet += 1
        elif opt == "--balloon":
            # QEMU has no initial size (it would need its monitor): only size=0 maps
            dev = "virtio-balloon-pci"
            for k, v, kv in items(val, opt):
                if kv == "size=0" or k == "stats_interval":
                    continue
                if kv == "deflate_on_oom=on":
                    dev += ",deflate-on-oom=on"
                elif kv == "free_page_reporting=on":
                    dev += ",free-page-reporting=on"
                else:
                    die(f"bad --balloon item '{kv}'")
            dev_args += ["-device", dev]
        elif opt == "--serial-port":
            name, chardev = "", ""
            for k, v, kv in items(val, opt):
                if k == "name":
                    name = v
                elif k == "socket":
                    chardev = f"socket,path={v},server=on,wait=off"
                elif k == "file":
                    chardev = f"file,path={v}"
                else:
                    die(f"bad --serial-port item '{kv}'")
            n = len(port_args) // 4
            port_args += ["-chardev", f"{chardev},id=sp{n}", "-device", f"virtserialport,chardev=sp{n},name={name}"]
        else:
            die(f"unknown option {opt}")
    if not os.access(kernel, os.R_OK):
        die(f"cannot open kernel {kernel}")
    if scsi:
        # the VMM's LUN rule: disks, then CD-ROMs; no lun= takes the lowest free one
        taken = {s[2] for s in scsi if s[2] >= 0}
        nxt = 0
        dev_args += ["-device", "virtio-scsi-pci,id=scsi0"]
        order = [i for i, s in enumerate(scsi) if s[0] == "scsi-disk"] + \
                [i for i, s in enumerate(scsi) if s[0] == "cdrom"]
        for i in order:
            kind, path, lun, ro, cache = scsi[i]
            if lun < 0:
                while nxt in taken:
                    nxt += 1
                lun = nxt
                taken.add(lun)
            if kind == "cdrom":
                dev_args += ["-drive", f"if=none,id=s{i},file={path},format=raw,readonly=on,media=cdrom",
                             "-device", f"scsi-cd,bus=scsi0.0,drive=s{i},scsi-id=0,lun={lun}"]
            else:
                dev_args += ["-drive", f"if=none,id=s{i},file={path},format=raw,discard=unmap,readonly={ro}{cache}",
                             "-device", f"scsi-hd,bus=scsi0.0,drive=s{i},scsi-id=0,lun={lun}"]
    relay = False
    log = None
    if serial == "tty":
        fd, log = tempfile.mkstemp(prefix="qemu-adapter.")
        os.close(fd)
        serial_arg, relay = f"file:{log}", True
    elif serial.startswith("file="):
        log = serial[5:]
        serial_arg = f"file:{log}"
    elif serial.startswith("socket="):
        serial_arg = f"unix:{serial[7:]},server=on,wait=off"
    elif serial == "off":
        serial_arg = "null"
    else:
        die(f"bad --serial {serial}")
    con_args, stdin = [], subprocess.DEVNULL
    if console == "tty":
        con_args, stdin = ["-chardev", "stdio,id=hvc,signal=off"], None
    elif console.startswith("file="):
        con_args = ["-chardev", f"file,id=hvc,path={console[5:]}"]
    elif console != "off":
        die(f"bad --console {console}")
    if console != "off":
        con_args += ["-device", "virtconsole,chardev=hvc"]
    # one virtio-serial-pci carries hvc0 and the named ports
    if console != "off" or port_args:
        con_args = ["-device", "virtio-serial-pci", *con_args, *port_args]
    accel = ["-accel", "tcg", "-cpu", "max"] if os.environ.get("VMM_QEMU_ACCEL") == "tcg" else \
        ["-accel", "kvm", "-cpu", "host"]
    # pvpanic (ISA, port 0x505, ACPI QEMU0001 like the VMM's): a guest panic
    # makes QEMU exit with status 1, mapped to 3 below
    cmd = ["qemu-system-x86_64", "-M", "pc", *accel, "-smp", cpus, "-m", memory, "-nodefaults", "-no-user-config",
           "-display", "none", "-nic", "none", "-no-reboot", "-device", "pvpanic", "-action", "panic=exit-failure",
           "-serial", serial_arg, "-monitor", "none", "-kernel", kernel, "-append", cmdline, *dev_args, *con_args]
    if initrd:
        cmd += ["-initrd", initrd]
    q = subprocess.Popen(cmd, stdin=stdin)
    got = {"sig": None, "timeout": False}

    def on_signal(sig, _frame):
        got["sig"] = sig
        q.terminate()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if timeout_s:
        def expire():
            got["timeout"] = True
            q.terminate()
        threading.Timer(timeout_s, expire).start()
    stop_relay = threading.Event()
    if relay:
        def copy():  # the console file to our stdout as it grows
            with open(log, "rb") as f:
                while True:
                    d = f.read(65536)
                    if d:
                        sys.stdout.buffer.write(d)
                        sys.stdout.flush()
                    elif stop_relay.is_set():
                        return
                    else:
                        time.sleep(0.1)
        t = threading.Thread(target=copy, daemon=True)
        t.start()
    st = q.wait()
    stop_relay.set()
    if relay:
        t.join()
    text = ""
    if log and os.path.exists(log):
        with open(log, "rb") as f:
            text = f.read().decode(errors="replace")
    if relay:
        os.unlink(log)
    if got["sig"]:
        os._exit(128 + got["sig"])
    if got["timeout"]:
        os._exit(5)
    if st != 0:
        os._exit(3 if "Kernel panic - not syncing" in text else 1)
    os._exit(2 if "reboot: Restarting system" in text else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
