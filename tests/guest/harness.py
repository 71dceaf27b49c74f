"""The real-guest suite's Python side: the pieces every case uses.

A case boots build/vmm (or QEMU behind the same command line, see
qemu_adapter.py) with Debian's kernel and one of the project's initramfs
images, and judges the run by three things: the VMM's exit status, the
guest's console lines ("VMMTEST: PASS x", "VMMTEST: FAIL x: why",
"VMMTEST: done", written by the init scripts of make-guest-initramfs.sh and
make-blk-guest.sh) and host-side checks (image contents, control API
counters, RSS, sockets).

A case collects every reason it failed in a Case object and asserts once at
the end, so one report lists all of them, followed by the tails of the
console and stderr logs.
"""
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent
REPO_ROOT = GUEST_DIR.parent.parent


def case_name(nodeid_or_name):
    """The suite's name for a test: the parameter id of a parametrized test
    (`test_boot.py::test_guest[bzimage-1cpu]` -> `bzimage-1cpu`), else the
    function name without `test_`, with dashes (`test_blk_root` -> `blk-root`)."""
    s = nodeid_or_name.split("::")[-1]
    m = re.fullmatch(r"[^\[]*\[(.*)\]", s)
    if m:
        return m.group(1)
    return re.sub(r"^test_", "", s).replace("_", "-")


def token():
    """A short random string for vmmtest.token= and friends."""
    return "t" + secrets.token_hex(6)


def exit_status(returncode):
    """subprocess's returncode as a shell reports it: 128 + N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


class Log:
    """A log file the VMM writes while it runs (console, hvc0, stdout)."""

    def __init__(self, path):
        self.path = Path(path)

    def text(self):
        try:
            return self.path.read_bytes().decode(errors="replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def has(self, regex):
        return re.search(regex, self.text(), re.M) is not None

    def find(self, regex):
        """The first group (or whole match) of REGEX, or None."""
        m = re.search(regex, self.text(), re.M)
        if not m:
            return None
        return m.group(1) if m.groups() else m.group(0)

    def count(self, regex):
        return len(re.findall(regex, self.text(), re.M))

    def fail_lines(self):
        return [line for line in self.text().splitlines() if "VMMTEST: FAIL" in line]


class Vm:
    """One VMM process. `wait_console` polls a log for a line while the
    process runs; `wait_exit` waits for the exit status (killing the process
    after its timeout)."""

    def __init__(self, cmd, console, stdout, stderr, stdin=subprocess.DEVNULL, cwd=None):
        self.cmd = [str(c) for c in cmd]
        self.console = Log(console)
        self.t0 = time.monotonic()
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdin=stdin, stdout=out, stderr=err, cwd=cwd)
        self.status = None

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def elapsed(self):
        return time.monotonic() - self.t0

    def wait_for(self, log, regex, timeout):
        """True once LOG matches REGEX; False if the VMM exited without it
        or TIMEOUT seconds passed."""
        end = time.monotonic() + timeout
        while True:
            if log.has(regex):
                return True
            if not self.running():
                return log.has(regex)
            if time.monotonic() >= end:
                return False
            time.sleep(0.3)

    def wait_console(self, regex, timeout):
        return self.wait_for(self.console, regex, timeout)

    def wait_exit(self, timeout):
        """The exit status, or None if it still ran after TIMEOUT s (then it
        is killed)."""
        try:
            self.status = exit_status(self.proc.wait(timeout=timeout))
            return self.status
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def kill(self):
        if self.running():
            self.proc.kill()
        self.proc.wait()


def direct_io_works(d):
    """True if files in directory D can be written with O_DIRECT (tmpfs
    cannot before Linux 6.6; the test host's 9p exports can)."""
    try:
        fd = os.open(Path(d) / ".odirect", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    try:
        import mmap
        buf = mmap.mmap(-1, 4096)
        os.write(fd, buf)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        (Path(d) / ".odirect").unlink(missing_ok=True)


def thread_capabilities(pid):
    """{"NAME/TID": {"CapInh": n, "CapPrm": n, "CapEff": n, "CapBnd": n,
    "CapAmb": n}} for every thread of process PID ({} if it is gone)."""
    out = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for t in tasks:
        try:
            text = (t / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        m = re.search(r"^Name:\s*(.*)$", text, re.M)
        caps = {k: int(v, 16) for k, v in re.findall(r"^(Cap(?:Inh|Prm|Eff|Bnd|Amb)):\s*([0-9a-f]+)$", text, re.M)}
        out[f"{m.group(1) if m else '?'}/{t.name}"] = caps
    return out


def rss_mib(pid):
    """Resident memory of a process in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def json_find(obj, key):
    """The first value of KEY in a JSON document, depth first (None if absent)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            r = json_find(v, key)
            if r is not None:
                return r
    return None


# ------------------------------------------------------------ host side ----
def unix_connect(path, wait):
    end = time.monotonic() + wait
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if time.monotonic() >= end:
                raise
            time.sleep(0.1)


def unix_request(path, line, timeout=10):
    """Sends LINE + newline on a UNIX socket; returns the first response line."""
    with unix_connect(path, 5) as s:
        s.settimeout(timeout)
        s.sendall(line.encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
    return buf.decode(errors="replace").split("\n")[0]


def unix_read_until(path, regex, seconds, wait, out):
    """Connects (retrying for WAIT s) and copies what arrives to the file
    OUT until REGEX matches (True), EOF or SECONDS pass (False)."""
    s = unix_connect(path, wait)
    pat = re.compile(regex.encode(), re.M)
    end = time.monotonic() + seconds
    buf = b""
    with s, open(out, "wb") as f:
        while time.monotonic() < end:
            s.settimeout(max(0.1, end - time.monotonic()))
            try:
                d = s.recv(4096)
            except socket.timeout:
                break
            if not d:
                break
            buf += d
            f.write(d)
            f.flush()
            if pat.search(buf.replace(b"\r", b"")):
                return True
    return False


def serial_client(path, regex, reply, end, seconds, wait, out):
    """A client of a named serial port: connect (retrying WAIT s), copy what
    arrives to the file OUT until REGEX matches, send REPLY and a newline;
    END="close": close at once, 0; END="eof": read on until EOF and write
    "<EOF>" (0), or 2 if none came within SECONDS. 1: REGEX never matched."""
    with open(out, "w", errors="replace") as f:
        try:
            s = unix_connect(path, wait)
        except OSError as e:
            f.write(f"<cannot connect: {e}>\n")
            return 1
        pat = re.compile(regex.encode(), re.M)
        deadline = time.monotonic() + seconds

        def recv():
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                return s.recv(4096)
            except socket.timeout:
                return None

        with s:
            buf = b""
            while not pat.search(buf.replace(b"\r", b"")):
                d = recv()
                if not d:
                    f.write("<no match: %s>\n" % ("timeout" if d is None else "EOF"))
                    return 1
                buf += d
                f.write(d.decode(errors="replace"))
                f.flush()
            s.sendall(reply.encode() + b"\n")
            f.write(f"<sent {reply}>\n")
            f.flush()
            if end == "close":
                return 0
            while True:
                d = recv()
                if d is None:
                    f.write("<no EOF>\n")
                    return 2
                if not d:
                    f.write("<EOF>\n")
                    return 0
                f.write(d.decode(errors="replace"))


def tcp_report(c, who):
    """One line of the host kernel's TCP_INFO for a finished transfer: what
    limited the sender (busy = sending, rwnd = the peer's window, sndbuf =
    its buffer), the smoothed RTT, the congestion window."""
    import struct
    try:
        ti = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 192)
    except OSError:
        return ""
    if len(ti) < 192:
        return ""
    # struct tcp_info (linux/tcp.h): 8 bytes, then 24 u32 from tcpi_rto, ...
    u32 = struct.unpack_from("24I", ti, 8)
    rtt, cwnd, retrans = u32[15], u32[18], u32[23]
    segs_out, segs_in = struct.unpack_from("2I", ti, 136)
    busy, rwnd, sndbuf = struct.unpack_from("3Q", ti, 168)
    return (f"{who}: tcp rtt={rtt}us cwnd={cwnd} retrans={retrans} segs_out={segs_out} segs_in={segs_in} "
            f"busy={busy}us rwnd_limited={rwnd}us sndbuf_limited={sndbuf}us")


def tcp_sink(addr, port, want, wait, log):
    """Accepts one TCP connection on ADDR:PORT (for WAIT s) and reads WANT
    bytes. Returns (sha256, bytes, seconds): the seconds cover only the
    transfer, from the first byte to the last, since the test host's one CPU
    is the one the guest runs on."""
    import hashlib
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, port))
        ls.listen(1)
        ls.settimeout(wait)
        c, _ = ls.accept()
    with c:
        c.settimeout(120)
        # one buffer, filled in place: no new 1 MiB object per recv()
        buf = bytearray(want)
        view = memoryview(buf)
        done = 0
        t0 = time.monotonic()
        while done < want:
            n = c.recv_into(view[done:done + (1 << 20)])
            if not n:
                break
            done += n
        secs = time.monotonic() - t0
        log(tcp_report(c, "tcp-sink"))
    return hashlib.sha256(view[:done]).hexdigest(), done, secs


def tcp_source(addr, port, want, wait, log):
    """Connects to ADDR:PORT (retrying for WAIT s), sends WANT random bytes,
    shuts down the sending side and waits for the peer to close. Returns
    (sha256, bytes, seconds) like tcp_sink."""
    import hashlib
    data = os.urandom(want)
    digest = hashlib.sha256(data).hexdigest()
    end = time.monotonic() + wait
    while True:
        try:
            c = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)
    with c:
        c.settimeout(120)
        view = memoryview(data)
        done = 0
        t0 = time.monotonic()
        while done < want:
            n = min(1 << 20, want - done)
            c.sendall(view[done:done + n])
            done += n
        # sendall() returns once the data is in the host's socket buffer
        # (megabytes); the transfer ends when the peer has read it all.
        c.shutdown(socket.SHUT_WR)
        while c.recv(4096):
            pass
        secs = time.monotonic() - t0
        log(tcp_report(c, "tcp-source"))
    return digest, done, secs


def eth_send(iface, dst_mac, count):
    """COUNT small Ethernet frames (ethertype 0x88b5, local experimental)
    to DST_MAC out of IFACE (AF_PACKET)."""
    dst = bytes.fromhex(dst_mac.replace(":", ""))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((iface, 0))
        src = s.getsockname()[4][:6]
        for i in range(count):
            s.send(dst + src + b"\x88\xb5" + bytes([i & 0xff]) * 46)


class Background(threading.Thread):
    """Runs FN(*args) on a thread; .result / .error once joined."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.result, self.error = fn, args, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except Exception as e:  # reported by the case
            self.error = e


def mib_of(v):
    """A --memory style size ("512M", "2G", 1048576) in MiB."""
    if isinstance(v, int):
        return v >> 20
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)(i?B)?", str(v).strip(), re.I)
    if not m:
        return 0
    shift = {"": 20, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    return (int(m.group(1)) << shift) >> 20


def load_json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None
