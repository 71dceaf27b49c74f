// CFI flash (the UEFI variable store) on temporary files: OVMF's probe, byte
// program and block erase, write-through to the file, and hostile accesses.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "devices/cfi_flash.h"
#include "vmm/core/bus.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

using vmm::devices::CfiFlash;

namespace {

constexpr uint64_t kBlock = 4096;

// A scratch directory, removed with its files at the end of the test.
class Scratch {
public:
    Scratch() {
        std::string t = (std::filesystem::temp_directory_path() / "vmm-cfi-flash-XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        dir_ = t;
    }
    ~Scratch() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    std::string put(const std::string& name, const std::vector<uint8_t>& bytes) const {
        std::string p = path(name);
        std::ofstream(p, std::ios::binary | std::ios::trunc)
            .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        return p;
    }
    const std::filesystem::path& dir() const { return dir_; }

private:
    std::filesystem::path dir_;
};

std::vector<uint8_t> slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Three blocks: block 0 starts like an OVMF vars store (a zero vector before
// the firmware volume header), the rest is a recognisable pattern.
std::vector<uint8_t> image() {
    std::vector<uint8_t> b(3 * kBlock);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 + 3);
    std::fill_n(b.begin(), 16, uint8_t{0});
    return b;
}

uint8_t rd8(vmm::BusDevice& d, uint64_t off) {
    uint8_t v = 0;
    d.read(off, std::span<uint8_t>(&v, 1));
    return v;
}
void wr8(vmm::BusDevice& d, uint64_t off, uint8_t v) { d.write(off, std::span<const uint8_t>(&v, 1)); }

uint64_t rd(vmm::BusDevice& d, uint64_t off, size_t n) {
    uint8_t b[8] = {};
    d.read(off, std::span<uint8_t>(b, n));
    return vmm::load_le(std::span<const uint8_t>(b, n));
}
void wr(vmm::BusDevice& d, uint64_t off, uint64_t v, size_t n) {
    uint8_t b[8] = {};
    vmm::store_le(std::span<uint8_t>(b, n), v);
    d.write(off, std::span<const uint8_t>(b, n));
}

std::string error_of(const std::string& path, uint64_t block = kBlock) {
    try {
        CfiFlash f(path, block);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    return "";
}

// What OVMF's QemuFlashFvbServicesRuntimeDxe concludes about the device at
// offset 0, step by step as QemuFlashDetected() does it with byte accesses.
// `writable_check` adds the step newer edk2 releases take after seeing flash:
// reprogram the probed byte with itself and look for the program-error bit.
enum class Probe { NoLocation, Ram, Rom, Flash, WriteProtected, Unknown };

Probe ovmf_probe(vmm::BusDevice& d, uint64_t block, bool writable_check) {
    constexpr uint8_t kProgram = 0x10, kClearStatus = 0x50, kReadStatus = 0x70, kReadArray = 0xff;
    constexpr uint8_t kClearedStatus = 0x00;
    uint64_t at = 0;
    for (; at < block; ++at) {
        uint8_t b = rd8(d, at);
        if (b != kClearStatus && b != kReadStatus && b != kClearedStatus) break;
    }
    if (at >= block) return Probe::NoLocation;

    uint8_t original = rd8(d, at);
    wr8(d, at, kClearStatus);
    uint8_t seen = rd8(d, at);
    if (original != kClearStatus && seen == kClearStatus) {
        wr8(d, at, original);
        return Probe::Ram;
    }
    wr8(d, at, kReadStatus);
    seen = rd8(d, at);
    if (seen == original) return Probe::Rom;
    if (seen == kReadStatus) {
        wr8(d, at, original);
        return Probe::Ram;
    }
    if (seen != kClearedStatus) return Probe::Unknown;
    if (!writable_check) {
        wr8(d, at, kReadArray);
        return Probe::Flash;
    }
    wr8(d, at, kProgram);
    wr8(d, at, original);
    wr8(d, at, kReadStatus);
    seen = rd8(d, at);
    wr8(d, at, kReadArray);
    return (seen & 0x10) ? Probe::WriteProtected : Probe::Flash;
}

// Plain memory and plain ROM, to show the probe above tells them apart.
struct Memory : vmm::BusDevice {
    std::vector<uint8_t> bytes;
    bool writable;
    Memory(std::vector<uint8_t> b, bool w) : bytes(std::move(b)), writable(w) {}
    void read(uint64_t off, std::span<uint8_t> d) override {
        for (size_t i = 0; i < d.size(); ++i) d[i] = bytes[off + i];
    }
    void write(uint64_t off, std::span<const uint8_t> d) override {
        if (writable) bytes[off] = d[0];
    }
    std::string name() const override { return "memory"; }
};

// A device on a scratch copy of image(); `img` tracks what the file should
// hold.
struct Rig {
    Scratch s;
    std::vector<uint8_t> img = image();
    std::string path = s.put("vars.fd", img);
    std::unique_ptr<CfiFlash> dev = std::make_unique<CfiFlash>(path, kBlock);
    CfiFlash& f() { return *dev; }
    void program(uint64_t off, uint8_t v, uint8_t cmd = 0x10) {
        wr8(*dev, off, cmd);
        wr8(*dev, off, v);
    }
    void erase(uint64_t setup_at, uint64_t confirm_at) {
        wr8(*dev, setup_at, 0x20);
        wr8(*dev, confirm_at, 0xd0);
    }
    // Closes the device and opens the file again, as the next VM run would.
    void reopen() {
        dev.reset();
        dev = std::make_unique<CfiFlash>(path, kBlock);
    }
};

}  // namespace

TEST_CASE("cfi flash: reads in read-array mode return the file at every width", "[devices][cfi_flash]") {
    Rig r;
    CfiFlash& f = r.f();
    const auto& img = r.img;
    CHECK(f.size() == img.size());
    CHECK(f.block_size() == kBlock);
    for (uint64_t off : {uint64_t{0}, uint64_t{16}, kBlock - 4, 2 * kBlock + 1, 3 * kBlock - 8}) {
        for (size_t n : {1u, 2u, 4u, 8u}) {
            uint64_t want = vmm::load_le(std::span<const uint8_t>(img.data() + off, n));
            CHECK(rd(f, off, n) == want);
        }
    }
}

TEST_CASE("cfi flash: OVMF's probe tells RAM, ROM and this flash apart", "[devices][cfi_flash]") {
    auto img = image();
    Memory ram(img, true), rom(img, false);
    CHECK(ovmf_probe(ram, kBlock, false) == Probe::Ram);
    CHECK(ovmf_probe(rom, kBlock, false) == Probe::Rom);

    Scratch s;
    std::string p = s.put("vars.fd", img);
    CfiFlash f(p, kBlock);
    SECTION("the edk2 probe without the writability check") {
        CHECK(ovmf_probe(f, kBlock, false) == Probe::Flash);
    }
    SECTION("the newer probe that also reprograms the probed byte") {
        CHECK(ovmf_probe(f, kBlock, true) == Probe::Flash);
    }
    SECTION("a probe location past bytes that look like commands") {
        std::vector<uint8_t> odd = img;
        std::fill_n(odd.begin(), 64, uint8_t{0x50});
        odd[20] = 0x70;
        odd[30] = 0x00;
        Scratch s2;
        CfiFlash g(s2.put("odd.fd", odd), kBlock);
        CHECK(ovmf_probe(g, kBlock, true) == Probe::Flash);
        CHECK(slurp(s2.path("odd.fd")) == odd);
    }
    // Back in read-array mode, and the probe changed nothing.
    CHECK(rd(f, 0, 8) == 0);
    CHECK(rd8(f, 16) == img[16]);
    CHECK(slurp(p) == img);
}

TEST_CASE("cfi flash: the status register reads 0x80 at reset and 0x00 after clear status", "[devices][cfi_flash]") {
    Rig r;
    wr8(r.f(), 100, 0x70);
    CHECK(rd8(r.f(), 100) == 0x80);
    CHECK(rd8(r.f(), 2 * kBlock) == 0x80);  // from any address
    CHECK(rd(r.f(), 8, 4) == 0x80808080);  // in every byte of a wide read
    wr8(r.f(), 100, 0x50);
    CHECK(rd8(r.f(), 100) == r.img[100]);  // clear status returns to read array
    wr8(r.f(), 0, 0x70);
    CHECK(rd8(r.f(), 0) == 0x00);

    r.f().reset();  // a platform reset: array mode, ready again
    CHECK(rd8(r.f(), 0) == r.img[0]);
    wr8(r.f(), 0, 0x70);
    CHECK(rd8(r.f(), 0) == 0x80);
}

TEST_CASE("cfi flash: byte program ANDs into the content and reaches the file", "[devices][cfi_flash]") {
    Rig r;
    const uint64_t a = kBlock + 5, b = kBlock + 6;
    REQUIRE(r.img[a] == 0x26);
    REQUIRE(r.img[b] == 0x2d);
    r.program(a, 0x0f);
    CHECK(rd8(r.f(), a) == 0x80);  // status mode after the program
    CHECK(rd8(r.f(), 0) == 0x80);
    r.program(b, 0xf3, 0x40);  // the other program command; bits are only cleared
    CHECK(rd8(r.f(), b) == 0x80);
    wr8(r.f(), b, 0xff);
    CHECK(rd8(r.f(), a) == 0x06);
    CHECK(rd8(r.f(), b) == 0x21);

    r.img[a] = 0x06;
    r.img[b] = 0x21;
    CHECK(slurp(r.path) == r.img);  // while the device still lives
    r.dev.reset();
    CHECK(slurp(r.path) == r.img);
    r.reopen();
    CHECK(rd8(r.f(), a) == 0x06);
    CHECK(rd8(r.f(), b) == 0x21);
}

TEST_CASE("cfi flash: block erase sets the whole block and only it to 0xff", "[devices][cfi_flash]") {
    Rig r;
    r.erase(kBlock, kBlock + 1234);  // confirmed anywhere inside the block
    CHECK(rd8(r.f(), kBlock) == 0x80);
    wr8(r.f(), 0, 0xff);
    CHECK(rd(r.f(), kBlock, 8) == ~uint64_t{0});
    CHECK(rd(r.f(), 2 * kBlock - 8, 8) == ~uint64_t{0});
    CHECK(rd8(r.f(), kBlock - 1) == r.img[kBlock - 1]);
    CHECK(rd8(r.f(), 2 * kBlock) == r.img[2 * kBlock]);

    std::fill_n(r.img.begin() + kBlock, kBlock, uint8_t{0xff});
    CHECK(slurp(r.path) == r.img);

    // What OVMF does next: program the erased block again.
    r.program(kBlock + 9, 0x5a);
    wr8(r.f(), kBlock + 9, 0xff);
    r.img[kBlock + 9] = 0x5a;
    CHECK(slurp(r.path) == r.img);

    r.reopen();
    CHECK(rd8(r.f(), kBlock + 9) == 0x5a);
    CHECK(rd8(r.f(), kBlock + 10) == 0xff);
}

TEST_CASE("cfi flash: unknown commands and unconfirmed erases go back to read array", "[devices][cfi_flash]") {
    Rig r;
    wr8(r.f(), 40, 0x42);
    CHECK(rd8(r.f(), 40) == r.img[40]);
    wr8(r.f(), 40, 0xe8);  // buffered write: not supported
    CHECK(rd8(r.f(), 40) == r.img[40]);

    wr8(r.f(), kBlock, 0x20);
    wr8(r.f(), kBlock, 0x77);  // not the confirm
    CHECK(rd8(r.f(), kBlock) == r.img[kBlock]);
    wr8(r.f(), kBlock, 0x20);
    wr8(r.f(), kBlock, 0xff);
    CHECK(rd8(r.f(), kBlock) == r.img[kBlock]);
    CHECK(slurp(r.path) == r.img);
}

TEST_CASE("cfi flash: identifier and CFI query answer, then 0xff returns to the array", "[devices][cfi_flash]") {
    Rig r;
    CfiFlash& f = r.f();
    wr8(f, 0, 0x90);
    CHECK(rd(f, 0, 4) == 0);
    wr8(f, 0, 0x98);
    CHECK(rd8(f, 0x10) == 'Q');
    CHECK(rd8(f, 0x11) == 'R');
    CHECK(rd8(f, 0x12) == 'Y');
    CHECK(rd8(f, 0x13) == 0x01);
    CHECK(rd8(f, 0x27) == 14);  // 12 KiB rounds up to 2^14
    CHECK(rd8(f, 0x2c) == 1);
    CHECK(rd(f, 0x2d, 2) == 2);  // three blocks
    CHECK(rd(f, 0x2f, 2) == kBlock / 256);
    wr8(f, 0, 0xff);
    CHECK(rd8(f, 0x10) == r.img[0x10]);
}

TEST_CASE("cfi flash: accesses past the end and wide writes are safe", "[devices][cfi_flash]") {
    Rig r;
    CfiFlash& f = r.f();
    const auto& img = r.img;
    const uint64_t end = f.size();
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

    CHECK(rd(f, end - 2, 4) == (0xffff0000u | uint64_t{img[end - 1]} << 8 | img[end - 2]));
    CHECK(rd(f, end, 8) == ~uint64_t{0});
    CHECK(rd(f, kMax - 3, 8) == ~uint64_t{0});
    CHECK(rd(f, kMax, 1) == 0xff);

    wr8(f, end, 0x20);  // ignored, so the next write is not an erase confirm
    wr(f, kMax - 1, 0x2020, 2);
    wr8(f, end - 1, 0xd0);
    CHECK(rd8(f, end - 1) == img[end - 1]);

    // A wide write of a command: its low byte counts.
    wr(f, 64, 0xabcdef70, 4);
    CHECK(rd8(f, 64) == 0x80);
    wr(f, 64, 0x12345650ull, 8);
    CHECK(rd8(f, 64) == img[64]);

    // A wide program stores only the low byte, at the address written.
    wr(f, 64, 0x10, 2);
    wr(f, 64, 0x000000, 4);
    wr(f, 64, 0xff, 4);
    CHECK(rd8(f, 64) == 0x00);
    CHECK(rd(f, 65, 3) == vmm::load_le(std::span<const uint8_t>(img.data() + 65, 3)));

    // A program and an erase at the very end stay inside the file.
    wr(f, end - 1, 0x10, 8);
    wr(f, end - 1, 0x00, 8);
    wr(f, end - 1, 0x20, 4);
    wr(f, end - 1, 0xd0, 2);
    wr8(f, 0, 0xff);
    CHECK(rd8(f, end - 1) == 0xff);
    CHECK(rd8(f, end - kBlock - 1) == img[end - kBlock - 1]);

    auto now = slurp(r.path);
    CHECK(now.size() == img.size());
    CHECK(now[64] == 0x00);
    wr8(f, 0, 0x00);  // QEMU's read-array alias, quietly accepted
    CHECK(rd8(f, 1000) == img[1000]);
}

TEST_CASE("cfi flash: a file whose size is not whole blocks is refused", "[devices][cfi_flash]") {
    Scratch s;
    std::string empty = s.put("empty.fd", {});
    std::string odd = s.put("odd.fd", std::vector<uint8_t>(kBlock + 1, 0xff));
    std::string e = error_of(empty);
    CHECK_THAT(e, Catch::Contains(empty) && Catch::Contains("size 0") && Catch::Contains("4096"));
    e = error_of(odd);
    CHECK_THAT(e, Catch::Contains(odd) && Catch::Contains("size 4097") && Catch::Contains("4096"));
    CHECK_THAT(error_of(s.put("ok.fd", image()), 3000), Catch::Contains("block size 3000"));
    CHECK_THAT(error_of(s.path("missing.fd")), Catch::Contains("missing.fd") && Catch::Contains("No such file"));
    CHECK_THAT(error_of(s.dir().string()), Catch::Contains(s.dir().string()));
}

TEST_CASE("cfi flash: a read-only file is refused with a clear error", "[devices][cfi_flash]") {
    Scratch s;
    std::string p = s.put("vars.fd", image());
    REQUIRE(::chmod(p.c_str(), 0444) == 0);
    if (::geteuid() != 0) {
        CHECK_THAT(error_of(p), Catch::Contains(p) && Catch::Contains("cannot open it for writing"));
        return;
    }
    // Root ignores permission bits: try it as nobody in a child process.
    REQUIRE(::chmod(s.dir().c_str(), 0755) == 0);
    int pipefd[2];
    REQUIRE(::pipe(pipefd) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(pipefd[0]);
        if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0)
            ::_exit(3);
        std::string e = error_of(p);
        ssize_t n = ::write(pipefd[1], e.data(), e.size());
        ::_exit(n == static_cast<ssize_t>(e.size()) ? 0 : 4);
    }
    ::close(pipefd[1]);
    std::string got;
    char buf[512];
    for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 3) {
        WARN("cannot drop root privileges here; the read-only case is not exercised");
        return;
    }
    CHECK(WEXITSTATUS(status) == 0);
    CHECK_THAT(got, Catch::Contains(p) && Catch::Contains("cannot open it for writing"));
}

TEST_CASE("cfi flash: a second device on the same file fails while the first lives", "[devices][cfi_flash]") {
    Scratch s;
    std::string p = s.put("vars.fd", image());
    {
        CfiFlash first(p, kBlock);
        CHECK_THAT(error_of(p), Catch::Contains(p) && Catch::Contains("is in use by another process"));
    }
    CHECK(error_of(p).empty());
}

TEST_CASE("cfi flash: create_from_template creates the store once and never overwrites", "[devices][cfi_flash]") {
    Scratch s;
    auto tmpl_bytes = image();
    std::string tmpl = s.put("OVMF_VARS.fd", tmpl_bytes);
    std::string vars = s.path("vm1_VARS.fd");

    CfiFlash::create_from_template(vars, tmpl);
    CHECK(slurp(vars) == tmpl_bytes);
    struct stat st {};
    REQUIRE(::stat(vars.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    {  // the guest changes it
        CfiFlash f(vars, kBlock);
        wr8(f, 100, 0x10);
        wr8(f, 100, 0x00);
    }
    auto changed = slurp(vars);
    CHECK(changed[100] == 0x00);

    s.put("OVMF_VARS.fd", std::vector<uint8_t>(kBlock, 0xee));
    CfiFlash::create_from_template(vars, tmpl);
    CHECK(slurp(vars) == changed);

    // A missing template is an error and leaves nothing behind.
    std::string other = s.path("vm2_VARS.fd");
    CHECK_THROWS_WITH(CfiFlash::create_from_template(other, s.path("nope.fd")),
                      Catch::Contains("nope.fd") && Catch::Contains(other));
    CHECK_FALSE(std::filesystem::exists(other));

    size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(s.dir())) files += e.is_regular_file();
    CHECK(files == 2);  // the template and vm1_VARS.fd: no temporary files left
}
