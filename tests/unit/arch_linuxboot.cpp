// Unit tests: the fw_cfg items with which firmware's linuxboot_dma.bin
// option ROM loads a bzImage (arch/x86_64/linuxboot.h).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/linuxboot.h"
#include "fake_kernels.h"
#include "test_util.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;
using namespace test;
namespace key = fw_cfg_key;

namespace {

// The fixed items by key; each key must appear once.
std::map<uint16_t, std::vector<uint8_t>> by_key(const LinuxBootItems& it) {
    std::map<uint16_t, std::vector<uint8_t>> m;
    for (const auto& [k, v] : it.fixed) {
        INFO("key " << k);
        REQUIRE(m.emplace(k, v).second);
    }
    return m;
}

uint64_t u32_item(const std::map<uint16_t, std::vector<uint8_t>>& m, uint16_t k) {
    INFO("key " << k);
    REQUIRE(m.count(k) == 1);
    REQUIRE(m.at(k).size() == 4);
    return rd(m.at(k), 0, 4);
}

std::string error_of(std::span<const uint8_t> f, uint64_t initrd_size, const std::string& cmdline,
                     std::span<const RamRegion> ram) {
    try {
        linuxboot_items(f, initrd_size, cmdline, ram);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    return "";
}

// What must hold for any initramfs placement: page aligned, above both
// copies of the kernel, below initrd_addr_max and the firmware's reserve.
void check_initrd_bounds(const LinuxBootItems& it, const KernelLayout& k,
                         std::span<const RamRegion> ram) {
    const uint64_t low_end = ram[0].gpa + ram[0].size;
    CHECK(it.initrd_addr % 4096 == 0);
    CHECK(it.initrd_addr >= k.kernel_end);
    CHECK(it.initrd_addr >= kLinuxbootKernelAddr + it.kernel.size());
    CHECK(it.initrd_addr + it.initrd_size - 1 <= k.initrd_addr_max);
    CHECK(it.initrd_addr + it.initrd_size <= low_end - kLinuxbootFirmwareReserve);
}

}  // namespace

TEST_CASE("linuxboot: every item of a modern bzImage", "[arch][linuxboot]") {
    const auto f = make_bzimage();
    const auto ram = ram_layout(256 * MiB);
    const std::string cmdline = "console=ttyS0 root=/dev/vda";
    const uint64_t initrd_size = 5 * MiB + 123;
    const auto it = linuxboot_items(f, initrd_size, cmdline, ram);
    const auto m = by_key(it);
    constexpr std::size_t kSetup = 5 * 512;  // boot sector + 4 setup sectors

    CHECK(m.size() == 10);
    CHECK(m.count(0x09) == 0);  // FW_CFG_KERNEL_CMDLINE: not what the ROM reads
    CHECK(m.count(key::kKernelData) == 0);  // served from it.kernel
    CHECK(m.count(key::kInitrdData) == 0);  // served by the caller

    CHECK(u32_item(m, key::kKernelAddr) == 0x100000);
    CHECK(u32_item(m, key::kKernelSize) == f.size() - kSetup);
    CHECK(it.kernel.data() == f.data() + kSetup);  // a view, not a copy
    CHECK(it.kernel.size() == f.size() - kSetup);

    CHECK(u32_item(m, key::kCmdlineAddr) == 0x20000);
    CHECK(u32_item(m, key::kCmdlineSize) == cmdline.size() + 1);
    const auto& cmd = m.at(key::kCmdlineData);
    REQUIRE(cmd.size() == cmdline.size() + 1);
    CHECK(std::string(cmd.begin(), cmd.end() - 1) == cmdline);
    CHECK(cmd.back() == 0);

    CHECK(u32_item(m, key::kInitrdAddr) == it.initrd_addr);
    CHECK(u32_item(m, key::kInitrdSize) == initrd_size);
    CHECK(it.initrd_size == initrd_size);
    // The highest page below 256 MiB - 1 MiB.
    CHECK(it.initrd_addr == (255 * MiB - initrd_size) / 4096 * 4096);
    check_initrd_bounds(it, parse_kernel(f, ram, BzImageEntry::RealMode), ram);

    CHECK(u32_item(m, key::kSetupAddr) == 0x10000);
    CHECK(u32_item(m, key::kSetupSize) == kSetup);
    const auto& s = m.at(key::kSetupData);
    REQUIRE(s.size() == kSetup);
    CHECK(rd(s, setup_hdr::kTypeOfLoader, 1) == 0xff);
    CHECK(rd(s, setup_hdr::kLoadflags, 1) == (setup_hdr::kLoadedHigh | setup_hdr::kCanUseHeap));
    CHECK(rd(s, setup_hdr::kCode32Start, 4) == 0x100000);
    CHECK(rd(s, setup_hdr::kRamdiskImage, 4) == it.initrd_addr);
    CHECK(rd(s, setup_hdr::kRamdiskSize, 4) == initrd_size);
    CHECK(rd(s, setup_hdr::kHeapEndPtr, 2) == 0x20000 - 0x10000 - 0x200);
    CHECK(rd(s, setup_hdr::kCmdLinePtr, 4) == 0x20000);
    // Every other byte is the file's.
    std::vector<uint8_t> expect(f.begin(), f.begin() + kSetup);
    for (std::size_t off : {setup_hdr::kTypeOfLoader, setup_hdr::kLoadflags}) expect[off] = s[off];
    for (std::size_t off : {setup_hdr::kCode32Start, setup_hdr::kRamdiskImage,
                            setup_hdr::kRamdiskSize, setup_hdr::kCmdLinePtr}) {
        for (std::size_t i = 0; i < 4; ++i) expect[off + i] = s[off + i];
    }
    for (std::size_t i = 0; i < 2; ++i) {
        expect[setup_hdr::kHeapEndPtr + i] = s[setup_hdr::kHeapEndPtr + i];
    }
    CHECK(s == expect);
}

TEST_CASE("linuxboot: the setup part's size", "[arch][linuxboot]") {
    const auto ram = ram_layout(256 * MiB);
    auto setup_size = [&](uint8_t sects) {
        BzOpts o;
        o.setup_sects = sects;
        const auto f = make_bzimage(o);
        const auto it = linuxboot_items(f, 0, "", ram);
        const auto m = by_key(it);
        CHECK(m.at(key::kSetupData).size() == u32_item(m, key::kSetupSize));
        CHECK(it.kernel.size() + u32_item(m, key::kSetupSize) == f.size());
        return u32_item(m, key::kSetupSize);
    };
    CHECK(setup_size(0) == 5 * 512);  // 0 means 4
    CHECK(setup_size(1) == 2 * 512);
    CHECK(setup_size(27) == 28 * 512);
    CHECK(setup_size(63) == 0x8000);  // boot.rst's limit for the real-mode code
    BzOpts o;
    o.setup_sects = 64;
    CHECK_THAT(error_of(make_bzimage(o), 0, "", ram),
               Catch::Contains("real-mode setup is 33280 bytes"));
}

TEST_CASE("linuxboot: without an initramfs", "[arch][linuxboot]") {
    const auto f = make_bzimage();
    const auto it = linuxboot_items(f, 0, "", ram_layout(64 * MiB));
    const auto m = by_key(it);
    CHECK(it.initrd_addr == 0);
    CHECK(it.initrd_size == 0);
    CHECK(u32_item(m, key::kInitrdAddr) == 0);
    CHECK(u32_item(m, key::kInitrdSize) == 0);
    CHECK(rd(m.at(key::kSetupData), setup_hdr::kRamdiskImage, 4) == 0);
    CHECK(rd(m.at(key::kSetupData), setup_hdr::kRamdiskSize, 4) == 0);
    CHECK(m.at(key::kCmdlineData) == std::vector<uint8_t>{0});
    CHECK(u32_item(m, key::kCmdlineSize) == 1);
}

TEST_CASE("linuxboot: initramfs placement bounds", "[arch][linuxboot]") {
    SECTION("initrd_addr_max below the end of RAM") {
        BzOpts o;
        o.initrd_addr_max = 0x3fffffff;
        const auto f = make_bzimage(o);
        const auto ram = ram_layout(2 * GiB);
        const auto it = linuxboot_items(f, 10 * MiB + 1, "", ram);
        CHECK(it.initrd_addr == (GiB - (10 * MiB + 1)) / 4096 * 4096);
        check_initrd_bounds(it, parse_kernel(f, ram, BzImageEntry::RealMode), ram);
    }
    SECTION("with RAM above 4 GiB it stays in low RAM") {
        const auto f = make_bzimage();
        const auto ram = ram_layout(6 * GiB);
        const auto it = linuxboot_items(f, 100 * MiB, "", ram);
        CHECK(it.initrd_addr + it.initrd_size <= ram[0].size - kLinuxbootFirmwareReserve);
        check_initrd_bounds(it, parse_kernel(f, ram, BzImageEntry::RealMode), ram);
    }
    SECTION("the largest initramfs that fits, and one byte more") {
        const auto f = make_bzimage();  // decompresses into [16 MiB, 24 MiB)
        const auto ram = ram_layout(64 * MiB);
        const uint64_t room = 63 * MiB - 24 * MiB;
        const auto it = linuxboot_items(f, room, "", ram);
        CHECK(it.initrd_addr == 24 * MiB);
        check_initrd_bounds(it, parse_kernel(f, ram, BzImageEntry::RealMode), ram);
        CHECK_THAT(error_of(f, room + 1, "", ram), Catch::Contains("does not fit"));
        CHECK_THAT(error_of(f, 300 * MiB, "", ram), Catch::Contains("does not fit"));
    }
}

TEST_CASE("linuxboot: command line limits", "[arch][linuxboot]") {
    BzOpts o;
    o.cmdline_size = 100;
    const auto f = make_bzimage(o);
    const auto ram = ram_layout(64 * MiB);
    const auto it = linuxboot_items(f, 0, std::string(100, 'x'), ram);
    CHECK(by_key(it).at(key::kCmdlineData).size() == 101);
    CHECK(error_of(f, 0, std::string(101, 'x'), ram) ==
          "cmdline is 101 bytes; this kernel accepts at most 100");
    CHECK(error_of(f, 0, std::string("a\0b", 3), ram) == "cmdline contains a NUL byte");
    // Before 2.06 there is no cmdline_size: 255 characters.
    o.version = 0x0205;
    o.jump = 0x30;
    CHECK(error_of(make_bzimage(o), 0, std::string(255, 'x'), ram).empty());
    CHECK_THAT(error_of(make_bzimage(o), 0, std::string(256, 'x'), ram),
               Catch::Contains("at most 255"));
}

TEST_CASE("linuxboot: kernels it refuses", "[arch][linuxboot]") {
    const auto ram = ram_layout(256 * MiB);
    SECTION("an ELF (PVH) kernel") {
        CHECK(error_of(make_elf(), 0, "", ram) ==
              "linuxboot: the kernel is an ELF (PVH) image; booting it through firmware needs a "
              "bzImage");
    }
    SECTION("protocol older than 2.02") {
        BzOpts o;
        o.version = 0x0201;
        CHECK_THAT(error_of(make_bzimage(o), 0, "", ram),
                   Catch::Contains("2.01 is too old") && Catch::Contains(">= 2.02"));
    }
    SECTION("not LOADED_HIGH") {
        BzOpts o;
        o.loadflags = 0;
        CHECK_THAT(error_of(make_bzimage(o), 0, "", ram), Catch::Contains("LOADED_HIGH"));
    }
    SECTION("a 32-bit kernel is fine: its setup code enters it") {
        BzOpts o;
        o.xloadflags = 0;
        CHECK(error_of(make_bzimage(o), 0, "", ram).empty());
    }
    SECTION("truncated files") {
        const auto f = make_bzimage();
        CHECK_THAT(error_of(std::span(f).first(5 * 512), 0, "", ram), Catch::Contains("truncated"));
        for (std::size_t len = 0; len < 5 * 512; len += 7) {
            INFO("length " << len);
            CHECK_FALSE(error_of(std::span(f).first(len), 0, "", ram).empty());
        }
    }
    SECTION("a kernel reaching into the firmware's reserve") {
        // [16 MiB, 24 MiB) fits 24.5 MiB of RAM, but not below its top 1 MiB.
        CHECK_THAT(error_of(make_bzimage(), 0, "", ram_layout(24 * MiB + 512 * KiB)),
                   Catch::Contains("firmware keeps its top 1 MiB"));
        CHECK(error_of(make_bzimage(), 0, "", ram_layout(25 * MiB)).empty());
    }
}

TEST_CASE("linuxboot: the host's Debian kernel", "[arch][linuxboot]") {
    std::filesystem::path kernel;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/boot", ec)) {
        if (e.path().filename().string().starts_with("vmlinuz-")) kernel = e.path();
    }
    if (kernel.empty()) {
        WARN("SKIPPED: no /boot/vmlinuz-*");
        return;
    }
    std::ifstream in(kernel, std::ios::binary);
    const std::vector<uint8_t> f((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
        WARN("SKIPPED: cannot read " << kernel);
        return;
    }
    INFO(kernel << ", " << f.size() << " bytes");
    REQUIRE(f.size() > 1 * MiB);
    const auto ram = ram_layout(1 * GiB);
    const auto it = linuxboot_items(f, 40 * MiB, "console=ttyS0 quiet", ram);
    const auto m = by_key(it);
    const uint64_t sects = f[setup_hdr::kSetupSects] ? f[setup_hdr::kSetupSects] : 4;
    const uint64_t setup = u32_item(m, key::kSetupSize);
    CHECK(setup == (sects + 1) * 512);
    CHECK(setup <= kLinuxbootMaxSetupSize);
    CHECK(it.kernel.size() == f.size() - setup);
    CHECK(u32_item(m, key::kKernelSize) == it.kernel.size());
    const auto& s = m.at(key::kSetupData);
    CHECK(rd(s, setup_hdr::kHeader, 4) == 0x53726448);  // "HdrS"
    CHECK(rd(s, setup_hdr::kCmdLinePtr, 4) == 0x20000);
    const auto k = parse_kernel(f, ram, BzImageEntry::RealMode);
    CHECK(k.protocol_version >= 0x020f);
    check_initrd_bounds(it, k, ram);
}
