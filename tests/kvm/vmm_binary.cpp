// The vmm binary run end to end against tiny hand-made kernels: a minimal
// bzImage (64-bit boot protocol) and a minimal PVH ELF whose code pokes the
// platform devices. Checks exit statuses and the crash reports.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "vmm/core/bytes.h"

using Catch::Matchers::Contains;

namespace {

using Bytes = std::vector<uint8_t>;

// v as n little-endian bytes at off (argument order kept for the tables below).
void put(Bytes& b, size_t off, uint64_t v, int n) { vmm::store_le(b, off, static_cast<size_t>(n), v); }

// A bzImage with one setup sector whose 64-bit entry (load + 0x200) runs `code`.
Bytes make_bzimage(const Bytes& code) {
    Bytes f(1024 + 0x200 + code.size() + 16, 0);
    f[0x1f1] = 1;                 // setup_sects
    put(f, 0x1fe, 0xAA55, 2);     // boot_flag
    f[0x200] = 0xEB;              // jump over the header
    f[0x201] = 0x6A;              // header ends at 0x26c
    std::memcpy(&f[0x202], "HdrS", 4);
    put(f, 0x206, 0x020f, 2);     // protocol 2.15
    f[0x211] = 0x01;              // loadflags: LOADED_HIGH
    put(f, 0x22c, 0x7fffffff, 4); // initrd_addr_max
    put(f, 0x230, 0x200000, 4);   // kernel_alignment
    f[0x234] = 1;                 // relocatable
    put(f, 0x236, 0x1, 2);        // xloadflags: XLF_KERNEL_64
    put(f, 0x238, 2047, 4);       // cmdline_size
    put(f, 0x258, 0x1000000, 8);  // pref_address
    put(f, 0x260, 0x200000, 4);   // init_size
    std::memcpy(&f[1024 + 0x200], code.data(), code.size());
    return f;
}

// An ELF64 with one PT_LOAD at 1 MiB and a Xen PVH entry note.
Bytes make_pvh_elf(const Bytes& code) {
    const size_t ph_off = 64, note_off = 64 + 2 * 56, code_off = 0x200;
    Bytes f(code_off + code.size(), 0);
    const uint8_t ident[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
    std::memcpy(f.data(), ident, sizeof ident);
    put(f, 16, 2, 2);          // ET_EXEC
    put(f, 18, 62, 2);         // EM_X86_64
    put(f, 20, 1, 4);
    put(f, 24, 0x100000, 8);   // e_entry (unused for PVH)
    put(f, 32, ph_off, 8);
    put(f, 52, 64, 2);         // e_ehsize
    put(f, 54, 56, 2);         // e_phentsize
    put(f, 56, 2, 2);          // e_phnum
    // PT_LOAD
    put(f, ph_off + 0, 1, 4);
    put(f, ph_off + 4, 5, 4);
    put(f, ph_off + 8, code_off, 8);
    put(f, ph_off + 16, 0x100000, 8);
    put(f, ph_off + 24, 0x100000, 8);
    put(f, ph_off + 32, code.size(), 8);
    put(f, ph_off + 40, code.size(), 8);
    put(f, ph_off + 48, 0x1000, 8);
    // PT_NOTE: namesz 4 "Xen\0", descsz 4, type 18, entry
    const size_t n = ph_off + 56;
    put(f, n + 0, 4, 4);
    put(f, n + 8, note_off, 8);
    put(f, n + 32, 20, 8);
    put(f, n + 40, 20, 8);
    put(f, note_off + 0, 4, 4);
    put(f, note_off + 4, 4, 4);
    put(f, note_off + 8, 18, 4);
    std::memcpy(&f[note_off + 12], "Xen", 4);
    put(f, note_off + 16, 0x100000, 4);
    std::memcpy(&f[code_off], code.data(), code.size());
    return f;
}

struct Result {
    int status = -1;
    std::string out, err;
};

std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Waits up to `seconds` for `pid` to exit, polling; with `on_tick`, calls
// it on every poll with the time waited so far. On timeout the process is
// killed and reaped and false returned.
bool wait_exit(pid_t pid, int& st, int seconds,
               const std::function<void(std::chrono::steady_clock::duration)>& on_tick = {}) {
    auto start = std::chrono::steady_clock::now();
    auto end = start + std::chrono::seconds(seconds);
    for (;;) {
        if (waitpid(pid, &st, WNOHANG) == pid) return true;
        auto now = std::chrono::steady_clock::now();
        if (now > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return false;
        }
        if (on_tick) on_tick(now - start);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// Runs build/vmm on `kernel`; with term_after_s > 0, sends SIGTERM after
// that many seconds (for guests that never stop by themselves).
Result run_vmm(const Bytes& kernel, std::vector<std::string> extra, int timeout_s = 60, int term_after_s = 0) {
    char dir[] = "/tmp/vmmtestXXXXXX";
    REQUIRE(mkdtemp(dir));
    std::string d = dir, k = d + "/kernel", o = d + "/out", e = d + "/err";
    {
        std::ofstream kf(k, std::ios::binary);
        kf.write(reinterpret_cast<const char*>(kernel.data()), static_cast<std::streamsize>(kernel.size()));
    }
    std::vector<std::string> args = {VMM_BINARY, "--kernel", k, "--memory", "64M"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int in = ::open("/dev/null", O_RDONLY);
        int of = ::open(o.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int ef = ::open(e.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(in, 0);
        dup2(of, 1);
        dup2(ef, 2);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    Result r;
    int st = 0;
    bool termed = false;
    bool exited = wait_exit(pid, st, timeout_s, [&](std::chrono::steady_clock::duration waited) {
        if (term_after_s > 0 && !termed && waited > std::chrono::seconds(term_after_s)) {
            kill(pid, SIGTERM);
            termed = true;
        }
    });
    if (!exited) {
        r.err = slurp(e);
        FAIL("vmm did not exit within " << timeout_s << " s; stderr: " << r.err);
    }
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = slurp(o);
    r.err = slurp(e);
    std::remove(k.c_str());
    std::remove(o.c_str());
    std::remove(e.c_str());
    rmdir(dir);
    return r;
}

// 16-bit-operand I/O snippets (valid in 32- and 64-bit code).
Bytes out8(uint16_t port, uint8_t v) { return {0x66, 0xBA, uint8_t(port), uint8_t(port >> 8), 0xB0, v, 0xEE}; }
Bytes out16(uint16_t port, uint16_t v) {
    return {0x66, 0xBA, uint8_t(port), uint8_t(port >> 8), 0x66, 0xB8, uint8_t(v), uint8_t(v >> 8), 0x66, 0xEF};
}
Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes r;
    for (auto& p : parts) r.insert(r.end(), p.begin(), p.end());
    return r;
}
const Bytes kHaltLoop = {0xF4, 0xEB, 0xFD};
const Bytes kPowerOff = out16(0x604, (5 << 10) | (1 << 13));  // PM1a_CNT: SLP_TYP=5 | SLP_EN

}  // namespace

TEST_CASE("vmm: a bzImage guest writes the serial port and powers off via ACPI (exit 0)") {
    auto code = cat({out8(0x3f8, 'O'), out8(0x3f8, 'K'), out8(0x3f8, '\n'), kPowerOff, kHaltLoop});
    auto r = run_vmm(make_bzimage(code), {});
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
    CHECK(r.out == "OK\n");
}

TEST_CASE("vmm: boot-progress port writes are reported with --boot-report") {
    auto code = cat({out8(0x440, 0x01), out8(0x440, 0x2a), kPowerOff, kHaltLoop});
    auto r = run_vmm(make_bzimage(code), {"--boot-report"});
    CHECK(r.status == 0);
    CHECK_THAT(r.err, Contains("vmm: boot: first KVM_RUN at"));
    CHECK_THAT(r.err, Contains("vmm: boot: progress 0x01 at"));
    CHECK_THAT(r.err, Contains("vmm: boot: progress 0x2a at"));
}

TEST_CASE("vmm: guest reset through 0xcf9 exits with status 2") {
    auto r = run_vmm(make_bzimage(cat({out8(0xcf9, 0x06), kHaltLoop})), {});
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Contains("rebooted"));
}

TEST_CASE("vmm: with --reboot a guest reset restarts the VM") {
    // Each boot marks the progress port, then resets: the VMM must boot the
    // same kernel again and again until SIGTERM ends it.
    auto r = run_vmm(make_bzimage(cat({out8(0x440, 0x01), out8(0xcf9, 0x06), kHaltLoop})),
                     {"--reboot", "--boot-report"}, 60, 4);
    CHECK(r.status == 128 + SIGTERM);
    size_t boots = 0;
    for (size_t p = 0; (p = r.err.find("progress 0x01", p)) != std::string::npos; ++p) ++boots;
    INFO("stderr: " << r.err);
    CHECK(boots >= 2);
}

TEST_CASE("vmm: guest reset through the i8042 exits with status 2") {
    auto r = run_vmm(make_bzimage(cat({out8(0x64, 0xfe), kHaltLoop})), {});
    CHECK(r.status == 2);
}

TEST_CASE("vmm: a triple fault is reported with registers and code bytes (exit 4)") {
    // ud2 with an empty IDT: #UD -> #DF -> triple fault.
    auto r = run_vmm(make_bzimage({0x90, 0x0F, 0x0B}), {});
    CHECK(r.status == 4);
    CHECK_THAT(r.err, Contains("triple fault"));
    CHECK_THAT(r.err, Contains("rip="));
    // Intel keeps the faulting state (the ud2 bytes at RIP); AMD SVM resets
    // the vCPU on shutdown, which the report must then say.
    CHECK_THAT(r.err, Contains("0f 0b") || Contains("reset the vCPU on shutdown"));
}

TEST_CASE("vmm: executing from MMIO is an emulation failure, reported with a hint (exit 4)") {
    // mov rax, 0xc0000000; jmp rax  (into the 32-bit MMIO hole: nothing to fetch)
    auto r = run_vmm(make_bzimage({0x48, 0xB8, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0xFF, 0xE0}), {}, 60);
    CHECK(r.status == 4);
    CHECK_THAT(r.err, Contains("KVM_EXIT_INTERNAL_ERROR") || Contains("KVM_EXIT_SHUTDOWN"));
    CHECK_THAT(r.err, Contains("rip="));
}

TEST_CASE("vmm: a PVH ELF guest starts in 32-bit mode with ebx -> hvm_start_info") {
    // cmp dword [ebx], 0x336ec578; jne fail; <poweroff>; fail: ud2
    Bytes check = {0x81, 0x3B, 0x78, 0xC5, 0x6E, 0x33, 0x75, uint8_t(kPowerOff.size() + kHaltLoop.size())};
    auto code = cat({check, kPowerOff, kHaltLoop, {0x0F, 0x0B}});
    auto r = run_vmm(make_pvh_elf(code), {});
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
}

TEST_CASE("vmm: stop signals tear the VM down with status 128+N; inherited fds are closed") {
    // SIGQUIT, SIGUSR2 and SIGALRM used to kill the process outright,
    // leaving the terminal raw and the API socket behind.
    const int sig = GENERATE(SIGTERM, SIGQUIT, SIGUSR2, SIGALRM);
    INFO("signal " << sig);
    char dir[] = "/tmp/vmmtestXXXXXX";
    REQUIRE(mkdtemp(dir));
    std::string k = std::string(dir) + "/kernel", api = std::string(dir) + "/api.sock";
    std::string marker = std::string(dir) + "/inherited";
    {
        auto img = make_bzimage(kHaltLoop);
        std::ofstream kf(k, std::ios::binary);
        kf.write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
        std::ofstream mf(marker);
    }
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int nul = ::open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        // A descriptor a careless parent leaves open (no O_CLOEXEC).
        int leak = ::open(marker.c_str(), O_RDONLY);
        if (leak >= 0) dup2(leak, 9);
        execl(VMM_BINARY, VMM_BINARY, "--kernel", k.c_str(), "--memory", "64M", "--api-socket", api.c_str(),
              static_cast<char*>(nullptr));
        _exit(127);
    }
    // Running once the API socket exists (the guest halts and waits).
    for (int i = 0; i < 1000 && ::access(api.c_str(), F_OK) != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    // No descriptor of the running VMM may point at the marker file.
    std::string fddir = "/proc/" + std::to_string(pid) + "/fd";
    int open_fds = 0;
    bool leaked = false;
    for (const auto& e : std::filesystem::directory_iterator(fddir)) {
        ++open_fds;
        std::error_code ec;
        if (std::filesystem::read_symlink(e.path(), ec) == marker) leaked = true;
    }
    CHECK(open_fds > 3);  // the listing worked (KVM, eventfds, the socket...)
    CHECK_FALSE(leaked);
    CHECK(::access(api.c_str(), F_OK) == 0);
    kill(pid, sig);
    int st = 0;
    if (!wait_exit(pid, st, 20)) FAIL("vmm ignored signal " << sig);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 128 + sig);
    CHECK(::access(api.c_str(), F_OK) != 0);  // the socket was removed
    std::remove(api.c_str());
    std::remove(marker.c_str());
    std::remove(k.c_str());
    rmdir(dir);
}

TEST_CASE("vmm: a descriptor the options name as /dev/fd/N stays open (bash's <(...))") {
    // The kernel is reachable only through the inherited descriptor 8: its
    // file is unlinked before the VMM starts.
    char dir[] = "/tmp/vmmtestXXXXXX";
    REQUIRE(mkdtemp(dir));
    std::string k = std::string(dir) + "/kernel", o = std::string(dir) + "/out";
    {
        auto img = make_bzimage(cat({out8(0x3f8, 'F'), out8(0x3f8, 'D'), out8(0x3f8, '\n'), kPowerOff, kHaltLoop}));
        std::ofstream kf(k, std::ios::binary);
        kf.write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
    }
    int kfd = ::open(k.c_str(), O_RDONLY);
    REQUIRE(kfd >= 0);
    std::remove(k.c_str());
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int nul = ::open("/dev/null", O_RDWR);
        int of = ::open(o.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(nul, 0);
        dup2(of, 1);
        dup2(nul, 2);
        dup2(kfd, 8);
        execl(VMM_BINARY, VMM_BINARY, "--kernel", "/dev/fd/8", "--memory", "64M", static_cast<char*>(nullptr));
        _exit(127);
    }
    ::close(kfd);
    int st = 0;
    REQUIRE(wait_exit(pid, st, 60));
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    CHECK(slurp(o) == "FD\n");
    std::remove(o.c_str());
    rmdir(dir);
}

TEST_CASE("vmm: a thread that makes a forbidden system call stops the VMM with a report (--seccomp on)") {
    // VMM_SECCOMP_SELFTEST makes the first thread of that role try openat()
    // right after its filter went on; the guest just halts.
    const std::string role = GENERATE("vcpu", "api", "main");
    INFO("role " << role);
    char dir[] = "/tmp/vmmtestXXXXXX";
    REQUIRE(mkdtemp(dir));
    std::string api = std::string(dir) + "/api.sock";
    ::setenv("VMM_SECCOMP_SELFTEST", role.c_str(), 1);
    auto r = run_vmm(make_bzimage(kHaltLoop), {"--api-socket", api}, 30);
    ::unsetenv("VMM_SECCOMP_SELFTEST");
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Contains("(" + role + " filter) made a forbidden system call: openat"));
    std::remove(api.c_str());
    rmdir(dir);
    // --seccomp off: the same attempt goes through and the guest runs on.
    ::setenv("VMM_SECCOMP_SELFTEST", role.c_str(), 1);
    r = run_vmm(make_bzimage(kHaltLoop), {"--seccomp", "off"}, 30, 2);
    ::unsetenv("VMM_SECCOMP_SELFTEST");
    CHECK(r.status == 128 + SIGTERM);
}

TEST_CASE("vmm: bad input is refused with a one-line error and status 1") {
    auto r = run_vmm(Bytes(4096, 0x41), {});
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Contains("vmm: error: --kernel"));
    auto old = make_bzimage(kHaltLoop);
    put(old, 0x206, 0x020a, 2);
    r = run_vmm(old, {});
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Contains("2.12"));
    r = run_vmm(make_bzimage(kHaltLoop), {"--cmdline", std::string(3000, 'x')});
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Contains("cmdline"));
    r = run_vmm(make_bzimage(kHaltLoop), {"--initramfs", "/nonexistent/initrd"});
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Contains("--initramfs /nonexistent/initrd"));

    // A kernel whose init_size does not fit in RAM.
    auto big = make_bzimage(kHaltLoop);
    put(big, 0x260, 0x8000000, 4);  // 128 MiB
    r = run_vmm(big, {});
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Contains("vmm: error: --kernel"));
    CHECK(r.err.find('\n') == r.err.size() - 1);  // one line

    // An initramfs larger than the guest's RAM (a sparse file).
    char tmpl[] = "/tmp/vmminitrdXXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 100 << 20) == 0);
    ::close(fd);
    r = run_vmm(make_bzimage(kHaltLoop), {"--initramfs", tmpl});
    std::remove(tmpl);
    CHECK(r.status == 1);
    CHECK_THAT(r.err, Contains("vmm: error: --initramfs"));
    CHECK_THAT(r.err, Contains("does not fit"));
}

TEST_CASE("vmm: 64 vCPUs are created and the guest still powers off") {
    auto r = run_vmm(make_bzimage(cat({kPowerOff, kHaltLoop})), {"--cpus", "64", "--memory", "256M"}, 120);
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
}
