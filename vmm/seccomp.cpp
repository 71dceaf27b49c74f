#include "vmm/seccomp.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <mutex>
#include <vector>
#include <string>

#include "vmm/core/error.h"
#include "vmm/core/fd.h"
#include "vmm/core/kvm.h"

namespace vmm::seccomp {

namespace {

// What every thread may do: work on descriptors it already has, manage its
// own memory (never executable), wait, sleep, name itself, signal its own
// process and exit. Opening files, making sockets, exec and fork are in no
// list: everything a VM needs is opened before the filters go on.
constexpr const char* kBase[] = {
    "read", "write", "readv", "writev", "pread64", "pwrite64", "recvfrom", "sendto", "close", "lseek",
    "fstat", "newfstatat", "fcntl",
    "futex", "brk", "munmap", "madvise", "mremap",  // mmap and mprotect: only without PROT_EXEC (below)
    "rt_sigreturn", "rt_sigprocmask", "sigaltstack",
    "exit", "exit_group", "gettid", "getpid", "restart_syscall",  // tgkill: only to this process (below)
    "clock_gettime", "clock_nanosleep", "nanosleep", "sched_yield", "getrandom", "rseq", "set_robust_list",
    "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll", "timerfd_settime", "timerfd_gettime",
    "capget",  // a new thread checks that it holds no capability (vmm/sandbox.h) before its filter goes on
};

// vCPU threads: KVM_RUN, and the port/MMIO exits it returns: interrupts,
// MSI routes and BAR moves from config-space writes, the flash device's
// writes to its variable store, the crash report's register reads.
constexpr const char* kVcpu[] = {"fsync", "fdatasync", "eventfd2"};

// I/O threads: the virtqueue workers (disk reads and writes, flush, discard,
// io_uring, which a SCSI queue sets up on first use, tap frames, the balloon giving memory back), disk
// thread pools and the console and serial-port sockets' clients.
constexpr const char* kIo[] = {"preadv", "pwritev", "preadv2", "pwritev2", "fsync", "fdatasync", "fallocate",
                               "io_uring_setup", "io_uring_register", "io_uring_enter", "eventfd2", "accept4",
                               "shutdown", "recvmsg", "sendmsg"};

// The control API server and its clients.
constexpr const char* kApi[] = {"accept4", "shutdown"};

// The main thread after set-up: its signalfd, device activation and reset
// (new queue workers: threads, eventfds, epoll, io_uring, timers, and the
// threads' own filters: `seccomp`, below), console sockets, and the
// teardown (removing sockets, restoring the terminal).
constexpr const char* kMain[] = {"eventfd2", "epoll_create1", "timerfd_create", "io_uring_setup",
                                 "io_uring_register", "io_uring_enter", "fsync", "fdatasync", "fallocate",
                                 "preadv", "pwritev", "preadv2", "pwritev2", "accept4", "shutdown", "recvmsg", "sendmsg", "unlink",
                                 "unlinkat", "rmdir", "sched_getaffinity", "set_tid_address", "signalfd4"};

// ioctl request numbers per role (every role may also ask whether a
// descriptor is a terminal: TCGETS, TIOCGWINSZ).
constexpr unsigned long kIoctlBase[] = {TCGETS, TIOCGWINSZ};
constexpr unsigned long kIoctlInterrupts[] = {KVM_IRQ_LINE, KVM_IRQ_LINE_STATUS, KVM_SIGNAL_MSI};
constexpr unsigned long kIoctlVcpu[] = {KVM_RUN,         KVM_GET_REGS,          KVM_GET_SREGS,          KVM_GET_FPU,
                                        KVM_GET_LAPIC,   KVM_GET_MP_STATE,      KVM_IRQFD,
                                        KVM_IOEVENTFD,   KVM_SET_USER_MEMORY_REGION};
constexpr unsigned long kIoctlIo[] = {BLKDISCARD, TUNSETOFFLOAD, TUNSETQUEUE};  // tap: the control queue
constexpr unsigned long kIoctlMain[] = {KVM_GET_REGS,   KVM_GET_SREGS,  KVM_GET_FPU,   KVM_GET_LAPIC,
                                        KVM_GET_MP_STATE, KVM_IRQFD, KVM_IOEVENTFD,
                                        KVM_SET_USER_MEMORY_REGION, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNSETQUEUE,
                                        TCSETS,         TCSETSW,        TCSETSF,       BLKDISCARD};

template <size_t N>
void append(std::vector<std::string>& out, const char* const (&names)[N]) {
    for (const char* n : names) out.emplace_back(n);
}

std::vector<unsigned long> ioctls(ThreadRole role) {
    std::vector<unsigned long> r(std::begin(kIoctlBase), std::end(kIoctlBase));
    auto add = [&](auto& list) { r.insert(r.end(), std::begin(list), std::end(list)); };
    switch (role) {
        case ThreadRole::Vcpu: add(kIoctlVcpu); add(kIoctlInterrupts); r.push_back(kvm_set_gsi_routing_request()); break;
        case ThreadRole::Io: add(kIoctlIo); add(kIoctlInterrupts); break;
        case ThreadRole::Api: add(kIoctlInterrupts); break;
        case ThreadRole::Main: add(kIoctlMain); add(kIoctlInterrupts); r.push_back(kvm_set_gsi_routing_request()); break;
    }
    return r;
}

// ---------------------------------------------------------------------------
// The report for `on`: the filter traps (SIGSYS) instead of killing, so that
// the user learns which thread made which call. The handler only uses
// async-signal-safe calls that every filter allows (write, exit_group).

constexpr int kMaxNamed = 512;
const char* g_names[kMaxNamed];  // syscall names, filled in by enable()
thread_local const char* t_role = "?";

size_t put(char* buf, size_t at, size_t cap, const char* s) {
    while (*s && at + 1 < cap) buf[at++] = *s++;
    return at;
}

size_t put_num(char* buf, size_t at, size_t cap, long v) {
    char tmp[24];
    size_t n = 0;
    unsigned long u = v < 0 ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
    do {
        tmp[n++] = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u && n < sizeof tmp);
    if (v < 0 && at + 1 < cap) buf[at++] = '-';
    while (n && at + 1 < cap) buf[at++] = tmp[--n];
    return at;
}

void on_sigsys(int, siginfo_t* si, void*) {
    char buf[512];
    char comm[17] = {};
    ::prctl(PR_GET_NAME, comm, 0, 0, 0);
    int nr = si->si_syscall;
    size_t at = 0;
    at = put(buf, at, sizeof buf, "vmm: error: seccomp: thread ");
    at = put(buf, at, sizeof buf, comm);
    at = put(buf, at, sizeof buf, " (");
    at = put(buf, at, sizeof buf, t_role);
    at = put(buf, at, sizeof buf, " filter) made a forbidden system call: ");
    at = put(buf, at, sizeof buf, nr >= 0 && nr < kMaxNamed && g_names[nr] ? g_names[nr] : "?");
    at = put(buf, at, sizeof buf, " (");
    at = put_num(buf, at, sizeof buf, nr);
    at = put(buf, at, sizeof buf, "); the VMM stops. --seccomp log lets it through and logs it (docs/security.md)\n");
    (void)!::write(STDERR_FILENO, buf, at);
    ::syscall(SYS_exit_group, 1);
}

std::atomic<Mode> g_mode{Mode::Off};
// Test hook (VMM_SECCOMP_SELFTEST=<role>): the first thread of that role
// tries a forbidden call right after its filter is on.
std::atomic<int> g_selftest{-1};

void confine_or_exit(ThreadRole role) {
    try {
        confine(role, g_mode.load());
    } catch (const std::exception& e) {
        thread_start_failed(role, e.what());
    }
    int expected = static_cast<int>(role);
    if (g_selftest.compare_exchange_strong(expected, -2))
        ::syscall(SYS_openat, AT_FDCWD, "/", O_RDONLY | O_CLOEXEC);
}

// One argument condition, every field set (libseccomp's SCMP_A* macros leave
// datum_b to the compiler, which clang's -Wmissing-field-initializers refuses).
scmp_arg_cmp arg(unsigned index, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
    scmp_arg_cmp c{};
    c.arg = index;
    c.op = op;
    c.datum_a = a;
    c.datum_b = b;
    return c;
}

void check(int rc, const char* what) {
    if (rc < 0) fail("seccomp: {}: {}", what, std::strerror(-rc));
}

}  // namespace

Mode parse_mode(const std::string& text, const std::string& what) {
    if (text == "on") return Mode::On;
    if (text == "log") return Mode::Log;
    if (text == "off") return Mode::Off;
    fail("{}: \"{}\" is not one of on, log, off", what, text);
}

namespace {

// The calls `role` may make with any arguments.
std::vector<std::string> unconditional(ThreadRole role) {
    std::vector<std::string> r;
    append(r, kBase);
    switch (role) {
        case ThreadRole::Vcpu: append(r, kVcpu); break;
        case ThreadRole::Io: append(r, kIo); break;
        case ThreadRole::Api: append(r, kApi); break;
        case ThreadRole::Main: append(r, kMain); break;
    }
    return r;
}

// The calls `role` may make only with the argument conditions compile() adds.
std::vector<std::string> conditional(ThreadRole role) {
    std::vector<std::string> r = {"mmap", "mprotect", "tgkill", "prctl", "ioctl"};
    if (role == ThreadRole::Main || role == ThreadRole::Io) r.insert(r.end(), {"clone", "seccomp"});
    if (role == ThreadRole::Main) r.emplace_back("setsockopt");
    return r;
}

}  // namespace

std::vector<std::string> allowed(ThreadRole role) {
    auto r = unconditional(role);
    auto c = conditional(role);
    r.insert(r.end(), c.begin(), c.end());
    return r;
}

namespace {

// Compiles `role`'s filter into a BPF program. libseccomp's compiler is slow
// (and slower still under emulation): done once per role and mode, not once
// per thread, since a disk queue may start many threads.
std::vector<sock_filter> compile(ThreadRole role, Mode mode) {
    scmp_filter_ctx ctx = seccomp_init(mode == Mode::On ? SCMP_ACT_TRAP : SCMP_ACT_LOG);
    if (!ctx) fail("seccomp: cannot create a filter");
    struct Release {
        scmp_filter_ctx c;
        ~Release() { seccomp_release(c); }
    } release{ctx};
    // enable() set PR_SET_NO_NEW_PRIVS for the whole process already; a
    // thread made by a confined one could not call prctl for it again.
    check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "attribute NNP");
    auto allow = [&](int nr, std::initializer_list<scmp_arg_cmp> args, const std::string& name) {
        int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, static_cast<unsigned>(args.size()),
                                        args.size() ? args.begin() : nullptr);
        check(rc, name.c_str());
    };
    for (const auto& name : unconditional(role)) {  // conditional(role): below
        int nr = seccomp_syscall_resolve_name(name.c_str());
        if (nr == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp: nobody can call it then either
        allow(nr, {}, name);
    }
    for (const auto& name : conditional(role)) {
        if (name == "mmap" || name == "mprotect") {
            // Memory: never executable.
            allow(seccomp_syscall_resolve_name(name.c_str()), {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)}, name);
        } else if (name == "tgkill") {
            // Signals only to our own threads (vCPU kicks, pause).
            allow(SCMP_SYS(tgkill), {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid()))}, name);
        } else if (name == "prctl") {
            allow(SCMP_SYS(prctl), {arg(0, SCMP_CMP_EQ, PR_SET_NAME)}, name);
            allow(SCMP_SYS(prctl), {arg(0, SCMP_CMP_EQ, PR_GET_NAME)}, name);
        } else if (name == "ioctl") {
            for (unsigned long req : ioctls(role))
                allow(SCMP_SYS(ioctl), {arg(1, SCMP_CMP_MASKED_EQ, 0xffffffffu, req)}, name);
        } else if (name == "setsockopt") {
            // A console socket's new client gets a send timeout.
            allow(SCMP_SYS(setsockopt), {arg(1, SCMP_CMP_EQ, SOL_SOCKET), arg(2, SCMP_CMP_EQ, SO_SNDTIMEO)}, name);
        } else if (name == "clone") {
            // Threads, not processes (main starts the device workers; an
            // io_uring disk queue starts its helper thread on first use).
            // clone3 passes its flags in memory, which a filter cannot read,
            // so it fails (below) and glibc falls back to clone.
            allow(SCMP_SYS(clone), {arg(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)}, name);
        } else if (name == "seccomp") {
            // The threads it makes inherit its filter and then add their
            // own, which only ever narrows what they may do.
            allow(SCMP_SYS(seccomp), {arg(0, SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER)}, name);
        } else {
            fail("seccomp: no condition for {}", name);
        }
    }
    check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3");
    // Export the program through a pipe (libseccomp 2.5 has no in-memory export).
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("seccomp: pipe");
    Fd rd(p[0]), wr(p[1]);
    check(seccomp_export_bpf(ctx, wr.get()), "exporting the filter");
    wr.reset();
    std::vector<uint8_t> bytes;
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("seccomp: reading the filter");
        if (n == 0) break;
        bytes.insert(bytes.end(), buf, buf + n);
    }
    if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0) fail("seccomp: bad filter size {}", bytes.size());
    std::vector<sock_filter> prog(bytes.size() / sizeof(sock_filter));
    std::memcpy(prog.data(), bytes.data(), bytes.size());
    return prog;
}

std::mutex g_programs_mu;
std::map<std::pair<int, int>, std::vector<sock_filter>> g_programs;

const std::vector<sock_filter>& program(ThreadRole role, Mode mode) {
    std::lock_guard lk(g_programs_mu);
    auto key = std::make_pair(static_cast<int>(role), static_cast<int>(mode));
    auto it = g_programs.find(key);
    if (it == g_programs.end()) it = g_programs.emplace(key, compile(role, mode)).first;
    return it->second;
}

}  // namespace

void confine(ThreadRole role, Mode mode) {
    if (mode == Mode::Off) return;
    const auto& prog = program(role, mode);
    sock_fprog fprog{static_cast<unsigned short>(prog.size()), const_cast<sock_filter*>(prog.data())};
    t_role = thread_role_name(role);
    // enable() set PR_SET_NO_NEW_PRIVS for the process, which the kernel requires.
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) throw_errno("seccomp: loading the filter");
}

void enable(Mode mode) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("prctl(PR_SET_NO_NEW_PRIVS)");
    g_mode.store(mode);
    if (mode == Mode::Off) return;
    // glibc's malloc opens /sys/devices/system/cpu/online to size its arena
    // limit when a thread needs a new arena, unless the limit is set. The
    // value is glibc's own default.
    mallopt(M_ARENA_MAX, 8 * std::max(1, get_nprocs()));
    // Shrinking a thread arena's heap makes glibc read
    // /proc/sys/vm/overcommit_memory (once per process). That happened on
    // the main thread at exit, freeing a qcow2 cache an I/O thread had
    // filled. A thread heap is at most 64 MiB, so with this threshold it is
    // never trimmed; the main arena then trims only above 64 MiB too.
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    for (ThreadRole r : {ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::Io, ThreadRole::Api}) (void)program(r, mode);
    for (int nr = 0; nr < kMaxNamed; ++nr) g_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) throw_errno("sigaction(SIGSYS)");
    if (const char* t = std::getenv("VMM_SECCOMP_SELFTEST")) {
        for (ThreadRole r : {ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::Io, ThreadRole::Api})
            if (std::strcmp(t, thread_role_name(r)) == 0) g_selftest.store(static_cast<int>(r));
    }
}

void confine_current(ThreadRole role) { confine_or_exit(role); }

}  // namespace vmm::seccomp
