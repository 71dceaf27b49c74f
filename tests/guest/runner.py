#!/usr/bin/python3
"""runner.py [--build DIR] [--timeout SEC] [--only REGEX] [--list] [--vmm vmm|qemu] [--here] [--logdir DIR]
             [-- PYTEST-ARGS...]

Runs the real-guest suite (the pytest cases in tests/guest/test_*.py; see
tests/guest/README.md) where guests can run:

  - directly, if kvm-usable.sh says this machine's /dev/kvm runs Linux;
  - with --vmm qemu and no usable /dev/kvm: directly, QEMU under TCG;
  - otherwise inside the software-emulated test host (testhost.sh), in
    VMM_GUEST_SHARDS test hosts at once (default: 2 on a machine with 2 or
    more CPUs, since the test host emulates its one CPU on one host thread).
    The cases are split between them by how long each took last time
    (DIR/test-cache/guest-durations.json, else tests/guest/durations.json,
    else 40 s each).

The test host sometimes wedges: its one emulated CPU stops taking
interrupts, typically while a multi-vCPU guest of the VMM spins in a wait
loop, and nothing inside can recover, not even the per-case timeouts. The
pytest run inside writes a heartbeat every 5 s (conftest.py); when it is
older than VMM_GUEST_WEDGE_SECONDS (default 40) the test host is killed and
a new one runs the cases not yet done, the interrupted one first. A case
interrupted in all of its VMM_GUEST_CASE_ATTEMPTS (default 5) fails. Every
restart is listed before the summary line.

The guest artifacts (test initramfs, PVH ELF, the virtio block guest) are
built first, here, into the cache (VMM_TEST_CACHE, default DIR/test-cache),
because the test host sees this machine read-only.

--only REGEX selects the cases whose name it finds (--list shows the names);
--timeout is the per-guest timeout (default 240 s, TCG speed); PYTEST-ARGS
go to every pytest run (e.g. -x, -k). --here runs the selected cases right
here, logging to --logdir (what the test host runs; benchmarks use it).

Results: DIR/guest-tests/ has every case's logs (NAME.console, NAME.stderr,
...), each pytest run's JUnit file, results.json and the summary line
"N passed, M failed". Exit status 0 if every case passed or skipped, 1 if
not, 77 (ctest's SKIP) when neither /dev/kvm nor the test host can be used.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROG = "run-guest-tests.sh"
PYTHON = "/usr/bin/python3"  # Debian's: python3-pytest is installed for it
SEED_DURATIONS = HERE / "durations.json"
print_lock = threading.Lock()


def say(line):
    with print_lock:
        print(line, flush=True)


def note(msg):
    with print_lock:
        print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def die(msg):
    note(f"error: {msg}")
    sys.exit(1)


def lib(function, env):
    """The path a lib.sh function prints (it builds the cached artifact), or None."""
    p = subprocess.run(["bash", "-c", f'. "{HERE}/lib.sh" && {function}'], stdout=subprocess.PIPE, env=env,
                       text=True)
    out = p.stdout.strip().splitlines()
    return out[-1] if p.returncode == 0 and out else None


def pytest_cmd(extra, junit=None):
    cmd = [PYTHON, "-B", "-m", "pytest", str(HERE), "-p", "no:cacheprovider", "-v", "-rfEs"]
    if junit:
        cmd.append(f"--junitxml={junit}")
    return cmd + list(extra)


def case_names(env, extra):
    """The selected cases' names, in suite order."""
    sys.path.insert(0, str(HERE))
    from harness import case_name
    cmd = [PYTHON, "-B", "-m", "pytest", str(HERE), "-p", "no:cacheprovider", "--collect-only", "-q", *extra]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, text=True, cwd=HERE)
    ids = [ln for ln in p.stdout.splitlines() if "::" in ln]
    if p.returncode not in (0, 5) or (not ids and p.returncode != 5):
        die(f"pytest could not collect the cases:\n{p.stdout}{p.stderr}")
    return [case_name(i) for i in ids]


def only_regex(names):
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def read_results(d):
    """{name: (verdict, seconds)} from a pytest run's .results (last line wins)."""
    out = {}
    try:
        for line in (d / ".results").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out[parts[1]] = (parts[0], float(parts[2]))
    except (OSError, ValueError):
        pass
    return out


def durations(cache):
    for f in (cache / "guest-durations.json", SEED_DURATIONS):
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            continue
    return {}


def split(cases, shards, known):
    """Shares of CASES, most expensive first onto the least loaded share;
    suite order kept within a share."""
    load, share = [0.0] * shards, [set() for _ in range(shards)]
    for c in sorted(cases, key=lambda c: -known.get(c, 40)):
        i = load.index(min(load))
        load[i] += known.get(c, 40)
        share[i].add(c)
    return [([c for c in cases if c in s], load[i]) for i, s in enumerate(share)]


class Shard:
    """One share of the cases, run in test hosts until done (see the module doc)."""

    def __init__(self, index, directory, cases, env, extra, deadline):
        self.index, self.dir, self.cases = index, directory, cases
        self.env, self.extra, self.deadline = env, extra, deadline
        self.outcome, self.wedges = {}, []

    def out(self, line):
        say(f"[{self.index}] {line}" if self.index else line)

    def run(self):
        wedge_s = int(os.environ.get("VMM_GUEST_WEDGE_SECONDS", "40"))
        attempts = int(os.environ.get("VMM_GUEST_CASE_ATTEMPTS", "5"))
        todo, interrupted, rounds = list(self.cases), {}, 0
        self.dir.mkdir(parents=True, exist_ok=True)
        while todo:
            left = int(self.deadline - time.monotonic())
            if left < 60:
                self.out(f"{PROG}: error: out of time (VMM_GUEST_TESTS_MAX_SECONDS) with cases left: {' '.join(todo)}")
                break
            for f in (".results", ".current", ".heartbeat"):
                (self.dir / f).unlink(missing_ok=True)
            rounds += 1
            env = dict(self.env, VMM_GUEST_LOGDIR=str(self.dir), VMM_GUEST_ONLY=only_regex(todo), VMM_GUEST_ROUND="1")
            # --color=no: inside, the output goes to the test host's serial console, a terminal
            cmd = [str(HERE / "testhost.sh"), "--timeout", str(left), "--scratch", str(self.dir), "--",
                   *pytest_cmd(["--color=no", *self.extra], self.dir / f"junit-{rounds}.xml")]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=HERE)
            reader = threading.Thread(target=self.relay, args=(p.stdout,), daemon=True)
            reader.start()
            wedged = self.watch(p, wedge_s)
            st = p.wait()
            reader.join()
            done = read_results(self.dir)
            self.outcome.update(done)
            todo = [c for c in todo if c not in self.outcome]
            if not todo:
                break
            cur = (self.dir / ".current").read_text().strip() if (self.dir / ".current").exists() else ""
            if not wedged:
                # not a wedge: the test host failed to boot or died
                self.out(f"{PROG}: error: the test host ended (status {st}) with cases left: {' '.join(todo)}; "
                         f"logs in {self.dir}")
                break
            self.wedges.append(cur or "?")
            if cur and todo[0] == cur:
                interrupted[cur] = interrupted.get(cur, 0) + 1
                if interrupted[cur] >= attempts:
                    self.out(f"FAIL {cur} (the test host wedged during all {attempts} attempts)")
                    self.outcome[cur] = ("FAIL", 0.0)
                    todo.pop(0)
                else:
                    self.out(f"{PROG}: note: rerunning '{cur}' (attempt {interrupted[cur] + 1} of {attempts}) and the "
                             "cases after it in a new test host")

    def relay(self, stream):
        for raw in stream:
            self.out(raw.decode(errors="replace").rstrip("\n"))

    def watch(self, p, wedge_s):
        """True if the heartbeat stopped (then the test host is killed)."""
        hb = self.dir / ".heartbeat"
        while p.poll() is None:
            time.sleep(5)
            try:
                age = time.time() - hb.stat().st_mtime
            except OSError:
                continue  # not started yet
            if age > wedge_s:
                cur = (self.dir / ".current").read_text().strip() if (self.dir / ".current").exists() else "?"
                self.out(f"{PROG}: warning: the test host wedged during '{cur}' (no heartbeat for {int(age)} s); "
                         "killed it")
                try:
                    os.kill(int((self.dir / ".qemu.pid").read_text()), signal.SIGTERM)
                except (OSError, ValueError):
                    p.terminate()
                return True
        return False


def summarize(logdir, cases, outcome, wedges, cache, t0, update_seed):
    passed = sum(1 for c in cases if outcome.get(c, ("LOST",))[0] == "PASS")
    failures = [c for c in cases if outcome.get(c, ("LOST",))[0] not in ("PASS", "SKIP")]
    lost = [c for c in cases if c not in outcome]
    say(f"== the suite took {int(time.monotonic() - t0)} s; logs in {logdir}")
    if lost:
        say(f"not run: {' '.join(lost)}")
    if wedges:
        say(f"test host restarts after a wedge: {len(wedges)} (during: {' '.join(wedges)})")
    skipped = [c for c in cases if outcome.get(c, ("",))[0] == "SKIP"]
    if skipped:
        say(f"skipped: {' '.join(skipped)}")
    if failures:
        say(f"failed: {' '.join(failures)}")
    line = f"{passed} passed, {len(failures)} failed"
    say(line)
    (logdir / "summary").write_text(line + "\n")
    (logdir / "results.json").write_text(json.dumps(
        {c: {"outcome": outcome.get(c, ("LOST", 0))[0], "seconds": outcome.get(c, ("", 0))[1]} for c in cases},
        indent=1) + "\n")
    # Durations for the next run's split: what ran to a verdict this time.
    known = durations(cache)
    known.update({c: round(v[1]) for c, v in outcome.items() if v[0] in ("PASS", "FAIL") and v[1] > 0})
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "guest-durations.json").write_text(json.dumps(dict(sorted(known.items())), indent=1) + "\n")
    if update_seed:
        SEED_DURATIONS.write_text(json.dumps(dict(sorted(known.items())), indent=1) + "\n")
        note(f"wrote {SEED_DURATIONS}")
    return 0 if not failures else 1


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="The real-guest suite (tests/guest/README.md).")
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--timeout", type=int, default=240, help="seconds a guest may take (default 240)")
    ap.add_argument("--only", default="", help="a regex: the cases whose name it finds")
    ap.add_argument("--list", action="store_true", help="list the selected cases and exit")
    ap.add_argument("--vmm", choices=["vmm", "qemu"], default="vmm", help="qemu: QEMU behind the VMM's command line")
    ap.add_argument("--here", action="store_true", help="run the cases right here (inside a test host)")
    ap.add_argument("--logdir", help="with --here: where the logs go")
    ap.add_argument("--update-durations", action="store_true",
                    help=f"after the run, also write the durations to {SEED_DURATIONS.relative_to(REPO)}")
    ap.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    a = ap.parse_args()

    build = Path(a.build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("VMM_TEST_CACHE", str(build / "test-cache"))
    cache = Path(env["VMM_TEST_CACHE"])
    env.update(VMM_GUEST_BUILD=str(build), VMM_GUEST_CASE_TIMEOUT=str(a.timeout))
    if a.vmm == "qemu":
        env["VMM_UNDER_TEST_QEMU"] = "1"
    if a.only:
        env["VMM_GUEST_ONLY"] = a.only
    if not shutil.which(PYTHON) or subprocess.run([PYTHON, "-m", "pytest", "--version"], capture_output=True).returncode:
        die(f"pytest is missing for {PYTHON} (Debian packages python3-pytest python3-pytest-timeout; "
            "tests/install-deps.sh)")

    cases = case_names(env, a.pytest_args)
    if a.list:
        print("\n".join(cases))
        return 0
    if not cases:
        die(f"--only '{a.only}' selects no case (see --list)")

    if a.here:
        logdir = Path(a.logdir or build / "guest-tests")
        logdir.mkdir(parents=True, exist_ok=True)
        env["VMM_GUEST_LOGDIR"] = str(logdir)
        return subprocess.run(pytest_cmd(a.pytest_args, logdir / "junit.xml"), env=env, cwd=HERE).returncode

    # The artifacts, built here where the cache is writable.
    for var, fn in (("VMM_GUEST_KERNEL", "guest_kernel"), ("VMM_GUEST_INITRAMFS", "guest_test_initramfs"),
                    ("VMM_GUEST_PVH", "guest_pvh_vmlinux")):
        env[var] = lib(fn, env) or die(f"could not build the guest ({fn}, see above)")
    note(f"guest kernel {env['VMM_GUEST_KERNEL']}, PVH ELF {env['VMM_GUEST_PVH']}, "
         f"initramfs {env['VMM_GUEST_INITRAMFS']}")
    # The virtio block guest (gcc, mke2fs); its cases SKIP without it.
    blk = {var: lib(fn, env) for var, fn in (("VMM_GUEST_BLKBENCH", "guest_blkbench"),
                                              ("VMM_GUEST_BLK_ROOT", "guest_blk_rootfs"),
                                              ("VMM_GUEST_BLK_INITRAMFS", "guest_blk_initramfs"))}
    if all(blk.values()):
        env.update(blk)
        note(f"virtio block guest: initramfs {blk['VMM_GUEST_BLK_INITRAMFS']}, root image {blk['VMM_GUEST_BLK_ROOT']}")
    else:
        note("warning: the virtio block guest could not be built; its cases will SKIP")
        env.update({k: "/nonexistent" for k in blk})  # not rebuilt inside, where the cache is read-only

    logdir = build / "guest-tests"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    t0 = time.monotonic()
    kvm = subprocess.run([str(HERE / "kvm-usable.sh")], stdout=subprocess.PIPE, text=True)
    verdict = kvm.stdout.strip()
    if kvm.returncode == 0 or a.vmm == "qemu":
        if kvm.returncode == 0:
            note(f"{verdict} -> running the cases directly")
        else:
            # QEMU needs no /dev/kvm: its guests run here under TCG, no test host.
            note(f"{verdict} -> QEMU stands in for the VMM: running the cases here under TCG")
            env["VMM_QEMU_ACCEL"] = "tcg"
        env["VMM_GUEST_LOGDIR"] = str(logdir)
        env["VMM_GUEST_ONLY"] = only_regex(cases)
        subprocess.run(pytest_cmd(a.pytest_args, logdir / "junit.xml"), env=env, cwd=HERE)
        return summarize(logdir, cases, read_results(logdir), [], cache, t0, a.update_durations)
    if not shutil.which("qemu-system-x86_64"):
        say(f"{PROG}: SKIP: {verdict}, and qemu-system-x86_64 (package qemu-system-x86) is missing for the test host")
        return 77
    note(f"{verdict} -> running the cases inside the test host (QEMU TCG + nested SVM)")

    shards = os.environ.get("VMM_GUEST_SHARDS") or ("2" if (os.cpu_count() or 1) >= 2 else "1")
    if not re.fullmatch(r"[1-9]", shards):
        die(f"VMM_GUEST_SHARDS must be 1 to 9, not '{shards}'")
    shards = min(int(shards), len(cases))
    deadline = time.monotonic() + int(os.environ.get("VMM_GUEST_TESTS_MAX_SECONDS", "3600"))
    runs = []
    for i, (mine, load) in enumerate(split(cases, shards, durations(cache)), 1):
        if shards > 1:
            note(f"test host {i} of {shards}: {' '.join(mine)} (about {int(load)} s)")
        d = logdir / f"share{i}" if shards > 1 else logdir
        runs.append(Shard(i if shards > 1 else 0, d, mine, env, a.pytest_args, deadline))
    threads = [threading.Thread(target=s.run) for s in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcome, wedges = {}, []
    for s in runs:
        outcome.update(s.outcome)
        wedges += s.wedges
        if s.dir != logdir:  # the case logs side by side, as with one test host
            for f in s.dir.iterdir():
                if f.is_file() and not f.name.startswith(".") and f.name not in ("summary", "exit-status"):
                    dest = logdir / (f.name if not f.name.startswith("junit") else f"share{s.index}-{f.name}")
                    shutil.move(str(f), dest)
    return summarize(logdir, cases, outcome, wedges, cache, t0, a.update_durations)


if __name__ == "__main__":
    sys.exit(main())
